#!/bin/sh
# Print how long the test suite takes: `make bench-suite` (or `sh bench/suite_time.sh [N]`).
#
# The figure the project keeps under a minute is the unit suite's wall time as `make unit`
# runs it (tests/ but tests/engine/, on PYTEST_JOBS=2 pytest-xdist processes) on a quiet
# 2-core machine, printed beside its CPU time (user + sys of pytest and its workers); ruff
# and mypy (the rest of `make test` but the engine suite) are timed separately. The load
# average is printed before and after because the machine may be shared: a wall time
# measured under load is not comparable with one measured quiet (the CPU time much less
# so). N (default 10) is how many of the slowest tests to list.
set -eu
cd "$(dirname "$0")/.."
export PYTHONDONTWRITEBYTECODE=  # as `make unit` runs it: with bytecode caches (Makefile)
N="${1:-10}"
VENV="${VENV:-venv}"
JOBS="${PYTEST_JOBS:-2}"
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f s", b - a }'; }

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
t0=$(now)
"$VENV/bin/pytest" --collect-only -q --ignore=tests/engine >/dev/null
t1=$(now)
echo "collection only: $(elapsed "$t0" "$t1")"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
t0=$(now)
status=0
# `make unit`'s command (keep the two alike), in a child whose CPU time (user + sys of
# pytest, its workers and their subprocesses) is read once it has exited.
"$VENV/bin/python" - "$VENV/bin/pytest" "$JOBS" "$N" >"$out" 2>&1 <<'PY' || status=$?
import resource, subprocess, sys, time
pytest, jobs, n = sys.argv[1:]
start = time.monotonic()
code = subprocess.call([pytest, "-p", "xdist", "-n", jobs, "--dist", "worksteal",
                        "--ignore=tests/engine", f"--durations={n}"])
wall = time.monotonic() - start
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"unit suite: wall {wall:.1f} s, cpu {kids.ru_utime + kids.ru_stime:.1f} s "
      f"(user {kids.ru_utime:.1f} s + sys {kids.ru_stime:.1f} s) on {jobs} processes")
sys.exit(code)
PY
t1=$(now)
sed -n '/slowest/,$p' "$out"
echo "(exit $status)"
t0=$(now)
"$VENV/bin/ruff" check . >/dev/null || status=$?
t1=$(now)
echo "ruff: $(elapsed "$t0" "$t1")"
t0=$(now)
"$VENV/bin/mypy" >/dev/null || status=$?
t1=$(now)
echo "mypy: $(elapsed "$t0" "$t1")"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$status"

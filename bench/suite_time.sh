#!/bin/sh
# Print how long the test suite takes: `make bench-suite` (or `sh bench/suite_time.sh [N]`).
#
# The figure the project keeps under a minute is pytest's wall time in ONE process (as
# `make unit` runs it) on a quiet 2-core machine; ruff and mypy (the rest of `make test`)
# are timed separately. The load average is printed before and after because the
# machine may be shared: a figure measured under load is not comparable with one
# measured quiet. N (default 10) is how many of the slowest tests to list.
set -eu
cd "$(dirname "$0")/.."
N="${1:-10}"
VENV="${VENV:-venv}"
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f s", b - a }'; }

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
t0=$(now)
"$VENV/bin/pytest" --collect-only -q >/dev/null
t1=$(now)
echo "collection only: $(elapsed "$t0" "$t1")"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
t0=$(now)
status=0
# CPU seconds (user + sys, the children's included) are less sensitive to other load
# than the wall time.
"$VENV/bin/python" - "$N" >"$out" 2>&1 <<'PY' || status=$?
import resource, sys, time
import pytest
code = pytest.main([f"--durations={sys.argv[1]}", "-q"])
me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
print(f"pytest cpu: {me.ru_utime + me.ru_stime:.1f} s in pytest, "
      f"{kids.ru_utime + kids.ru_stime:.1f} s in its subprocesses")
sys.exit(code)
PY
t1=$(now)
sed -n '/slowest/,$p' "$out"
echo "pytest wall: $(elapsed "$t0" "$t1") (exit $status)"
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

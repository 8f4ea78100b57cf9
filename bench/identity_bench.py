"""Time ZeroTier identity generation: ``venv/bin/python bench/identity_bench.py [--count N]``.

Prints wall-clock mean, median and max per identity, plus the CPU seconds spent per
identity (this process and its helpers) and the load average, since other work on a
shared machine slows the wall clock but not the CPU cost.

``--idtool PATH`` also times ZeroTier's own C++ in the same run, as the floor: ``PATH generate``
(one identity, what ``zerotier-idtool generate`` does: Identity::generate) per identity, and
``PATH validate FILE`` (Identity::locallyValidate: one memory-hard hash) per hash, each
against this program's; the hash's cost is the steady figure (an identity's is that times
a random number of candidates, about 15).
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    helpers = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + helpers.ru_utime + helpers.ru_stime


def _cpu_each(run: Callable[[], object], count: int) -> list[float]:
    """CPU seconds (this process and the children it waited for) of each of ``count`` runs."""
    seconds = []
    for _ in range(count):
        before = _cpu_seconds()
        run()
        seconds.append(_cpu_seconds() - before)
    return seconds


def _floor(idtool: str, count: int, ours_identity: float, ours_hash: float) -> None:
    """ZeroTier's C++ (``idtool``) timed like ours, and the ratios."""

    def generate() -> bytes:
        return subprocess.run([idtool, "generate"], check=True, capture_output=True).stdout

    identity = _cpu_each(generate, count)
    with tempfile.NamedTemporaryFile("wb") as secret:
        secret.write(generate())
        secret.flush()
        hashes = _cpu_each(
            lambda: subprocess.run(
                [idtool, "validate", secret.name], check=True, capture_output=True
            ),
            count,
        )
    print(
        f"C++ ({idtool}): CPU {statistics.mean(identity):.3f} s per identity, "
        f"{min(hashes) * 1000:.1f} ms per hash (fastest of {count}); "
        f"ours / C++: {ours_identity / statistics.mean(identity):.2f}x per identity, "
        f"{ours_hash / min(hashes):.2f}x per hash"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Time ZeroTier identity generation.")
    parser.add_argument("--count", type=int, default=20, help="identities to generate")
    parser.add_argument("--idtool", help="zerotier-idtool (or a build with its generate/validate)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from components.overlay.zerotier.identity import generate_identity, validate_identity

    load_before = os.getloadavg()[0]
    cpu_before = _cpu_seconds()
    seconds = []
    for _ in range(args.count):
        start = time.perf_counter()
        generate_identity()
        seconds.append(time.perf_counter() - start)
    cpu = (_cpu_seconds() - cpu_before) / args.count
    print(
        f"{args.count} identities: mean {statistics.mean(seconds):.3f} s, "
        f"median {statistics.median(seconds):.3f} s, max {max(seconds):.3f} s; "
        f"CPU {cpu:.3f} s per identity; "
        f"1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    single = _cpu_each(lambda: generate_identity(helpers=0), args.count)
    secret = generate_identity().secret
    hashes = _cpu_each(lambda: validate_identity(secret), args.count)
    print(
        f"one process: CPU {statistics.mean(single):.3f} s per identity, "
        f"{min(hashes) * 1000:.1f} ms per hash (fastest of {args.count})"
    )
    if args.idtool:
        _floor(args.idtool, args.count, statistics.mean(single), min(hashes))


if __name__ == "__main__":
    main()

"""Time ZeroTier identity generation: ``venv/bin/python bench/identity_bench.py [--count N]``.

Prints wall-clock mean, median and max per identity, plus the CPU seconds spent per
identity (this process and its helpers) and the load average, since other work on a
shared machine slows the wall clock but not the CPU cost.
"""

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    helpers = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + helpers.ru_utime + helpers.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description="Time ZeroTier identity generation.")
    parser.add_argument("--count", type=int, default=20, help="identities to generate")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from components.overlay.zerotier.identity import generate_identity

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


if __name__ == "__main__":
    main()

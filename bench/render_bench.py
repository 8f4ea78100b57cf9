"""Whole-process time of `make render STACK=prod` beside its floor, median of 5.

The floor is a Python process that only imports the SDKs the program imports:
the program's own work is the difference.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The SDK modules the program uses (the packages load their submodules lazily).
SDKS = "; ".join(
    [
        "import pulumi, pulumi.dynamic, pydantic, yaml",
        "import pulumi_command.local, pulumi_command.remote",
        "import pulumi_openstack.compute, pulumi_openstack.networking, pulumi_openstack.images",
        "import pulumi_digitalocean, pulumi_cloudflare",
        "import pulumi_kubernetes.core.v1, pulumi_kubernetes.apps.v1",
        "import pulumi_kubernetes.networking.v1, pulumi_kubernetes.helm.v3",
        "import pulumi_kubernetes.apiextensions",
    ]
)


def timed(command: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--stack", default="prod")
    args = parser.parse_args()
    floor = timed([sys.executable, "-c", SDKS], args.runs)
    render = timed(["make", "-s", "render", f"STACK={args.stack}"], args.runs)
    f, r = statistics.median(floor), statistics.median(render)
    print(f"floor (import the SDKs only):   median {f:.2f} s  over {args.runs} runs")
    print(f"make render STACK={args.stack}:        median {r:.2f} s  over {args.runs} runs")
    print(f"the program's own work:         {r - f:.2f} s ({(r - f) / r:.0%} of the render)")


if __name__ == "__main__":
    main()

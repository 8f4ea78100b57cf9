"""Whole-process time of `make render STACK=prod` beside its floor, median of 5.

The floor is a Python process that only imports the SDK modules a render loads
(listed by running one render first): the program's own work is the difference.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SDK_PACKAGES = (
    "pulumi",
    "pulumi_command",
    "pulumi_random",
    "pulumi_openstack",
    "pulumi_digitalocean",
    "pulumi_cloudflare",
    "pulumi_kubernetes",
    "pydantic",
    "yaml",
    "grpc",
    "google",
)
LIST_MODULES = """
import sys, scripts.render
engine = ["--engine", sys.argv[3]] if sys.argv[3] else []
scripts.render.main(["--stack", sys.argv[1], "--out", sys.argv[2], *engine])
print("modules:", " ".join(sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[4:])))
"""


def sdk_imports(stack: str, engine: str = "") -> str:
    """An import statement for exactly the SDK modules a render loads (the floor)."""
    with tempfile.TemporaryDirectory() as out:
        listed = subprocess.run(
            [sys.executable, "-c", LIST_MODULES, stack, out, engine, *SDK_PACKAGES],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    modules = listed.rsplit("modules:", 1)[1].split()
    return "import " + ", ".join(modules)


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
    parser.add_argument("--engine", choices=("rke", "rke2"), help="render with this engine")
    args = parser.parse_args()
    imports = sdk_imports(args.stack, args.engine or "")
    floor = timed([sys.executable, "-c", imports], args.runs)
    engine = [f"ENGINE={args.engine}"] if args.engine else []
    render = timed(["make", "-s", "render", f"STACK={args.stack}", *engine], args.runs)
    f, r = statistics.median(floor), statistics.median(render)
    print(f"floor (import the {imports.count(',') + 1} SDK modules a render loads, nothing else):")
    print(f"                                median {f:.2f} s  over {args.runs} runs")
    label = f"make render STACK={args.stack}" + (f" ENGINE={args.engine}" if args.engine else "")
    print(f"{label}:")
    print(f"                                median {r:.2f} s  over {args.runs} runs")
    print(f"the program's own work:         {r - f:.2f} s ({(r - f) / r:.0%} of the render)")


if __name__ == "__main__":
    main()

"""Wall time of the real engine's `pulumi preview` of a new prod stack beside its floor.

Both run in one workspace (tests/engine/harness.py: the CLI `make tools` built, the
stand-in providers, the fake Central, a file backend), alternately, median of ``--runs``:

- the program: `pulumi preview` of the stack (nothing deployed, so every run is the same
  first preview);
- the floor: the same engine running a second project whose program only imports the SDK
  modules the program loads (pulumi, pulumi_openstack, pulumi_digitalocean,
  pulumi_cloudflare, pulumi_kubernetes, pulumi_random, pulumi_tls, pulumi_command: the
  submodules a mock render of the stack imports) and registers nothing.

The difference is the program's and the providers' own work. Then the stack is deployed
(`pulumi up` against the stand-ins and the booted fake VMs, ``Workspace(nodes=True)``) and
a no-op `pulumi up --expect-no-changes` is timed beside the floor's no-op `pulumi up`.

Run: ``venv/bin/python bench/engine_bench.py [--runs 3] [--stack prod]`` (after `make tools`).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.engine.harness import Result, Workspace  # noqa: E402
from tests.engine.tools import python_project  # noqa: E402

SDK_PACKAGES = (
    "pulumi",
    "pulumi_openstack",
    "pulumi_digitalocean",
    "pulumi_cloudflare",
    "pulumi_kubernetes",
    "pulumi_random",
    "pulumi_tls",
    "pulumi_command",
)
LIST_MODULES = """
import sys
from scripts.offline import run_program, stack_config
config, secret_keys = stack_config(sys.argv[1])
run = run_program(config, secret_keys=secret_keys, stack=sys.argv[1], preview=True)
assert run.error is None, run.error
packages = set(sys.argv[2:])
print("modules:", " ".join(sorted(m for m in sys.modules if m.split(".")[0] in packages)))
"""


def sdk_modules(stack: str) -> list[str]:
    """The SDK modules (of ``SDK_PACKAGES``) a mock preview of ``stack`` imports."""
    listed = subprocess.run(
        [sys.executable, "-c", LIST_MODULES, stack, *SDK_PACKAGES],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    return listed.rsplit("modules:", 1)[1].split()


def floor_project(folder: Path, modules: list[str]) -> Path:
    """A project whose program imports ``modules`` and registers nothing."""
    return python_project(
        folder,
        "engine-floor",
        '"""The floor: the SDK imports only."""\n'
        + "".join(f"import {m}  # noqa: F401\n" for m in modules),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stack", default="prod")
    args = parser.parse_args()
    modules = sdk_modules(args.stack)
    with (
        tempfile.TemporaryDirectory(prefix="engine-bench-") as tmp,
        Workspace(Path(tmp) / "ws", args.stack, nodes=True) as ws,
    ):
        # the floor's own stack, in the same backend, PULUMI_HOME and namespace
        floor_dir = floor_project(Path(tmp) / "floor", modules)
        ws.run("stack", "init", "floor", "--secrets-provider", "passphrase", cwd=floor_dir)
        floor: list[float] = []
        program: list[float] = []
        for _ in range(args.runs):
            floor.append(ws.preview(cwd=floor_dir).seconds)
            result: Result = ws.preview()
            program.append(result.seconds)
        steps = len(result.json()["steps"])
        first_up = ws.up().seconds
        floor_up: list[float] = []
        noop_up: list[float] = []
        for _ in range(args.runs):
            floor_up.append(ws.run("up", "--yes", "--skip-preview", cwd=floor_dir).seconds)
            noop_up.append(ws.up("--expect-no-changes").seconds)
    f, p = statistics.median(floor), statistics.median(program)
    print(f"floor (the engine running a program that imports {len(modules)} SDK modules):")
    print(f"                                   median {f:.2f} s over {args.runs} runs")
    print(f"pulumi preview, new {args.stack} stack ({steps} steps):")
    print(f"                                   median {p:.2f} s over {args.runs} runs")
    print(f"the program's and providers' work: {p - f:.2f} s ({(p - f) / p:.0%} of the preview)")
    fu, nu = statistics.median(floor_up), statistics.median(noop_up)
    print(f"first pulumi up of the {args.stack} stack:  {first_up:.2f} s")
    print(f"floor's no-op pulumi up:           median {fu:.2f} s over {args.runs} runs")
    print(f"no-op pulumi up of {args.stack}:            median {nu:.2f} s over {args.runs} runs")


if __name__ == "__main__":
    main()

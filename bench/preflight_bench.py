"""Time the reachability preflight: ``venv/bin/python bench/preflight_bench.py [--runs N]``.

For the committed prod stack and for a 3 x 100-node stack (prod's sites with 1 master
and 99 workers each) it prints the median and best in-process time of what the
preflight adds to a run: rendering each site's firewall policy, deriving and checking
every path (``plan_network`` + ``require_reachable``), and formatting the table.
``make render`` checks the stack twice (the program's ``load_stack`` and the render
script), so it pays the preflight twice and the table once: that sum is printed too.
Last, the import time of the modules the preflight brings (``-X importtime`` self
times, best of 5 fresh processes; with ``PYTHONDONTWRITEBYTECODE`` set that includes
compiling them).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.config import raw_values
from components.preflight import plan_network, require_reachable
from components.sites import firewall
from engines import check_stack
from scripts.offline import stack_config


def timed(work: Callable[[], object], runs: int) -> list[float]:
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - start)
    return seconds


def large(raw: dict[str, Any], per_site: int) -> dict[str, Any]:
    """``raw`` with every site at 1 master and ``per_site - 1`` workers."""
    raw = copy.deepcopy(raw)
    for site in raw["sites"].values():
        site["masters"], site["workers"] = 1, per_site - 1
    # A site of 100 nodes drains its taint queue for ~99 s at prod's rke.nodeEvictionRate,
    # which the failover check rightly refuses under prod's 90 s bound; the bench times
    # the preflight, so it lifts the bound rather than the rate.
    if raw.get("entrypoint"):
        raw["entrypoint"]["failoverBoundSeconds"] = 3600
    return raw


def report(name: str, raw: dict[str, Any], runs: int) -> None:
    config, network = check_stack(raw)
    nodes = config.nodes

    def check() -> None:
        firewall._covers.cache_clear()  # every run as cold as a render's first parse
        require_reachable(plan_network(config).paths)

    table = timed(network.markdown, runs)
    preflight = timed(check, runs)
    med, best, md = statistics.median(preflight), min(preflight), statistics.median(table)
    print(
        f"{name}: {len(nodes)} nodes, {len(network.paths)} paths; preflight median "
        f"{med * 1000:.2f} ms (best {best * 1000:.2f} ms), table {md * 1000:.2f} ms; "
        f"per make render (2 x preflight + table) {(2 * med + md) * 1000:.2f} ms"
    )


ROOT = Path(__file__).resolve().parents[1]
PREFLIGHT_MODULES = (
    "components.preflight",
    "components.preflight.paths",
    "components.preflight.context",
    "components.preflight.deployer",
    "components.preflight.overlay",
    "components.preflight.ingress",
    "components.preflight.record",
    "components.preflight.cluster",
    "components.config.deployer",
    "components.config.ranges",
    "components.sites.firewall",
)


def import_ms(runs: int = 5) -> dict[str, float]:
    """Best self import time per preflight module, in ms, over ``runs`` fresh processes."""
    best: dict[str, float] = {}
    for _ in range(runs):
        err = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import engines"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stderr
        for line in err.splitlines():
            parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
            if len(parts) == 3 and parts[2] in PREFLIGHT_MODULES:
                ms = int(parts[0]) / 1000
                best[parts[2]] = min(ms, best.get(parts[2], ms))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    prod = raw_values(stack_config("prod")[0])
    json.dumps(prod)  # plain values only
    print(f"1-min load average {os.getloadavg()[0]:.2f}")
    report("prod", prod, args.runs)
    report("3 x 100 nodes", large(prod, 100), args.runs)
    imports = import_ms()
    listed = ", ".join(f"{name} {ms:.1f}" for name, ms in imports.items())
    print(f"import of the preflight's modules: {sum(imports.values()):.1f} ms ({listed})")


if __name__ == "__main__":
    main()

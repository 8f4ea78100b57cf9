"""Refuse a chart upgrade that skips minor releases upstream forbids skipping: a pure decision.

What runs comes from the previous stack output ``chartVersions`` (read through a
StackReference to the current stack, as ``rke2/join.py`` reads its record), which
``ClusterServices`` exports from the Helm releases' outputs. Longhorn moves one minor at a
time and never back (its pre-upgrade check, longhorn-manager v1.12.1
upgrade/util/util.go ``CheckUpgradePath``, would refuse half-way through a ``pulumi up``);
cert-manager recommends one minor at a time and the program holds to it. Upstream's words:
docs/operations.md#upgrading-cert-manager-and-longhorn.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CHART_VERSIONS_OUTPUT = "chartVersions"
CERT_MANAGER = "cert-manager"
LONGHORN = "longhorn"

# The release to step through for each minor: its newest patch that also runs on the RKE
# engine's Kubernetes 1.30 (Longhorn 1.11.3 needs 1.34: longhorn/website commit 7d2a5dd1,
# "update the minimum Kubernetes version requirement to v1.34"; tags of longhorn/longhorn and
# cert-manager/cert-manager as fetched 2026-08-22).
STEPS: dict[str, dict[tuple[int, int], str]] = {
    CERT_MANAGER: {
        (1, 16): "v1.16.5",
        (1, 17): "v1.17.4",
        (1, 18): "v1.18.6",
        (1, 19): "v1.19.6",
        (1, 20): "v1.20.3",
        (1, 21): "v1.21.1",
    },
    LONGHORN: {
        (1, 8): "1.8.2",
        (1, 9): "1.9.2",
        (1, 10): "1.10.2",
        (1, 11): "1.11.2",
        (1, 12): "1.12.1",
    },
}
KEYS = {
    CERT_MANAGER: "entrypoint.certManager.chartVersion",
    LONGHORN: "entrypoint.longhorn.chartVersion",
}
RUNNING = {  # how to see the version that runs
    CERT_MANAGER: "helm -n cert-manager list",
    LONGHORN: "helm -n longhorn-system list",
}


class UpgradeError(ValueError):
    """The requested chart version would skip or undo releases; the message says the path."""


def _parse(version: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)", version)
    if not match:
        raise ValueError(f"not a chart version: {version!r}")
    return int(match[1]), int(match[2]), int(match[3])


def path(chart: str, running: str, target: str) -> list[str]:
    """The versions to deploy, one ``pulumi up`` each, from ``running`` to ``target``."""
    (major, minor, _), goal = _parse(running), _parse(target)
    steps = [STEPS[chart].get((major, m), f"{major}.{m}.x") for m in range(minor + 1, goal[1])]
    return [*steps, target]


def check_upgrade(chart: str, running: str | None, target: str) -> None:
    """Raise ``UpgradeError`` unless ``target`` may follow ``running`` (None: not installed)."""
    if running is None:
        return
    now, goal = _parse(running), _parse(target)
    key = KEYS[chart]
    if chart == LONGHORN and goal < now:
        raise UpgradeError(
            f"{key}: {target} is older than the {running} this stack runs; Longhorn refuses "
            f"downgrades. Set {key}: {running} (or newer, one minor at a time)"
        )
    if goal[0] != now[0] or goal[1] > now[1] + 1:
        steps = path(chart, running, target) if goal[0] == now[0] else [target]
        raise UpgradeError(
            f"{key}: {target} skips minor releases of {chart} after the {running} this stack "
            f"runs; upstream upgrades one minor at a time. Deploy "
            + " then ".join(steps)
            + f", one `pulumi up` each with {key} set to that version "
            "(docs/operations.md, 'Upgrading cert-manager and Longhorn')"
        )


@dataclass(frozen=True)
class Previous:
    """What the previous update left: its chart record and whether the stack was deployed."""

    record: Mapping[str, str] | None
    deployed: bool

    @classmethod
    def from_outputs(cls, record: Any, nodes: Any) -> Previous:
        valid = isinstance(record, Mapping) and all(isinstance(v, str) for v in record.values())
        return cls(dict(record) if valid else None, bool(nodes))


def check_charts(previous: Previous, targets: Mapping[str, tuple[str, bool]]) -> None:
    """Check every enabled chart's ``(version, set_explicitly)`` against the previous record.

    A deployed stack without a record was last updated before the program kept one: what
    runs is unknown, so the version must be named in the config (what runs now), once."""
    problems = []
    for chart, (version, explicit) in targets.items():
        try:
            _check_chart(previous, chart, version, explicit)
        except UpgradeError as err:
            problems.append(str(err))
    if problems:
        raise UpgradeError("\n".join(problems))


def _check_chart(previous: Previous, chart: str, version: str, explicit: bool) -> None:
    if previous.record is not None:
        check_upgrade(chart, previous.record.get(chart), version)
    elif previous.deployed and not explicit:
        key = KEYS[chart]
        raise UpgradeError(
            f"{key}: this stack was deployed before the program recorded its chart "
            f"versions, so the {chart} version that runs is unknown. Set {key} to the "
            f"version `{RUNNING[chart]}` shows (the old default was "
            f"{LEGACY_DEFAULTS[chart]}) for one `pulumi up`, which records it; then "
            "upgrade one minor at a time (docs/operations.md)"
        )


# What the program installed by default before it recorded chart versions.
LEGACY_DEFAULTS = {CERT_MANAGER: "v1.16.3", LONGHORN: "1.8.1"}

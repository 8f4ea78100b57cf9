"""Issue 22: moving the chart pins one minor is an in-place upgrade of the Helm releases.

On the real-engine harness (the prod stack with RKE2, booted fake VMs,
``Workspace(..., nodes=True)``; home cannot run cert-manager: its HTTP-01 check needs a
public record): `pulumi up` with each chart two minors behind the program's default
(components/services/chart_upgrades.py ``STEPS``); the defaults are then refused by the
preview, naming each key (``check_upgrade`` reads the previous update's ``chartVersions``
output). `up` one minor behind, then the pins move to the defaults and `pulumi preview
--json` shows only ``update`` steps of the two ``kubernetes:helm.sh/v3:Release`` resources,
diffing on ``version`` alone (the chart values do not depend on the version); nothing is
created, deleted or replaced. `up` converges and a second preview has no changes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from components.config.entrypoint import DEFAULT_CERT_MANAGER_CHART, DEFAULT_LONGHORN_CHART
from components.services.chart_upgrades import CERT_MANAGER, KEYS, LONGHORN, STEPS
from tests.engine.harness import Workspace
from tests.engine.test_program_up import RKE2, _needs_sshd

RELEASE = "kubernetes:helm.sh/v3:Release"
DEFAULTS = {CERT_MANAGER: DEFAULT_CERT_MANAGER_CHART, LONGHORN: DEFAULT_LONGHORN_CHART}


def _previous_minor(chart: str, minors: int = 1) -> str:
    """The step ``minors`` minors below the program's default."""
    major, minor = (int(part) for part in DEFAULTS[chart].lstrip("v").split(".")[:2])
    return STEPS[chart][(major, minor - minors)]


def _set_pins(ws: Workspace, versions: dict[str, str]) -> None:
    for chart, version in versions.items():
        ws.run("config", "set", "--path", KEYS[chart], version)


def _changes(preview: dict[str, Any]) -> list[dict[str, Any]]:
    """The preview's steps that change something (reads of the StackReference aside)."""
    return [s for s in preview["steps"] if s["op"] not in ("same", "read")]


def test_moving_the_pins_one_minor_updates_only_the_releases(tmp_path: Path) -> None:
    _needs_sshd()
    old = {chart: _previous_minor(chart) for chart in DEFAULTS}
    two_behind = {chart: _previous_minor(chart, 2) for chart in DEFAULTS}
    started = time.monotonic()
    with Workspace(tmp_path, "prod", config=RKE2, nodes=True) as ws:
        # two minors behind: the defaults are then a jump of two minors, refused by the
        # preview (from the recorded chartVersions) with each key named
        _set_pins(ws, two_behind)
        first = ws.up()
        assert ws.run("stack", "output", "chartVersions", "--json").json() == two_behind
        _set_pins(ws, DEFAULTS)
        jump = ws.preview(json=False, check=False)

        _set_pins(ws, old)
        step = ws.up()
        assert ws.run("stack", "output", "chartVersions", "--json").json() == old
        _set_pins(ws, DEFAULTS)
        preview = ws.preview()
        upgrade = ws.up()
        again = ws.preview("--expect-no-changes")
        after = ws.run("stack", "output", "chartVersions", "--json").json()
    print(
        f"\npin upgrade: first up {first.seconds:.1f} s, refused preview {jump.seconds:.1f} s, "
        f"one-minor up {step.seconds:.1f} s, upgrade preview {preview.seconds:.1f} s, "
        f"upgrade up {upgrade.seconds:.1f} s, second preview {again.seconds:.1f} s, "
        f"total {time.monotonic() - started:.1f} s"
    )

    output = jump.stdout + jump.stderr
    assert jump.returncode != 0
    for chart in DEFAULTS:
        assert f"{KEYS[chart]}: {DEFAULTS[chart]} skips minor releases" in output, output[-3000:]

    changes = _changes(preview.json())
    assert [s["op"] for s in changes] == ["update", "update"], changes
    assert {s["newState"]["type"] for s in changes} == {RELEASE}
    assert {s["urn"].rsplit("::", 1)[1] for s in changes} == {
        "services-cert-manager",
        "services-longhorn",
    }
    for change in changes:
        assert change["diffReasons"] == ["version"], change
        assert change["newState"]["inputs"]["version"] in DEFAULTS.values()
    assert not _changes(again.json())
    assert after == DEFAULTS

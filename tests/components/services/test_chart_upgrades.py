"""A running cluster's charts move one minor at a time: the whole program, under mocks, reads
its previous ``chartVersions`` output back (as a StackReference to the stack does) and
refuses what upstream forbids: Longhorn skipping a minor or going back (longhorn/website
content/docs/1.12.1/deploy/upgrade/_index.md, "Upgrade Path Enforcement and Downgrade
Prevention"), cert-manager skipping a minor (content/docs/installation/upgrade.md).

The real engine runs the rest (tests/engine/test_pin_upgrade.py, prod with RKE2): both
charts two minors behind refused with each key named, one minor accepted and recorded, and
that step an in-place ``update`` of the two Releases on ``version`` alone; here each step
of a longer path is checked by the program's check alone."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components.services.chart_upgrades import (
    CHART_VERSIONS_OUTPUT,
    Previous,
    check_charts,
    path,
)
from scripts.offline import Run, reveal, run_program
from tests.support.program_runs import committed, committed_rke2, edited, rke2_config

RELEASE = "kubernetes:helm.sh/v3:Release"
NODES = [{"name": "mc-ramnode-master-0"}]  # a deployed stack's `nodes` output


def _run(
    previous: dict[str, Any] | None,
    edit: Any = None,
    *,
    engine: str = "rke",
) -> Run:
    if engine == "rke2":
        config, secrets = rke2_config("prod", edit)
    else:
        config, secrets = edited("prod", edit or (lambda values: None))
    return run_program(config, secret_keys=secrets, stack="prod", previous_outputs=previous)


def _versions(run: Run) -> dict[str, Any]:
    return {
        reveal(r.inputs)["chart"]: reveal(r.inputs).get("version") for r in run.of_type(RELEASE)
    }


def _set(chart: str, version: str) -> Any:
    def edit(values: dict[str, Any]) -> None:
        values["multicloud:entrypoint"].setdefault(chart, {})["chartVersion"] = version

    return edit


def test_a_first_deployment_records_what_it_installed() -> None:
    run = committed("prod")
    assert run.outputs[CHART_VERSIONS_OUTPUT] == {"cert-manager": "v1.18.6", "longhorn": "1.12.1"}
    rke2 = committed_rke2("prod")
    assert rke2.outputs[CHART_VERSIONS_OUTPUT] == {
        "cert-manager": "v1.21.1",
        "longhorn": "1.12.1",
    }


def test_longhorn_skipping_minors_is_refused_with_the_path() -> None:
    run = _run(
        {CHART_VERSIONS_OUTPUT: {"cert-manager": "v1.18.6", "longhorn": "1.8.1"}, "nodes": NODES}
    )
    assert isinstance(run.error, pulumi.RunError), run.error
    message = str(run.error)
    assert "entrypoint.longhorn.chartVersion" in message
    assert "1.9.2 then 1.10.2 then 1.11.2 then 1.12.1" in message
    # the release never gets the skipping version
    assert _versions(run).get("longhorn") != "1.12.1"


@pytest.mark.parametrize(
    ("chart", "running", "target"),
    [("longhorn", "1.8.1", "1.12.1"), ("cert-manager", "v1.16.3", "v1.21.1")],
)
def test_each_step_of_the_path_is_accepted(chart: str, running: str, target: str) -> None:
    """Each version of the path a refusal names may follow the one before it, as the
    program's check sees it. The whole program taking such a step (the record read back,
    the step accepted and recorded, the Releases updated in place) runs on the real engine:
    tests/engine/test_pin_upgrade.py, test_moving_the_pins_one_minor_updates_only_the_releases."""
    other = {"longhorn": "cert-manager", "cert-manager": "longhorn"}[chart]
    for step in path(chart, running, target):
        record = {chart: running, other: "v1.18.6" if other == "cert-manager" else "1.12.1"}
        check_charts(Previous.from_outputs(record, NODES), {chart: (step, True)})
        running = step
    assert running == target


def test_longhorn_downgrade_is_refused() -> None:
    previous = {CHART_VERSIONS_OUTPUT: {"longhorn": "1.12.1"}, "nodes": NODES}
    run = _run(previous, _set("longhorn", "1.11.2"))
    assert isinstance(run.error, pulumi.RunError)
    assert "refuses downgrades" in str(run.error)


def test_a_stack_deployed_before_the_record_must_name_what_runs() -> None:
    """Such a stack may still run the old defaults (v1.16.3, 1.8.1): the new defaults would
    skip minors, so the program refuses until the config names the running versions."""
    run = _run({"nodes": NODES})
    assert isinstance(run.error, pulumi.RunError)
    message = str(run.error)
    assert "entrypoint.longhorn.chartVersion" in message and "1.8.1" in message
    assert "entrypoint.certManager.chartVersion" in message and "v1.16.3" in message

    def named(values: dict[str, Any]) -> None:
        _set("longhorn", "1.8.1")(values)
        _set("certManager", "v1.16.3")(values)

    run = _run({"nodes": NODES}, named)
    assert run.error is None, run.error
    assert run.outputs[CHART_VERSIONS_OUTPUT] == {"cert-manager": "v1.16.3", "longhorn": "1.8.1"}


@pytest.mark.parametrize(
    ("chart", "running", "target", "steps"),
    [
        ("longhorn", "1.8.1", "1.9.2", ["1.9.2"]),
        ("longhorn", "1.10.2", "1.12.1", ["1.11.2", "1.12.1"]),
        ("cert-manager", "v1.18.6", "v1.21.1", ["v1.19.6", "v1.20.3", "v1.21.1"]),
    ],
)
def test_the_path_names_one_release_per_minor(
    chart: str, running: str, target: str, steps: list[str]
) -> None:
    assert path(chart, running, target) == steps


def test_a_chart_enabled_later_is_a_fresh_install() -> None:
    """A record without the chart (it was disabled) lets any version install."""
    run = _run({CHART_VERSIONS_OUTPUT: {"cert-manager": "v1.18.6"}, "nodes": NODES})
    assert run.error is None, run.error
    assert _versions(run)["longhorn"] == "1.12.1"

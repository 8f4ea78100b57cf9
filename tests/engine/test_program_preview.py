"""Scenario 1 (issue 19): `pulumi preview --json` of a new stack, with the real engine, the
stand-in providers and the fake Central (tests/engine/harness.py), succeeds for the
committed prod and home stacks and for prod with ``engine: rke2``; and the resources it
would create are exactly the mock render's (scripts/offline.py ``run_program``, what
`make render` shows), by type, name and parent (the same tree of resources).

Compared: every create step of the preview less the stack itself (``pulumi:pulumi:Stack``:
the engine's root, which the mock monitor does not record) and the engine's default
providers (``pulumi:providers:<pkg>::default_*``: the engine makes them for resources
without an explicit provider; the program never registers them). Explicit providers (one
per OpenStack site, DigitalOcean, Cloudflare, Kubernetes) are the program's: compared.
The only other steps allowed are reads of ``pulumi:pulumi:StackReference`` (the program
reads its own stack's previous outputs: components/services/cluster_services.py,
rke2/component.py): a read deploys nothing, and the mock monitor records registrations
only, so the render does not list it. The wall time of each preview is printed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.offline import PROJECT, Run, run_program
from tests.engine.harness import Workspace
from tests.engine.providers.cloud import FakeCloud

# (stack, extra config): the committed stacks, and prod installed by RKE2 (its
# kubernetesVersion is RKE's, so it is emptied and RKE2's default applies)
CASES = {
    "prod": ("prod", {}),
    "home": ("home", {}),
    "prod-rke2": ("prod", {f"{PROJECT}:engine": "rke2", f"{PROJECT}:kubernetesVersion": ""}),
}


def step_type_and_name(urn: str) -> tuple[str, str]:
    """``urn:pulumi:<stack>::<project>::<parent types$>type::name`` -> (type, name)."""
    _, _, qualified_type, name = urn.split("::", 3)
    return qualified_type.rsplit("$", 1)[-1], name


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def engine_resources(preview: dict[str, Any]) -> Counter[tuple[str, str, str]]:
    """(type, name, parent's name) of every create step but the stack's and the engine's
    default providers'."""
    found: Counter[tuple[str, str, str]] = Counter()
    for step in preview["steps"]:
        type_, name = step_type_and_name(step["urn"])
        if type_ == "pulumi:pulumi:Stack" or step["op"] == "read":
            continue
        if type_.startswith("pulumi:providers:") and name.startswith("default"):
            continue
        found[(type_, name, _name(step["newState"].get("parent", "")))] += 1
    return found


def mock_resources(run: Run) -> Counter[tuple[str, str, str]]:
    return Counter((r.type, r.name, _name(r.parent)) for r in run.registrations)


@pytest.fixture(params=sorted(CASES))
def workspace(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workspace]:
    stack, extra = CASES[request.param]
    with Workspace(tmp_path, stack, config=extra) as ws:
        yield ws


def test_a_new_stack_previews_what_the_render_shows(workspace: Workspace) -> None:
    result = workspace.preview()
    preview = result.json()
    errors = [d["message"] for d in preview.get("diagnostics", []) if d["severity"] == "error"]
    assert not errors, "\n".join(errors)
    ops = Counter(step["op"] for step in preview["steps"])
    assert set(ops) <= {"create", "read"}, ops  # a new stack: nothing to update or delete
    # a preview creates nothing anywhere: no cloud call, no Central request
    cloud = FakeCloud(workspace.folder / "cloud")
    assert not cloud.resources() and not cloud.events()
    assert workspace.central is not None and workspace.central.requests == []
    reads = {step_type_and_name(s["urn"]) for s in preview["steps"] if s["op"] == "read"}
    assert {type_ for type_, _ in reads} <= {"pulumi:pulumi:StackReference"}, reads

    mock = run_program(
        workspace.config,
        secret_keys=workspace.secret_keys,
        stack=workspace.stack,
        preview=True,
    )
    assert mock.error is None, mock.error
    engine, rendered = engine_resources(preview), mock_resources(mock)
    only_engine = sorted((engine - rendered).elements())
    only_render = sorted((rendered - engine).elements())
    assert not only_engine and not only_render, (
        f"the preview and the render differ:\n  only in the preview: {only_engine}\n"
        f"  only in the render: {only_render}"
    )
    print(
        f"\n{workspace.stack} ({workspace.config.get(f'{PROJECT}:engine')}): "
        f"`pulumi preview --json` {result.seconds:.1f} s, {sum(engine.values())} resources"
    )

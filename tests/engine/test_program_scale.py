"""Scenarios 4 and 6 (issue 19): scaling a site's workers by one and back, through the real
engine, the stand-in providers and booted fake VMs (``Workspace(..., nodes=True)``,
tests/engine/harness.py), for prod with RKE and with RKE2. Home is left out to keep the
file's wall time down (with ``"home": ("home", {}, "home")`` in ``CASES`` it passes too).

Scenario 4. After a first `pulumi up`, the user edits ``sites.<site>.workers`` (+1, then
back: -1). Each `pulumi preview --json` holds exactly the expected steps: the creates (or
deletes) are the resources the program registers for one more node, derived from the mock
render of both configs (scripts/offline.py ``run_program``: the types and names only the
bigger one has), and the only other change is an ``update`` of the cluster command (RKE: the
``rke up`` command, its cluster.yml on stdin, rke/component.py; RKE2: the cluster-ready
command, which lists the VM ids, rke2/component.py); nothing is replaced. `up` converges:
the -1 preview, taken after the +1 `up`, shows nothing but the removal (so the +1 left no
diff behind), and after the -1 `up` `pulumi preview --expect-no-changes` passes.

Scenario 6, the -1 `up` (``--event-log``) removing the node:

- RKE2: the node's ``<node>-leave`` command (delete-time drain and ``kubectl delete node``
  against a staying server, rke2/component.py, docs/rke2.md "Removing nodes") finished
  before its VM's delete began (the engine's event log), and the server's kubectl (the node
  emulator, tests/engine/providers/nodes.py) drained and deleted that Node before the fake
  cloud deleted the VM (its events.jsonl);
- RKE: the ``rke up`` command's update (the real rke.runner, which drains the worker with
  kubectl and runs ``rke up`` with a cluster.yml without it, rke/runner/) finished before
  the VM's delete began: the engine runs every step of the program before the deletes of
  resources the program no longer registers (``deploymentExecutor.performDeletes`` in
  pkg/resource/deploy/deployment_executor.go, after the source iterator is done), and the
  fake rke and kubectl (tests/support/fake_rke.py) ran before the fake cloud's delete.

Wall times are printed per command and per test.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from scripts.offline import PROJECT, run_program
from tests.engine.harness import Workspace, stack_plain_config
from tests.engine.providers.cloud import VM_TYPES, FakeCloud
from tests.engine.test_program_up import RKE2, _needs_sshd

# case -> (stack, extra config, the site whose workers change)
CASES: dict[str, tuple[str, dict[str, str], str]] = {
    "prod": ("prod", {}, "ramnode"),
    "prod-rke2": ("prod", RKE2, "ramnode"),
}
# The cluster command each engine updates when the node set changes: (type, name suffix).
CLUSTER_COMMAND = {
    "rke": ("command:local:Command", "-rke-up"),  # rke/component.py RkeCluster
    "rke2": ("command:remote:Command", "-nodes-ready"),  # rke2/component.py Rke2Cluster
}
MEMBER = "pulumi-python:dynamic/zerotier:Member"  # components/overlay
CHANGES = {"create", "delete", "update", "replace", "create-replacement", "delete-replaced"}


def _type_and_name(urn: str) -> tuple[str, str]:
    _, _, qualified, name = urn.split("::", 3)
    return qualified.rsplit("$", 1)[-1], name


def _rendered(ws: Workspace) -> set[tuple[str, str]]:
    """(type, name) of what the program registers for the workspace's config (the mock
    render; its URNs also name the stack as a parent type, the engine's do not)."""
    run = run_program(ws.config, secret_keys=ws.secret_keys, stack=ws.stack, preview=True)
    assert run.error is None, run.error
    return {(r.type, r.name) for r in run.registrations}


def _steps(preview: Mapping[str, Any]) -> dict[str, set[tuple[str, str]]]:
    """op -> (type, name) of the preview's steps that change something."""
    found: dict[str, set[tuple[str, str]]] = {}
    for step in preview["steps"]:
        if step["op"] in CHANGES:
            found.setdefault(step["op"], set()).add(_type_and_name(step["urn"]))
    return found


def _check_preview(
    preview: Mapping[str, Any],
    engine: str,
    creates: set[tuple[str, str]],
    deletes: set[tuple[str, str]],
) -> None:
    """Exactly ``creates``/``deletes`` and one update, of the cluster command."""
    errors = [d["message"] for d in preview.get("diagnostics", []) if d["severity"] == "error"]
    assert not errors, "\n".join(errors)
    steps = _steps(preview)
    updates = steps.pop("update", set())
    expected = {"create": creates, "delete": deletes}
    assert steps == {op: found for op, found in expected.items() if found}, steps
    type_, suffix = CLUSTER_COMMAND[engine]
    ((updated_type, updated_name),) = updates
    assert updated_type == type_ and updated_name.endswith(suffix), updates


def _event_log(path: Path) -> list[tuple[str, str, str]]:
    """The engine's event log (``--event-log``): (event kind, op, URN) of every resource
    step event, in the engine's order."""
    found = []
    for line in path.read_text().splitlines():
        event = json.loads(line)
        for kind in ("resourcePreEvent", "resOutputsEvent", "resOpFailedEvent"):
            if kind in event:
                metadata = event[kind]["metadata"]
                found.append((kind, metadata["op"], metadata["urn"]))
    return found


def _position(log: list[tuple[str, str, str]], kind: str, op: str, urn: str) -> int:
    matches = [i for i, entry in enumerate(log) if entry == (kind, op, urn)]
    assert len(matches) == 1, (kind, op, urn, matches)
    return matches[0]


def _vm_deleted_at(cloud: FakeCloud, urn: str) -> float:
    (event,) = [e for e in cloud.events() if e.method == "Delete" and e.urn == urn]
    return event.time


@pytest.mark.parametrize("case", sorted(CASES))
def test_scaling_workers_out_and_in(tmp_path: Path, case: str) -> None:
    _needs_sshd()
    started = time.monotonic()
    stack, config, site = CASES[case]
    engine = config.get(f"{PROJECT}:engine", "rke")
    sites = stack_plain_config(stack)[f"{PROJECT}:sites"]
    grown = copy.deepcopy(sites)
    grown[site]["workers"] += 1
    with Workspace(tmp_path, stack, config=config, nodes=True) as ws:
        first = ws.up()
        before = _rendered(ws)

        # +1: the new node's resources are created, the cluster command updated
        ws.config_set("sites", grown)
        after = _rendered(ws)
        # one node's resources: its VM, ZeroTier member and (RKE) readiness gate or (RKE2)
        # leave command, among others (the site's, the overlay's, the engine's)
        node_types = {type_ for type_, _ in after - before}
        assert len(node_types & set(VM_TYPES)) == 1, after - before
        assert {MEMBER, "command:remote:Command"} <= node_types, after - before
        out = ws.preview()
        _check_preview(out.json(), engine, creates=after - before, deletes=set())
        grow = ws.up()
        nodes_grown = ws.run("stack", "output", "nodes", "--json").json()

        # -1: exactly those resources are deleted (so the +1 converged), then nothing
        ws.config_set("sites", sites)
        back = ws.preview()
        _check_preview(back.json(), engine, creates=set(), deletes=after - before)
        log_path = ws.folder / "shrink-events.jsonl"
        # the CLI accepts --event-log only so (pkg/cmd/pulumi/operations/up.go)
        ws.env["PULUMI_DEBUG_COMMANDS"] = "true"
        shrink = ws.up("--event-log", str(log_path))
        del ws.env["PULUMI_DEBUG_COMMANDS"]
        settled = ws.preview("--expect-no-changes")
        cloud = FakeCloud(ws.folder / "cloud")
        log = _event_log(log_path)
        rke_calls = ws.rke.calls() if ws.rke else []
    print(
        f"\n{case}: up {first.seconds:.1f} s, +1 preview {out.seconds:.1f} s, +1 up "
        f"{grow.seconds:.1f} s, -1 preview {back.seconds:.1f} s, -1 up {shrink.seconds:.1f} s, "
        f"preview --expect-no-changes {settled.seconds:.1f} s; "
        f"test {time.monotonic() - started:.1f} s"
    )

    # scenario 6: the URNs of the -1 preview's steps
    urns = {_type_and_name(step["urn"]): step["urn"] for step in back.json()["steps"]}
    ((vm_type, name),) = [(t, n) for t, n in after - before if t in VM_TYPES]
    vm = urns[(vm_type, name)]
    vm_delete = _position(log, "resourcePreEvent", "delete", vm)
    vm_deleted_at = _vm_deleted_at(cloud, vm)
    if engine == "rke2":
        leave = urns[("command:remote:Command", f"{name}-leave")]
        left = _position(log, "resOutputsEvent", "delete", leave)
        assert left < vm_delete, (
            f"{name}'s VM deletion began (event {vm_delete}) before its drain/delete command "
            f"finished (event {left})"
        )
        _check_drained(cloud, name, vm_deleted_at)
        return

    (rke_up,) = [step["urn"] for step in back.json()["steps"] if step["op"] == "update"]
    ran = _position(log, "resOutputsEvent", "update", rke_up)
    assert ran < vm_delete, (
        f"{name}'s VM deletion began (event {vm_delete}) before `rke up` finished (event {ran})"
    )
    (row,) = [r for r in nodes_grown if r["name"] == name]
    last_up = [c for c in rke_calls if c["tool"] == "rke" and c["args"][:1] == ["up"]][-1]
    # the last `rke up` (the -1 update's) ran on a cluster.yml without the node, before the
    # fake cloud deleted its VM; the runner drained the worker first (rke/runner/kubectl.py drain)
    assert row["sshAddress"] not in {n["address"] for n in last_up["config"]["nodes"]}
    assert last_up["time"] < vm_deleted_at, "`rke up` ran after the VM was deleted"
    drains = [c for c in rke_calls if c["tool"] == "kubectl" and "drain" in c["args"]]
    assert [c["args"][c["args"].index("drain") + 1] for c in drains] == [name], drains
    assert drains[0]["time"] < last_up["time"]


def _kubectl_words(argv: list[str]) -> list[str]:
    """kubectl's verb and arguments, without its flags (``--kubeconfig F``, ``--x=y``)."""
    words, rest = [], list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--kubeconfig":
            rest.pop(0)
        elif not arg.startswith("-"):
            words.append(arg)
    return words


def _check_drained(cloud: FakeCloud, name: str, vm_deleted_at: float) -> None:
    """A server that stays drained Node ``name``, then deleted it, all before the fake cloud
    deleted its VM (the RKE2 kubectl's log on each fake VM, nodes.py)."""
    calls = [
        (json.loads(line), log.parent.name)
        for log in (cloud.dir / "nodes").glob("*/kubectl.jsonl")
        for line in log.read_text().splitlines()
    ]
    leave = sorted(
        (call["time"], _kubectl_words(call["argv"]), server)
        for call, server in calls
        if _kubectl_words(call["argv"])[:1] in (["drain"], ["delete"])
    )
    assert [words for _, words, _ in leave] == [["drain", name], ["delete", "node", name]], leave
    assert leave[-1][0] < vm_deleted_at, "the Node was deleted after its VM"
    servers = {server for _, _, server in leave}
    assert len(servers) == 1 and servers.pop() in cloud.resources(), servers

"""Scenario 5 (issue 19): `rebuild` replaces one VM delete-first, on the real engine.

After a first `pulumi up` of prod (with RKE, and with RKE2) on booted fake VMs
(``Workspace(..., nodes=True)``), the operator rolls a new image onto the nodes one at a
time (docs/operations.md, "Replace a node"): the sites' ``image`` changes (a boot-only
input every running VM ignores, components/sites/base.py ``BOOT_ONLY``) and ``rebuild``
lists one node, a worker (an OpenStack instance on its own port), then a master (a
droplet). For each:

- the preview replaces that VM and nothing else: no other VM has a step, nothing in the
  cluster (Kubernetes objects, Helm releases, their provider) has any, and only the
  commands whose ``triggers`` carry the VM's id are replaced with it;
- the engine's event log (``--event-log``, preview and up) shows it delete-first
  (``delete-replaced`` before ``create-replacement``; pulumi/pulumi
  pkg/resource/deploy/step_generator.go, ``continueStepsFromDiff`` with
  ``deleteBeforeReplace``), the node's leave command deleted before the VM
  (``calculateDependentReplacements``);
- `up` converges; the fake cloud's log shows the old VM deleted before the new one was
  created and no other VM touched. The fake cloud refuses a VM whose ZeroTier identity a
  live VM runs (tests/engine/providers/cloud.py ``_check_identities``), so the update
  succeeding proves the two never ran at once; the test also shows that refusal fires for
  a create-first order;
- for a master, its etcd member left before its VM was deleted: with RKE the
  ``<node>-etcd-leave`` command's ``etcdctl member remove`` on another master (the node
  emulator's ``docker.jsonl``), then `rke up` added the new machine back as a member; with
  RKE2 the ``<node>-leave`` drain and Node deletion through a staying server (its
  ``kubectl.jsonl``); with RKE2 a worker is drained the same way;
- the new VM booted with the same ZeroTier identity and its readiness gate ran again (RKE:
  ``<node>-ready`` prints the new VM's machine id; RKE2: the cluster-ready command re-ran
  for the new machine);
- `pulumi preview --expect-no-changes` passes after both (with ``rebuild`` still listing the
  master); the master's preview holds exactly its own steps, so the worker's rebuild left
  no diff behind either.

Wall times are printed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scripts.offline import PROJECT
from tests.engine.harness import Workspace, stack_plain_config
from tests.engine.providers.cloud import VM_TYPES, CloudError, Event, FakeCloud, zerotier_addresses
from tests.engine.test_program_up import RKE2, _needs_sshd

WORKER = "mc-prod-home-worker-1"  # an OpenStack instance (its port and addresses stay)
MASTER = "mc-prod-digitalocean-master-0"  # a droplet, an etcd member
# the new "template": a newer image on both sites (BOOT_ONLY: running VMs ignore it)
NEW_IMAGES = {"home": "debian-12-20261201", "digitalocean": "debian-12-x64-20261201"}
CASES = {"rke": {}, "rke2": RKE2}
# steps that change nothing: the StackReference read of the previous update's outputs
# (components/services/chart_upgrades.py)
IGNORED_OPS = {"same", "read"}


@dataclass(frozen=True)
class Step:
    """One step of the engine's event log (pkg/engine/events.go resourcePreEvent /
    resOutputsEvent ``metadata``): its position, whether it finished, its op and resource."""

    sequence: int
    done: bool
    op: str
    urn: str

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[1]


def engine_steps(path: Path) -> list[Step]:
    steps = []
    for line in path.read_text().splitlines():
        event = json.loads(line)
        for kind, done in (("resourcePreEvent", False), ("resOutputsEvent", True)):
            if kind in event:
                meta = event[kind]["metadata"]
                steps.append(Step(event["sequence"], done, meta["op"], meta["urn"]))
    return steps


def first(steps: Iterable[Step], op: str, name: str, done: bool = False) -> int:
    """The sequence number of the event ``op`` of resource ``name`` (its start, or end)."""
    found = [s.sequence for s in steps if s.op == op and s.name == name and s.done == done]
    assert found, f"no {op} of {name} in the engine's event log"
    return found[0]


def _vm_ids(cloud: FakeCloud) -> dict[str, str]:
    return {r["name"]: id_ for id_, r in cloud.resources().items() if r["type"] in VM_TYPES}


def _node_log(nodes: Path, name: str) -> list[dict[str, Any]]:
    """What the node emulator recorded in log ``name`` (kubectl.jsonl, docker.jsonl) of
    every VM, with the VM's id."""
    entries = []
    for log in sorted(nodes.glob(f"*/{name}")):
        for line in log.read_text().splitlines():
            entries.append(json.loads(line) | {"vm": log.parent.name})
    return entries


def _replaced_with(engine: str, node: str) -> set[str]:
    """The commands whose ``triggers`` carry the node's VM id (replaced with it, deleted
    before it): with RKE its readiness gate and a master's etcd leave; with RKE2 its leave
    (drain and Node deletion, every node)."""
    if engine == "rke2":
        return {f"{node}-leave"}
    return {f"{node}-ready"} | ({f"{node}-etcd-leave"} if "master" in node else set())


def test_create_first_would_be_refused(tmp_path: Path) -> None:
    """The fake cloud's guard that scenario 5 relies on: a second live VM with the same
    ZeroTier identity (a create-first replacement) is refused; after the delete it is not."""
    cloud = FakeCloud(tmp_path)
    identity = "a1b2c3d4e5:0:" + "1" * 128 + ":" + "2" * 128
    user_data = f"#cloud-config\nwrite_files:\n- content: {identity}\n"
    type_ = "digitalocean:index/droplet:Droplet"
    old = cloud.create("digitalocean", type_, "n", "urn:n", {"userData": user_data})
    with pytest.raises(CloudError, match="ZeroTier identity a1b2c3d4e5") as refused:
        cloud.create("digitalocean", type_, "n", "urn:n", {"userData": user_data})
    assert refused.value.code == "FAILED_PRECONDITION"
    cloud.delete("digitalocean", type_, "n", "urn:n", old)
    cloud.create("digitalocean", type_, "n", "urn:n", {"userData": user_data})


@pytest.mark.parametrize("engine", sorted(CASES))
def test_rebuild_replaces_one_vm_delete_first(tmp_path: Path, engine: str) -> None:
    _needs_sshd()
    started = time.monotonic()
    with Workspace(tmp_path / "ws", "prod", config=CASES[engine], nodes=True) as ws:
        # the CLI accepts --event-log only so (pkg/cmd/pulumi/operations/preview.go, up.go)
        ws.env["PULUMI_DEBUG_COMMANDS"] = "true"
        first_up = ws.up()
        sites = copy.deepcopy(stack_plain_config("prod")[f"{PROJECT}:sites"])
        for site, image in NEW_IMAGES.items():
            sites[site]["image"] = image
        ws.config_set("sites", sites)
        times = [f"first up {first_up.seconds:.1f} s"]
        for node in (WORKER, MASTER):
            times.append(_rebuild(ws, engine, node, tmp_path / node))
        # converged: no perpetual diff (``rebuild`` still lists the master, so its VM's
        # boot-only inputs are compared too)
        after = ws.preview("--expect-no-changes")
        times.append(f"preview --expect-no-changes {after.seconds:.1f} s")
    print(f"\n{engine}: " + "; ".join(times) + f"; total {time.monotonic() - started:.1f} s")


def _rebuild(ws: Workspace, engine: str, node: str, logs: Path) -> str:
    """`rebuild: [node]`: preview and up, and what they and the stand-ins show."""
    logs.mkdir(parents=True)
    cloud = FakeCloud(ws.folder / "cloud")
    nodes = ws.folder / "cloud" / "nodes"
    before = _vm_ids(cloud)
    old_id = before[node]
    old_vm = cloud.resources()[old_id]
    ws.config_set("rebuild", [node])

    preview = ws.preview("--event-log", str(logs / "preview.jsonl"))
    changed = [s for s in preview.json()["steps"] if s["op"] not in IGNORED_OPS]

    # -- the preview: this VM replaced, no other VM touched, nothing in the cluster
    def name(step: dict[str, Any]) -> str:
        return str(step["urn"]).rsplit("::", 1)[1]

    by_type = {name(s): s["urn"].split("::")[-2].rsplit("$", 1)[-1] for s in changed}
    vm_steps = [(s["op"], name(s)) for s in changed if by_type[name(s)] in VM_TYPES]
    assert vm_steps == [("replace", node)], changed
    cluster = [(s["op"], name(s)) for s in changed if "kubernetes" in by_type[name(s)]]
    assert cluster == [], f"the cluster changes: {cluster}"
    replaced = {name(s) for s in changed if s["op"] == "replace"}
    assert replaced == {node} | _replaced_with(engine, node), changed
    # and the commands that re-run: the cluster's (it sees a new machine), and with RKE the
    # other masters' etcd leave whose connection goes through this master (its address is
    # unknown until the new VM exists; the leave only has a `delete`, an update runs nothing).
    # Nothing left from the previous rebuild: a perpetual diff would show here.
    others = {(s["op"], name(s)) for s in changed if name(s) not in replaced}
    expected = {("update", "cluster-rke-up" if engine == "rke" else "cluster-nodes-ready")}
    leaves = {(op, n) for op, n in others if op == "update" and n.endswith("-etcd-leave")}
    assert others - leaves == expected, others
    if engine == "rke2" or "master" not in node:
        assert not leaves, leaves

    # -- delete-first, in the preview and in the update: the leave command's delete, then
    # the VM's, then the new VM; the cloud saw the same
    def check_order(steps: list[Step]) -> None:
        deleted = first(steps, "delete-replaced", node)
        assert deleted < first(steps, "create-replacement", node)
        if leave in _replaced_with(engine, node):
            assert first(steps, "delete-replaced", leave, done=True) < deleted

    leave = f"{node}-etcd-leave" if engine == "rke" and "master" in node else f"{node}-leave"
    check_order(engine_steps(logs / "preview.jsonl"))
    events_before = len(cloud.events())
    up = ws.up("--event-log", str(logs / "up.jsonl"))
    applied = engine_steps(logs / "up.jsonl")
    check_order(applied)
    events = cloud.events()[events_before:]
    vm_events = [(e.method, e.name) for e in events if e.type in VM_TYPES]
    assert vm_events == [("Delete", node), ("Create", node)], vm_events
    cluster_events = [e for e in events if e.provider == "kubernetes" and e.method != "Read"]
    assert cluster_events == [], cluster_events
    (delete,) = [e for e in events if e.type in VM_TYPES and e.method == "Delete"]
    (create,) = [e for e in events if e.type in VM_TYPES and e.method == "Create"]
    assert delete.id == old_id and create.id != old_id and delete.time < create.time

    # -- the new VM: same ZeroTier identity, booted (its sshd up, the old one's gone)
    after_ids = _vm_ids(cloud)
    assert {n: i for n, i in after_ids.items() if n != node} == {
        n: i for n, i in before.items() if n != node
    }
    new_id = after_ids[node]
    new_vm = cloud.resources()[new_id]
    identity = zerotier_addresses(old_vm["outputs"]["userData"])
    assert identity and zerotier_addresses(new_vm["outputs"]["userData"]) == identity
    assert (nodes / new_id / "sshd.pid").exists() and not (nodes / old_id / "sshd.pid").exists()
    booted = json.loads((nodes / new_id / "node.json").read_text())
    assert {booted["zerotier_address"]} == identity
    _check_refusal(cloud, new_vm, ws.folder / f"probe-{node}")

    shown = ws.run("stack", "export", "--show-secrets").json()["deployment"]["resources"]

    # -- the leave commands ran on a staying node before the VM went
    if engine == "rke2":
        _check_rke2_leave(nodes, node, delete, create, shown)
    else:
        _check_rke(ws, nodes, node, delete, new_id, shown, applied)

    return f"{node}: preview {preview.seconds:.1f} s, up {up.seconds:.1f} s"


def _check_refusal(cloud: FakeCloud, vm: dict[str, Any], probe: Path) -> None:
    """Creating the node's VM again while the new one runs (a create-first replacement) is
    refused by the fake cloud: the guard this scenario relies on is armed with the real
    user-data (on a copy of the cloud's state)."""
    probe.mkdir()
    shutil.copy(cloud.state_path, probe / "state.json")
    with pytest.raises(CloudError, match="ZeroTier identity"):
        FakeCloud(probe).create(vm["provider"], vm["type"], vm["name"], vm["urn"], vm["outputs"])


def _shown(value: Any) -> Any:
    if isinstance(value, dict) and "plaintext" in value:
        return json.loads(value["plaintext"])
    return value


def _outputs(shown: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [r for r in shown if r["urn"].endswith(f"::{name}")]
    return {k: _shown(v) for k, v in found.get("outputs", {}).items()}


def _check_rke(
    ws: Workspace,
    nodes: Path,
    node: str,
    delete: Event,
    new_id: str,
    shown: list[dict[str, Any]],
    applied: list[Step],
) -> None:
    # the readiness gate ran again, on the new VM (it prints its machine id, nodes.py)
    first(applied, "create-replacement", f"{node}-ready", done=True)
    machine_id = hashlib.sha256(new_id.encode()).hexdigest()[:32]
    assert _outputs(shown, f"{node}-ready")["stdout"].strip() == machine_id
    assert ws.rke is not None
    removals = _node_log(nodes, "docker.jsonl")
    member = f"etcd-{node}"
    if "master" not in node:
        assert removals == []
        assert member not in ws.rke.members()
        return
    # the etcd member was removed through another master, before the VM's delete
    assert len(removals) == 1, removals
    (removal,) = removals
    assert removal["vm"] != delete.id and removal["time"] < delete.time
    member_id = f"{int(hashlib.sha256(member.encode()).hexdigest()[:16], 16):x}"  # nodes.py
    assert removal["argv"][3:] == ["member", "remove", member_id]
    # and `rke up` made the new machine a member again
    assert member in ws.rke.members()


def _check_rke2_leave(
    nodes: Path, node: str, delete: Event, create: Event, shown: list[dict[str, Any]]
) -> None:
    calls = [c for c in _node_log(nodes, "kubectl.jsonl") if node in c["argv"]]
    # RKE2's kubectl as rke2/scripts.py runs it: `--kubeconfig F <verb> ...`
    verbs = [(c["argv"][2:4], c) for c in calls if c["argv"][:1] == ["--kubeconfig"]]
    leave = [c for words, c in verbs if words in (["drain", node], ["delete", "node"])]
    assert [c["argv"][2] for c in leave] == ["drain", "delete"], calls
    assert all(c["vm"] != delete.id and c["time"] < delete.time for c in leave)
    # then the cluster-ready command found the new machine's Node Ready
    looks = [c for words, c in verbs if words == ["get", "node"] and c["time"] > create.time]
    assert looks, calls
    # the cluster-ready command re-ran with the new machine (its create names the VM ids)
    (ready,) = [r for r in shown if r["urn"].endswith("-nodes-ready")]
    assert create.id in _shown(ready["inputs"]["create"])

"""The order in which Pulumi's engine would replace a rebuilt node and delete leaving nodes.

The program's registrations (under the mocks) carry what the engine orders by: each
resource's dependencies, property dependencies, provider, ``ignoreChanges`` and
``deleteBeforeReplace``. ``Engine`` replays a small model of the engine's step generator
on them (pulumi/pulumi, pkg/resource/deploy/step_generator.go):

- a replaced resource registered with ``deleteBeforeReplace`` is deleted before it is
  created again, and before it, in reverse dependency order, every dependent that the
  replacement would replace (``continueStepsFromDiff``, ``calculateDependentReplacements``:
  a custom resource whose provider is replaced, or one with an input that depends on a
  replaced resource and whose provider's diff, with that input unknown, says replace);
  those dependents are created again when the program registers them;
- otherwise the new resource is created first and the old one deleted at the end;
- resources that are no longer registered are deleted at the end, in the antichains of
  ``ScheduleDeletes`` (dependents before their dependencies, parallel within a chain).

Which inputs make a provider's diff say replace: pulumi-command v1.2.1 replaces a command
only for ``triggers`` (provider/pkg/provider/common/inputs.go, ``replaceOnChanges``);
pulumi-kubernetes replaces a provider whose ``kubeconfig``, ``context`` or ``cluster`` is
unknown (provider/pkg/provider/provider.go, ``DiffConfig``). Other resources here are not
replaced through a dependency in these scenarios (VMs ignore their boot-only inputs).
The real engine replaces this model in issue 19.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest

from components.services.chart_upgrades import CHART_VERSIONS_OUTPUT
from rke2.component import RECORD_OUTPUT
from scripts.offline import Registration, Run, reveal, run_program
from tests.support.program_runs import committed, committed_rke2, edited, rke2_config, vms

REPLACE_KEYS = {
    "command:remote:Command": {"triggers"},
    "command:local:Command": {"triggers"},
    "pulumi:providers:kubernetes": {"kubeconfig", "context", "cluster"},
}


@dataclass(frozen=True)
class Step:
    op: str  # "create" | "delete"
    name: str
    type: str


def _provider_urn(reference: str) -> str:
    return reference.rsplit("::", 1)[0] if reference else ""


class Engine:
    """One update from ``old`` (the previous update's registrations, i.e. the state) to
    ``new``, with ``replaced`` (URNs) the resources whose own diff says replace."""

    def __init__(self, old: Run, new: Run, replaced: Iterable[str]) -> None:
        self.old = {r.urn: r for r in old.registrations}
        self.order = [r.urn for r in old.registrations]  # snapshots are in dependency order
        self.new = new.registrations
        self.replaced = set(replaced)

    def _dependents(self, root: str) -> list[Registration]:
        """``calculateDependentReplacements``: dependents of ``root`` that must be replaced."""
        dependent, replace = {root}, {root}
        found = []
        for urn in self.order[self.order.index(root) + 1 :]:
            r = self.old[urn]
            provider = _provider_urn(r.provider)
            if not ({*r.dependencies, provider} & dependent):
                continue
            dependent.add(urn)
            if not r.custom:
                continue
            keys = {k for k, deps in r.property_dependencies.items() if set(deps) & replace}
            keys -= set(r.ignore_changes)
            if provider in replace or keys & REPLACE_KEYS.get(r.type, set()):
                replace.add(urn)
                found.append(r)
        return found

    def steps(self) -> list[list[Step]]:
        """The steps in order; each inner list is one group of steps that may run at once."""
        timeline: list[list[Step]] = []
        at_end: list[Registration] = []
        recreate: set[str] = set()
        deleted: set[str] = set()
        changed = set(self.replaced)
        for r in self.new:
            if r.urn not in self.old:
                timeline.append([Step("create", r.name, r.type)])
                continue
            old = self.old[r.urn]
            keys = {k for k, deps in old.property_dependencies.items() if set(deps) & changed}
            keys -= set(old.ignore_changes)
            provider_replaced = _provider_urn(old.provider) in changed
            must_replace = r.urn in self.replaced or (
                old.custom and (provider_replaced or keys & REPLACE_KEYS.get(r.type, set()))
            )
            if r.urn in recreate:
                timeline.append([Step("create", r.name, r.type)])
            elif must_replace and r.delete_before_replace:
                for dependent in reversed(self._dependents(r.urn)):
                    if dependent.urn not in deleted:
                        timeline.append([Step("delete", dependent.name, dependent.type)])
                        deleted.add(dependent.urn)
                        recreate.add(dependent.urn)
                        changed.add(dependent.urn)
                timeline.append([Step("delete", r.name, r.type)])
                timeline.append([Step("create", r.name, r.type)])
                changed.add(r.urn)
            elif must_replace:
                timeline.append([Step("create", r.name, r.type)])
                at_end.append(old)
                changed.add(r.urn)
        registered = {r.urn for r in self.new}
        condemned = at_end + [o for u, o in self.old.items() if u not in registered]
        timeline += self.schedule_deletes(condemned)
        return timeline

    def schedule_deletes(self, condemned: list[Registration]) -> list[list[Step]]:
        """``ScheduleDeletes``: antichains, each deleted only after everything condemned
        that depends on its members (or is their child) is gone."""
        remaining = {r.urn: r for r in condemned}
        chains: list[list[Step]] = []
        while remaining:
            needed = {d for r in remaining.values() for d in [*r.dependencies, r.parent]}
            free = [u for u in remaining if u not in needed]
            assert free, "a dependency cycle"
            chains.append([Step("delete", remaining[u].name, remaining[u].type) for u in free])
            for urn in free:
                del remaining[urn]
        return chains


def flat(timeline: list[list[Step]]) -> list[Step]:
    return [step for group in timeline for step in group]


def position(timeline: list[list[Step]], op: str, name: str, type_: str | None = None) -> int:
    """The index of the group holding the step (the first one)."""
    for i, group in enumerate(timeline):
        if any(s.op == op and s.name == name and type_ in (None, s.type) for s in group):
            return i
    raise AssertionError(f"no {op} of {name}")


VM_TYPES = {"openstack:compute/instance:Instance", "digitalocean:index/droplet:Droplet"}


def live_vms_never_share_an_identity(timeline: list[list[Step]], old: Run) -> None:
    """A node's VM carries the node's ZeroTier identity and overlay address: at no point
    (within a group, steps may run together) do two VMs of one node run."""
    live = {vm.name: 1 for vm in vms(old)}
    for group in timeline:
        creates = [s.name for s in group if s.op == "create" and s.type in VM_TYPES]
        for name in creates:
            live[name] = live.get(name, 0) + 1
            assert live[name] <= 1, f"two VMs of {name} run at once (one ZeroTier identity)"
        for s in group:
            if s.op == "delete" and s.type in VM_TYPES:
                live[s.name] -= 1


def removes_etcd_member(registration: Registration, node: str) -> bool:
    """Whether deleting this command removes ``node``'s etcd member: RKE2's drain-and-delete
    of a server (K3s removes the member of a deleted Node) or RKE's ``etcdctl member
    remove`` of ``etcd-<node>``."""
    script = str(reveal(registration.inputs.get("delete", "")))
    rke2 = "delete node" in script and node in script and "server (etcd member)" in script
    rke = "etcdctl member remove" in script and f"etcd-{node}" in script
    return rke or rke2


# --- scenarios ----------------------------------------------------------------------


def _rebuild(node: str) -> Callable[[dict[str, Any]], None]:
    def edit(values: dict[str, Any]) -> None:
        values["multicloud:rebuild"] = [node]

    return edit


@cache
def rke_rebuild(node: str) -> tuple[Run, Run]:
    config, secrets = edited("prod", _rebuild(node))
    new = run_program(config, secret_keys=secrets, stack="prod")
    assert new.error is None, new.error
    return committed("prod"), new


@cache
def rke2_rebuild(node: str) -> tuple[Run, Run]:
    old = committed_rke2("prod")
    config, secrets = rke2_config("prod", _rebuild(node))
    new = run_program(
        config,
        secret_keys=secrets,
        stack="prod",
        previous_outputs={
            RECORD_OUTPUT: old.outputs[RECORD_OUTPUT],
            "nodes": old.outputs["nodes"],
            CHART_VERSIONS_OUTPUT: old.outputs[CHART_VERSIONS_OUTPUT],
        },
    )
    assert new.error is None, new.error
    return old, new


# tests/engine/test_program_rebuild.py rebuilds mc-prod-home-worker-1 (an OpenStack worker)
# and mc-prod-digitalocean-master-0 (a droplet master) with each engine through the real
# engine and fake clouds (delete-first, nothing else replaced, the etcd member or the Node
# leaving first): this model keeps the other two kinds of VM.
REBUILDS = [
    (engine, node)
    for engine in ("rke", "rke2")
    for node in ("mc-prod-digitalocean-worker-0", "mc-prod-ramnode-master-0")
]


def timeline_of(engine: str, node: str) -> tuple[list[list[Step]], Run, Run]:
    old, new = (rke_rebuild if engine == "rke" else rke2_rebuild)(node)
    [vm] = [r for r in new.registrations if r.name == node and r.type in VM_TYPES]
    return Engine(old, new, [vm.urn]).steps(), old, new


@pytest.mark.parametrize(("engine", "node"), REBUILDS)
def test_a_rebuilt_vm_is_gone_before_its_replacement_boots(engine: str, node: str) -> None:
    timeline, old, _ = timeline_of(engine, node)
    assert position(timeline, "delete", node) < position(timeline, "create", node)
    live_vms_never_share_an_identity(timeline, old)


@pytest.mark.parametrize(("engine", "node"), REBUILDS)
def test_a_rebuild_replaces_nothing_in_the_cluster(engine: str, node: str) -> None:
    """Delete-first must not drag the cluster's objects along: no Kubernetes provider or
    object, DNS record or the RKE command is deleted while a node is rebuilt."""
    timeline, _, _ = timeline_of(engine, node)
    gone = {(s.type, s.name) for s in flat(timeline) if s.op == "delete"}
    assert not {g for g in gone if g[0].startswith(("kubernetes:", "pulumi:providers:kube"))}
    assert not {g for g in gone if g[0].startswith("cloudflare:") or g[1].endswith("-rke-up")}
    assert not {g for g in gone if g[0] in VM_TYPES and g[1] != node}


@pytest.mark.parametrize("engine", ["rke", "rke2"])
@pytest.mark.parametrize("node", ["mc-prod-ramnode-master-0"])  # the droplet: the real engine's
def test_a_rebuilt_master_leaves_etcd_before_its_vm_goes(engine: str, node: str) -> None:
    timeline, old, _ = timeline_of(engine, node)
    removals = [r for r in old.registrations if removes_etcd_member(r, node)]
    assert removals, f"no step removes {node}'s etcd member"
    [vm_type] = [r.type for r in old.registrations if r.name == node and r.type in VM_TYPES]
    vm_gone = position(timeline, "delete", node, vm_type)
    for removal in removals:
        # the member leaves before the old machine goes and before the new one boots (a
        # new machine must not meet the old member under the same name)
        assert position(timeline, "delete", removal.name) < vm_gone
        assert position(timeline, "delete", removal.name) < position(timeline, "create", node)
        # it runs on another master, one that is not replaced in this update
        host = reveal(removal.inputs["connection"])["host"]
        runner = next(n["name"] for n in old.outputs["nodes"] if n["sshAddress"] == host)
        assert runner != node and "master" in runner


# --- RKE2: nodes that leave the stack ------------------------------------------------


def _grow(values: dict[str, Any]) -> None:
    sites = values["multicloud:sites"]
    sites["digitalocean"]["workers"] += 1
    sites["home"]["workers"] += 1


@cache
def rke2_shrink() -> tuple[Run, Run]:
    """prod with two more workers, then without them: two nodes leave at once."""
    first = committed_rke2("prod")
    previous = {
        RECORD_OUTPUT: first.outputs[RECORD_OUTPUT],
        "nodes": first.outputs["nodes"],
        CHART_VERSIONS_OUTPUT: first.outputs[CHART_VERSIONS_OUTPUT],
    }
    config, secrets = rke2_config("prod", _grow)
    grown = run_program(config, secret_keys=secrets, stack="prod", previous_outputs=previous)
    assert grown.error is None, grown.error
    previous = {
        RECORD_OUTPUT: grown.outputs[RECORD_OUTPUT],
        "nodes": grown.outputs["nodes"],
        CHART_VERSIONS_OUTPUT: grown.outputs[CHART_VERSIONS_OUTPUT],
    }
    config, secrets = rke2_config("prod")
    shrunk = run_program(config, secret_keys=secrets, stack="prod", previous_outputs=previous)
    assert shrunk.error is None, shrunk.error
    return grown, shrunk


def test_leaving_nodes_drain_one_at_a_time_against_a_staying_server() -> None:
    old, new = rke2_shrink()
    timeline = Engine(old, new, []).steps()
    leaving = {"mc-prod-digitalocean-worker-1", "mc-prod-home-worker-2"}
    drains = [f"{n}-leave" for n in leaving]
    groups = [position(timeline, "delete", d) for d in drains]
    assert len(set(groups)) == len(groups), "two drains run at the same time"
    staying = {n["sshAddress"]: n["name"] for n in new.outputs["nodes"]}
    for drain in drains:
        host = reveal(old.by_name[drain].inputs["connection"])["host"]
        assert staying.get(host, "").find("master") > 0, f"{drain} runs against {host}"
        server = staying[host]
        assert not [s for s in flat(timeline) if s.op == "delete" and s.name == server]
    for name in leaving:  # and each node's VM goes only after its drain
        assert position(timeline, "delete", f"{name}-leave") < position(timeline, "delete", name)


def test_a_server_changes_alone() -> None:
    """Rebuilding a server while workers leave is refused before anything changes: the
    workers' drains would run against servers chosen at the previous update."""
    old, _ = rke2_shrink()
    previous = {
        RECORD_OUTPUT: old.outputs[RECORD_OUTPUT],
        "nodes": old.outputs["nodes"],
        CHART_VERSIONS_OUTPUT: old.outputs[CHART_VERSIONS_OUTPUT],
    }
    config, secrets = rke2_config("prod", _rebuild("mc-prod-digitalocean-master-0"))
    run = run_program(config, secret_keys=secrets, stack="prod", previous_outputs=previous)
    assert run.error is not None and "multicloud:rebuild" in str(run.error)
    assert "mc-prod-home-worker-2" in str(run.error)

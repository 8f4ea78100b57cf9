"""What an ``rke up`` will do to the nodes, as RKE decides it, and how to do it in steps.

RKE identifies a host by its ``address`` and reconciles etcd members by it (its rules,
with their sources in rancher/rke: docs/recovery.md#etcd-members-change-one-at-a-time).
``plan_steps`` turns any change of the etcd members into a sequence of cluster.yml node
lists, each one etcd member away from the one before (a replacement in place is a
removal then an addition), and refuses sequences that would remove the last member.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

ROLES = ("controlplane", "etcd", "worker")
# cluster.yml keys of a node and their names in the state's JSON (types/rke_types.go,
# RKEConfigNode). SSH key paths and keys are left out: they point at an old temp dir.
_NODE_KEYS = {
    "address": "address",
    "port": "port",
    "internal_address": "internalAddress",
    "hostname_override": "hostnameOverride",
    "user": "user",
    "role": "role",
    "labels": "labels",
    "taints": "taints",
}


class PlanError(ValueError):
    """A change RKE cannot make safely; the message says what to do instead."""


@dataclass(frozen=True)
class Host:
    """One cluster.yml node as RKE sees it. ``entry`` is the node in cluster.yml form."""

    address: str
    name: str  # hostname_override (RKE defaults it to the address)
    internal_address: str  # defaults to the address (cluster/defaults.go)
    roles: tuple[str, ...]
    entry: Mapping[str, Any] = field(compare=False, hash=False)

    @property
    def member(self) -> str:
        """The etcd member name RKE gives this host (``services.GetEtcdInitialCluster``)."""
        return f"etcd-{self.name}"

    def has(self, role: str) -> bool:
        return role in self.roles

    def with_roles(self, roles: Iterable[str]) -> Host:
        kept = tuple(r for r in ROLES if r in set(roles))
        return replace(self, roles=kept, entry={**self.entry, "role": list(kept)})

    def label(self) -> str:
        return f"{self.name} ({self.address})"


def host_from_entry(entry: Mapping[str, Any]) -> Host:
    """A ``Host`` from a cluster.yml node entry."""
    address = str(entry["address"])
    return Host(
        address=address,
        name=str(entry.get("hostname_override") or address),
        internal_address=str(entry.get("internal_address") or address),
        roles=tuple(r for r in ROLES if r in (entry.get("role") or [])),
        entry=dict(entry),
    )


def hosts_from_cluster_yml(doc: Mapping[str, Any] | None) -> list[Host]:
    """The nodes of a parsed cluster.yml."""
    return [host_from_entry(n) for n in ((doc or {}).get("nodes") or [])]


def hosts_from_state(nodes: Sequence[Mapping[str, Any]]) -> list[Host]:
    """The nodes of ``currentState.rkeConfig.nodes`` (JSON names), as cluster.yml entries."""
    hosts = []
    for node in nodes:
        entry = {key: node[json_key] for key, json_key in _NODE_KEYS.items() if node.get(json_key)}
        hosts.append(host_from_entry(entry))
    return hosts


def _by_address(hosts: Iterable[Host], role: str | None = None) -> dict[str, Host]:
    return {h.address: h for h in hosts if role is None or h.has(role)}


@dataclass(frozen=True)
class Transition:
    """What one ``rke up`` from the ``before`` hosts to the ``after`` hosts does."""

    etcd_removed: tuple[Host, ...]
    etcd_added: tuple[Host, ...]
    drained: tuple[Host, ...]  # workers the runner drains first: their address leaves the workers
    deleted: tuple[Host, ...]  # Nodes RKE cordons and deletes: their address leaves the cluster

    @property
    def changes_etcd(self) -> bool:
        return bool(self.etcd_removed or self.etcd_added)

    def describe(self) -> list[str]:
        lines = []
        for title, hosts in (
            ("etcd members leaving", [f"{h.member} ({h.address})" for h in self.etcd_removed]),
            ("etcd members joining", [f"{h.member} ({h.address})" for h in self.etcd_added]),
            ("drained by the runner first", [h.label() for h in self.drained]),
            ("Nodes RKE cordons and deletes", [h.label() for h in self.deleted]),
        ):
            if hosts:
                lines.append(f"{title}: {', '.join(hosts)}")
        return lines or ["no host leaves or joins the etcd members; no Node is deleted"]


def transition(before: Sequence[Host], after: Sequence[Host]) -> Transition:
    """The host-level effect of one ``rke up`` (see the module docstring for the source)."""
    old_etcd, new_etcd = _by_address(before, "etcd"), _by_address(after, "etcd")
    old_workers, new_workers = _by_address(before, "worker"), _by_address(after, "worker")
    new_all = _by_address(after)
    return Transition(
        etcd_removed=tuple(h for a, h in old_etcd.items() if a not in new_etcd),
        etcd_added=tuple(h for a, h in new_etcd.items() if a not in old_etcd),
        drained=tuple(h for a, h in old_workers.items() if a not in new_workers),
        deleted=tuple(h for h in before if h.address not in new_all),
    )


def replaced_in_place(
    before: Sequence[Host],
    after: Sequence[Host],
    ids_before: Mapping[str, str],
    ids_after: Mapping[str, str],
) -> tuple[str, ...]:
    """Addresses of etcd hosts that stay at their address but are a different member to
    etcd: another machine (machine id changed), another internal address (peer URL) or
    another name (member name). RKE would leave their member alone; they need a removal
    and an addition. Machine ids are keyed by node name; unknown ids count as unchanged."""
    old, new = _by_address(before, "etcd"), _by_address(after, "etcd")
    found = []
    for address in sorted(old.keys() & new.keys()):
        b, a = old[address], new[address]
        old_id, new_id = ids_before.get(b.name), ids_after.get(a.name)
        if old_id and new_id:  # the state keeps ids cut short (rke.state.short_ids)
            size = min(len(old_id), len(new_id))
            old_id, new_id = old_id[:size], new_id[:size]
        if (
            b.internal_address != a.internal_address
            or b.name != a.name
            or (old_id and new_id and old_id != new_id)
        ):
            found.append(address)
    return tuple(found)


@dataclass(frozen=True)
class Step:
    """One ``rke up``: its hosts, what it changes, and which in-place replacements it completes."""

    hosts: tuple[Host, ...]
    change: Transition
    completes: tuple[str, ...] = ()  # addresses whose replacement is done after this step
    final: bool = False


def _ordered(hosts: Iterable[Host]) -> tuple[Host, ...]:
    return tuple(sorted(hosts, key=lambda h: (h.name, h.address)))


def plan_steps(
    before: Sequence[Host], after: Sequence[Host], replaced: Sequence[str] = ()
) -> list[Step]:
    """The ``rke up`` runs that take the cluster from ``before`` to ``after``.

    One run when at most one etcd member leaves and at most one joins (RKE removes,
    then adds) and no member is replaced in place; otherwise one run per member change,
    in this order: swaps (one leaves, one joins; the addition first when the leaving
    member is the only one, since RKE refuses a run that replaces every member), then
    removals, additions, and replacements in place (a run without the host's etcd role,
    then a run with it). The last run always applies ``after`` itself. Raises
    ``PlanError`` when a step would remove the last member, or when the only member is
    replaced in place (its data is gone: restore from a snapshot).
    """
    after_by_address = _by_address(after)
    old_etcd = [h.address for h in before if h.has("etcd")]
    new_etcd = {h.address for h in after if h.has("etcd")}
    leaving = [a for a in old_etcd if a not in new_etcd]
    joining = [h.address for h in after if h.has("etcd") and h.address not in set(old_etcd)]
    in_place = [a for a in replaced if a in new_etcd and a in set(old_etcd)]
    if not old_etcd:
        return [Step(_ordered(after), transition(before, after), (), True)]
    if not new_etcd:
        raise PlanError("the new cluster.yml has no etcd host; RKE needs at least one")

    simple = len(leaving) <= 1 and len(joining) <= 1 and not in_place
    if simple and not (leaving and joining and len(old_etcd) == 1):
        return [Step(_ordered(after), transition(before, after), (), True)]

    current: dict[str, Host] = _by_address(before)
    states: list[tuple[dict[str, Host], tuple[str, ...]]] = []

    def etcd_count() -> int:
        return sum(1 for h in current.values() if h.has("etcd"))

    def remove(address: str) -> None:
        if etcd_count() <= 1:
            raise PlanError(
                f"removing {current[address].member} would leave etcd without members; "
                "add the new etcd host first (keep at least one member throughout)"
            )
        demote(address, stays=address in after_by_address)

    def demote(address: str, stays: bool) -> None:
        """Take the etcd role from a host: one that stays keeps its other roles, one that
        leaves (or has no other role) goes now."""
        host = current[address]
        remaining = [r for r in host.roles if r != "etcd"]
        if remaining and stays:
            current[address] = host.with_roles(remaining)
        else:
            del current[address]

    def add(address: str) -> None:
        current[address] = after_by_address[address]

    while leaving or joining:
        if leaving and joining:
            gone, new = leaving.pop(0), joining.pop(0)
            if etcd_count() == 1:
                if after_by_address[new].name == current[gone].name:
                    raise PlanError(
                        f"the only etcd member {current[gone].member} moves from {gone} to "
                        f"{new}: RKE refuses a run that replaces every etcd member, and two "
                        "nodes cannot share a name. Add a second master first, or restore "
                        "from a snapshot (docs/recovery.md)."
                    )
                add(new)
                states.append((dict(current), ()))
                remove(gone)
            else:
                remove(gone)
                add(new)
        elif leaving:
            remove(leaving.pop(0))
        else:
            add(joining.pop(0))
        states.append((dict(current), ()))
    for address in in_place:
        if etcd_count() <= 1:
            raise PlanError(
                f"{current[address].member} is the only etcd member and its machine was "
                "replaced: its data is gone. Restore from a snapshot (docs/recovery.md)."
            )
        demote(address, stays=True)
        states.append((dict(current), ()))
        add(address)
        states.append((dict(current), (address,)))

    steps: list[Step] = []
    previous: Sequence[Host] = before
    for hosts, completes in states[:-1]:
        ordered = _ordered(hosts.values())
        steps.append(Step(ordered, transition(previous, ordered), completes))
        previous = ordered
    last_completes = states[-1][1] if states else ()
    final = _ordered(after)
    steps.append(Step(final, transition(previous, final), last_completes, True))
    for step in steps:
        if len(step.change.etcd_removed) > 1 or len(step.change.etcd_added) > 1:
            raise AssertionError(f"a step changes more than one member: {step.change}")
    return steps


def step_document(base: Mapping[str, Any], hosts: Sequence[Host]) -> dict[str, Any]:
    """A cluster.yml document: ``base`` (the new settings) with ``hosts`` as its nodes."""
    return {**base, "nodes": [dict(h.entry) for h in hosts]}

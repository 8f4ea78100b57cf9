"""What `make roll` does, in order: pure, from the last deployed nodes and the drift table.

Input: the stack's ``nodes`` output (the last deployed topology), its ``bootDrift`` table
(nodes whose running VM booted with other inputs than the code gives now), the nodes whose
VM is missing (a replace interrupted half-way: its old VM was deleted, the new one never
created) and the master counts the stack file asks for. Output: one step per node, each a
single ``pulumi up`` that changes exactly that node, or ``RollRefused`` saying what is
unsafe and how to proceed.

Order (issue 21): finish missing nodes; master removals one etcd member per step; master
additions one per step; drifted workers site by site; drifted masters one at a time. The
rules, checked on a model of etcd along the way:
- a replaced master leaves etcd first (``rke/etcd_leave.py``; RKE2's Node deletion,
  ``rke2/scripts.py``) and rejoins as a new member: the others keep quorum only with 3 or
  more members, so a single master is never replaced (restore a snapshot instead) and a
  transient 2-member cluster replaces none;
- an added member counts for quorum before it starts (etcd ``member add``): with one
  member that is the only way to grow, and the step waits for the new member;
- a removal is a ``member remove`` while every member is up, so the rest keep quorum;
- no site holds a majority of the members between steps (the config's rule,
  ``components/config/checks.py`` ``check_topology``);
- never the site's last public-ingress node while another public-ingress node is down;
- nodes about to be removed are not rolled first.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

StepKind = Literal["finish", "remove-master", "add-master", "replace"]


class RollRefused(Exception):
    """The roll would be unsafe or cannot start; the message says what and how to go on."""


@dataclass(frozen=True)
class Node:
    """One row of the stack's ``nodes`` output (``components/cluster_node.py`` node_row)."""

    name: str
    site: str
    roles: tuple[str, ...]
    ingress: str = "none"  # public | private | none

    @property
    def is_master(self) -> bool:
        return "etcd" in self.roles


def nodes_from_rows(rows: Iterable[Mapping[str, object]]) -> tuple[Node, ...]:
    """The ``nodes`` output's rows as ``Node``s (extra columns ignored)."""
    nodes = []
    for row in rows:
        roles = row.get("roles") or ()
        nodes.append(
            Node(
                name=str(row["name"]),
                site=str(row["site"]),
                roles=tuple(str(r) for r in roles) if isinstance(roles, list | tuple) else (),
                ingress=str(row.get("ingress") or "none"),
            )
        )
    return tuple(nodes)


@dataclass(frozen=True)
class Cluster:
    """What the plan starts from."""

    cluster_name: str  # multicloud:clusterName: new masters are <name>-<site>-master-<i>
    nodes: tuple[Node, ...]  # the `nodes` output: the last deployed topology
    drift: Mapping[str, Sequence[str]]  # `bootDrift`: node -> why it is behind
    masters_wanted: Mapping[str, int]  # the stack file's sites.<site>.masters
    workers_wanted: Mapping[str, int]  # the stack file's sites.<site>.workers
    missing: frozenset[str] = frozenset()  # deployed nodes whose VM is absent


@dataclass(frozen=True)
class Step:
    """One ``pulumi up``: ``kind`` on ``node``, with the stack file's keys changed to
    ``masters`` (per site), ``rebuild`` and, at an even master total between two odd
    ones, ``multicloud:roll`` = ``{"targetMasters": target_masters}`` (``roll_target``)."""

    kind: StepKind
    node: str
    site: str
    why: str
    masters: tuple[tuple[str, int], ...]
    rebuild: tuple[str, ...]
    target_masters: int | None
    members_before: int  # etcd members (voting) when the step starts
    members_after: int  # etcd members it should have when the step's waits pass
    is_master: bool


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    notes: tuple[str, ...] = field(default=())  # what the filters left out, and why


def quorum(members: int) -> int:
    """etcd's quorum: a majority of the voting members."""
    return members // 2 + 1


def quorum_holds(step: Step) -> bool:
    """Whether etcd keeps quorum throughout ``step`` (the model in the module docstring).
    Adding a member to a single-member cluster is the one exception the plan allows: no
    other way grows it, and the step waits for the new member (see ``plan``)."""
    m = step.members_before
    if not step.is_master:
        return m >= 1
    if step.kind == "replace":  # leaves (needs 2 up), then rejoins with m-1 of m up
        return m - 1 >= quorum(m)
    if step.kind == "remove-master":  # member remove with all m up, then m-1 of m-1
        return m >= 2
    return m >= quorum(m + 1)  # add/finish: m up of m+1 until the new one starts


def roll_target(total: int, wanted: int) -> int | None:
    """``multicloud:roll``'s ``targetMasters`` for an update with ``total`` masters: only
    at an even total (the config check refuses one otherwise), the odd total one step
    towards the stack file's ``wanted`` (3 -> 4 -> 5: 5 at 4; 7 -> 6 -> 5: 5 at 6)."""
    if total % 2:
        return None
    return total + 1 if wanted > total else total - 1


def spread_ok(counts: Mapping[str, int]) -> bool:
    """The config's rule between steps: with masters in two or more sites, none holds a
    majority (``check_topology`` in ``components/config/checks.py``)."""
    total = sum(counts.values())
    sites = [n for n in counts.values() if n > 0]
    return total >= 1 and (len(sites) < 2 or all(2 * n <= total for n in sites))


_MASTER = re.compile(r"^(?P<prefix>.+)-master-(?P<index>\d+)$")


def master_name(cluster_name: str, site: str, index: int) -> str:
    """``components/config/checks.py`` node_specs' naming."""
    return f"{cluster_name}-{site}-master-{index}"


def _counts(nodes: Iterable[Node], masters: bool) -> Counter[str]:
    return Counter(n.site for n in nodes if n.is_master == masters)


def _check_input(c: Cluster, only: str | None, site: str | None) -> None:
    names = {n.name for n in c.nodes}
    sites = {n.site for n in c.nodes} | set(c.masters_wanted) | set(c.workers_wanted)
    if site is not None and site not in sites:
        raise RollRefused(f"--site {site}: no such site (sites: {', '.join(sorted(sites))})")
    future = {
        master_name(c.cluster_name, s, i) for s, n in c.masters_wanted.items() for i in range(n)
    }
    if only is not None and only not in names | future:
        raise RollRefused(
            f"--only {only}: not a node of this stack (`pulumi stack output nodes` lists them)"
        )
    workers = _counts(c.nodes, masters=False)
    for s in sorted(sites):
        deployed, wanted = workers.get(s, 0), c.workers_wanted.get(s, 0)
        if deployed != wanted:
            raise RollRefused(
                f"sites.{s}.workers is {wanted} in the stack file but {deployed} are deployed: "
                "`make up` changes worker counts; run it first, then `make roll`"
            )
    total = sum(c.masters_wanted.values())
    if total % 2 == 0 or not spread_ok(c.masters_wanted):
        raise RollRefused(
            f"sites.<site>.masters ask for {total} masters "
            f"({', '.join(f'{s}: {n}' for s, n in sorted(c.masters_wanted.items()))}): the "
            "total must be odd with no site holding a majority; fix the stack file "
            "(`make preview` explains), then `make roll`"
        )
    for n in c.nodes:
        if n.is_master and not _MASTER.match(n.name):
            raise RollRefused(f"{n.name}: a master whose name does not end in -master-<index>")


def _count_chain(c: Cluster, now: Counter[str]) -> list[tuple[StepKind, str]]:
    """One etcd member per step from ``now`` to the wanted counts: removals first, then
    additions, each time the first site whose change keeps ``spread_ok``."""
    counts = {s: now.get(s, 0) for s in sorted(set(now) | set(c.masters_wanted))}
    chain: list[tuple[StepKind, str]] = []
    while any(counts[s] != c.masters_wanted.get(s, 0) for s in counts):
        removals = sorted(
            (s for s in counts if counts[s] > c.masters_wanted.get(s, 0)),
            key=lambda s: (-counts[s], s),
        )
        additions = sorted(
            (s for s in counts if counts[s] < c.masters_wanted.get(s, 0)),
            key=lambda s: (counts[s], s),
        )
        options: list[tuple[StepKind, str, int]] = [
            *(("remove-master", s, -1) for s in removals),
            *(("add-master", s, 1) for s in additions),
        ]
        for kind, s, delta in options:
            after = {**counts, s: counts[s] + delta}
            if spread_ok(after):
                chain.append((kind, s))
                counts = after
                break
        else:
            raise RollRefused(
                "no order of one-member steps from "
                f"{dict(sorted(now.items()))} to {dict(sorted(c.masters_wanted.items()))} "
                "masters keeps every site below a majority; change the counts in smaller "
                "steps (one `make roll` each)"
            )
    return chain


def plan(c: Cluster, only: str | None = None, site: str | None = None) -> Plan:
    """The ordered steps, narrowed to ``only`` (a node) and/or ``site``. Raises
    ``RollRefused`` for an unsafe or impossible roll."""
    _check_input(c, only, site)

    def in_scope(node: str, node_site: str) -> bool:
        return (only is None or node == only) and (site is None or node_site == site)

    by_name = {n.name: n for n in c.nodes}
    counts = {s: n for s, n in _counts(c.nodes, masters=True).items()}
    for s in c.masters_wanted:
        counts.setdefault(s, 0)
    wanted_total = sum(c.masters_wanted.values())
    members = sum(1 for n in c.nodes if n.is_master and n.name not in c.missing)
    removing = {
        n.name
        for n in c.nodes
        if n.is_master
        and int(_MASTER.match(n.name)["index"])  # type: ignore[index]
        >= c.masters_wanted.get(n.site, 0)
    }
    down = set(c.missing)  # nodes away now
    notes: list[str] = []
    steps: list[Step] = []

    def add(kind: StepKind, node: Node, why: str, rebuild: tuple[str, ...] = ()) -> None:
        nonlocal members
        before = members
        if kind in ("add-master", "finish") and node.is_master:
            members += 1
        elif kind == "remove-master":
            members -= 1
        total = sum(counts.values())
        step = Step(
            kind=kind,
            node=node.name,
            site=node.site,
            why=why,
            masters=tuple(sorted(counts.items())),
            rebuild=rebuild,
            target_masters=roll_target(total, wanted_total),
            members_before=before,
            members_after=members,
            is_master=node.is_master,
        )
        _refuse_unsafe(step, by_name, down)
        steps.append(step)

    # 1. Nodes whose VM is missing: the update creates them (no `rebuild` needed).
    outside = sorted(n for n in c.missing if n in by_name and not in_scope(n, by_name[n].site))
    if outside:
        raise RollRefused(
            f"{', '.join(outside)} has no VM (a replace was interrupted): finish it first "
            f"with `make roll ARGS='--only {outside[0]}'` or a plain `make roll`"
        )
    # Even a node about to be removed: every step's update would create it otherwise.
    for name in sorted(c.missing, key=lambda n: (n not in by_name or by_name[n].is_master, n)):
        if name in by_name:
            down.discard(name)
            add("finish", by_name[name], "its VM is missing (a replace was interrupted)")

    # 2. Master count changes, all or nothing: a filter leaving some out skips them all.
    chain = _count_chain(c, _counts(c.nodes, masters=True))
    chain_names = []
    simulated = dict(counts)
    for kind, s in chain:
        index = simulated[s] - 1 if kind == "remove-master" else simulated[s]
        chain_names.append(master_name(c.cluster_name, s, index))
        simulated[s] += -1 if kind == "remove-master" else 1
    if chain and not all(in_scope(n, s) for n, (_, s) in zip(chain_names, chain, strict=True)):
        notes.append(
            f"the master count change ({sum(counts.values())} → {wanted_total}) is left out: "
            "it spans nodes outside the filter; a `make roll` without filters makes it"
        )
        chain = []
    for (kind, s), name in zip(chain, chain_names, strict=False):
        before = counts[s]
        counts[s] += -1 if kind == "remove-master" else 1
        node = by_name.get(name) or Node(name, s, ("controlplane", "etcd"))
        verb = "leaves" if kind == "remove-master" else "joins"
        down.discard(name)
        add(
            kind,
            node,
            f"sites.{s}.masters {before} → {counts[s]} (of {c.masters_wanted.get(s, 0)}): "
            f"one etcd member {verb}, {members} → "
            f"{members + (-1 if kind == 'remove-master' else 1)} members",
        )

    # 3. and 4. Drifted nodes in scope: workers site by site (the nodes output's site
    # order), then masters one at a time. Nodes about to be removed are not rolled.
    site_order = list(dict.fromkeys(n.site for n in c.nodes))
    drifted = [
        n
        for n in c.nodes
        if c.drift.get(n.name) and n.name not in c.missing and in_scope(n.name, n.site)
    ]
    for n in drifted:
        if n.name in removing:
            notes.append(f"{n.name} is not rolled: it is to be removed (sites.{n.site}.masters)")
    rolled = [n for n in drifted if n.name not in removing]
    ordered = sorted(rolled, key=lambda n: (n.is_master, site_order.index(n.site), n.name))
    for n in ordered:
        add("replace", n, "; ".join(c.drift[n.name]), rebuild=(n.name,))
    return Plan(tuple(steps), tuple(notes))


def _refuse_unsafe(step: Step, nodes: Mapping[str, Node], down: set[str]) -> None:
    """Raise ``RollRefused`` when ``step`` would break a rule of the module docstring."""
    if step.is_master and step.kind == "replace" and step.members_before <= 1:
        raise RollRefused(
            f"{step.node} is the only master: its machine holds etcd's data, and a replaced "
            "single master starts an empty cluster. Restore from a snapshot instead "
            "(docs/recovery.md), or add masters first (sites.<site>.masters: 3, then "
            "`make roll` steps the count up and replaces this master last)"
        )
    if step.is_master and step.kind == "finish" and step.members_before == 0:
        raise RollRefused(
            f"{step.node} is the only master and has no VM: etcd's data went with it. "
            "Restore from a snapshot (docs/recovery.md)"
        )
    if not quorum_holds(step) and step.kind not in ("add-master", "finish"):
        raise RollRefused(
            f"{step.kind} {step.node} would leave etcd without quorum "
            f"({step.members_before} members: {step.members_before - 1} stay up, quorum "
            f"{quorum(step.members_before)}); finish the master count change first "
            "(`make roll` without filters)"
        )
    node = nodes.get(step.node)
    if step.kind == "replace" and node is not None and node.ingress == "public":
        others_down = sorted(n for n in down if n in nodes and nodes[n].ingress == "public")
        site_left = [
            n
            for n in nodes.values()
            if n.site == node.site and n.ingress == "public" and n.name != node.name
        ]
        if others_down and not site_left:
            raise RollRefused(
                f"{step.node} is the last public-ingress node of {node.site} and "
                f"{', '.join(others_down)} (public ingress) is down: replacing it now could "
                "leave no live record target; bring that node back first"
            )

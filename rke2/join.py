"""Who initializes the cluster and whom every other node joins: a pure decision.

RKE2 has no ``cluster-init`` flag (``pkg/cli/cmds/server.go`` drops K3s's): a server
without ``server:`` starts a new cluster, every other node joins
``server: https://<a server>:9345``. User-data is boot-only, so the target is fixed when
the VM is created. Without the previous stack output ``rke2`` (a ``ClusterRecord``) the
master with the lowest overlay address initializes; with it every node joins a server
that was Ready (docs/rke2.md#joining-exactly-one-server-initializes). A failed update
keeps the previous record (Pulumi's ``SameStep.Apply`` retains a resource's old outputs).
Every choice here is a function of this update's servers and the record, so an update
after a quiet one plans the same: nothing settles one update late.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components.nodes import NodeSpec
from rke2.release import version_key

SUPERVISOR_PORT = 9345  # RKE2's supervisor (registration) port
RECORD_FORMAT = 1


class JoinError(ValueError):
    """The requested change would break the cluster; the message says what to do."""


@dataclass(frozen=True)
class ClusterRecord:
    """What a successful ``pulumi up`` leaves in the stack output ``rke2``."""

    # The server every other node joins (the anchor): the one that initialized the
    # cluster until it is rebuilt or removed, then the server that took over from it.
    # (The key keeps its first name, so records that stacks hold stay readable.)
    init_server: str
    servers: tuple[str, ...]  # servers Ready in the cluster at the end of that update
    kubernetes_version: str  # the version the upgrade Plans were set to
    # The server the anchor's own drain runs on (JoinPlan.runner); None in records written
    # before it was kept.
    anchor_runner: str | None = None

    def to_output(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "initServer": self.init_server,
            "servers": list(self.servers),
            "kubernetesVersion": self.kubernetes_version,
        } | ({"anchorRunner": self.anchor_runner} if self.anchor_runner else {})

    @classmethod
    def from_output(cls, value: Any) -> ClusterRecord | None:
        """The record from a stack output, None when there is none (a first deployment).

        Raises ``JoinError`` for an output this program did not write.
        """
        if value is None:
            return None
        if not isinstance(value, Mapping) or value.get("format") != RECORD_FORMAT:
            raise JoinError(
                f"the stack output 'rke2' is not a cluster record of format {RECORD_FORMAT}: "
                f"{value!r}; it is written by this program and must not be edited"
            )
        return cls(
            init_server=str(value["initServer"]),
            servers=tuple(str(s) for s in value["servers"]),
            kubernetes_version=str(value["kubernetesVersion"]),
            anchor_runner=str(value["anchorRunner"]) if value.get("anchorRunner") else None,
        )


@dataclass(frozen=True)
class JoinPlan:
    """Per node, the server it joins (None: it initializes the cluster)."""

    targets: Mapping[str, str | None]  # node name -> server node name or None
    anchor: str  # the server the cluster-ready and drain commands run against
    record: ClusterRecord  # what this update records once the cluster is Ready

    def server_url(self, node: str, specs: Mapping[str, NodeSpec]) -> str | None:
        target = self.targets[node]
        if target is None:
            return None
        return f"https://{specs[target].zerotier_ip}:{SUPERVISOR_PORT}"

    def runner(self, node: str) -> str:
        """The server that will drain and delete ``node`` when it leaves in a later update:
        the anchor, or for the anchor itself the recorded ``anchor_runner`` (itself only
        when it is alone).

        A leaving node's drain runs on the runner stored by the update *before* it
        (pulumi-command's Delete reads only the old state), and one update changes at
        most one server, alone (``plan_join``), so that runner stays through the update
        that drains. The runner is a server that was in the cluster before this update and
        stays through it, kept until it leaves: never one that may fail to join, and the
        same in the quiet update after a server change."""
        if node != self.anchor:
            return self.anchor
        return self.record.anchor_runner or self.anchor

    @property
    def initializing(self) -> list[str]:
        return [name for name, target in self.targets.items() if target is None]


def _by_address(specs: Sequence[NodeSpec]) -> list[NodeSpec]:
    return sorted(specs, key=lambda s: ipaddress.IPv4Address(s.zerotier_ip))


def check_not_rke(previous_nodes: Any, previous: ClusterRecord | None) -> None:
    """Refuse to turn a stack deployed with the rke engine into an rke2 one in place.

    ``previous_nodes`` is the stack's previous ``nodes`` output (every deployed stack has
    one); without an ``rke2`` record beside it, that stack's cluster is RKE's.
    """
    if previous is None and previous_nodes:
        raise JoinError(
            "multicloud:engine: this stack's cluster was installed by rke (its outputs have no "
            "rke2 record); RKE2 cannot take over an RKE cluster in place. Build a new stack "
            "beside it (docs/rke2.md, 'Moving an RKE stack to RKE2') or set engine back to rke"
        )


def plan_join(
    nodes: Sequence[NodeSpec],
    *,
    rebuild: Sequence[str],
    previous: ClusterRecord | None,
    kubernetes_version: str,
    previous_nodes: Sequence[str] = (),
) -> JoinPlan:
    """Decide every node's join target.

    ``nodes`` are this update's nodes (servers are those with the ``etcd`` role),
    ``previous`` the record of the last successful update, ``previous_nodes`` the names in
    its ``nodes`` output. Raises ``JoinError`` when the change would start a second
    cluster, change more than one etcd member at once, remove or rebuild a server while
    another node leaves or is rebuilt, leave no server to join, or downgrade Kubernetes.
    """
    servers = _by_address([n for n in nodes if "etcd" in n.roles])
    if not servers:
        raise JoinError("no server (master) in the stack: RKE2 needs at least one")
    names = [s.name for s in servers]
    rebuilding = set(rebuild)

    if previous is None:
        rebuilt_servers = sorted(rebuilding & set(names))
        if rebuilt_servers:
            raise JoinError(
                f"multicloud:rebuild: {', '.join(rebuilt_servers)} is a server, but this stack "
                "has no record of an existing RKE2 cluster (stack output 'rke2'); without it a "
                "rebuilt server could start a second cluster. Run `pulumi up` without rebuild "
                "first, or see docs/rke2.md (restoring a lost record)."
            )
        init = servers[0].name
        targets: dict[str, str | None] = {n.name: init for n in nodes}
        targets[init] = None
        runner = next((n for n in names if n != init), None)
        record = ClusterRecord(init, tuple(names), kubernetes_version, runner)
        return JoinPlan(targets, init, record)

    if version_key(kubernetes_version) < version_key(previous.kubernetes_version):
        raise JoinError(
            f"multicloud:kubernetesVersion: {kubernetes_version} is older than "
            f"{previous.kubernetes_version}, which this cluster was last set to; RKE2 does not "
            "support downgrades (restore an etcd snapshot into a new stack instead)"
        )
    before = set(previous.servers)
    added = [n for n in names if n not in before]
    removed = sorted(before - set(names))
    rebuilt = [n for n in names if n in before and n in rebuilding]
    changes = added + removed + rebuilt
    if len(changes) > 1:
        raise JoinError(
            "multicloud:sites: this update would change "
            f"{len(changes)} etcd members at once (added: {', '.join(added) or '-'}; "
            f"removed: {', '.join(removed) or '-'}; rebuilt: {', '.join(rebuilt) or '-'}); "
            "change one master per `pulumi up` and wait until it is Ready: `make roll` "
            "does that step by step (docs/operations.md)"
        )
    # A server that leaves (removed or rebuilt) does it alone: every other node's drain
    # command runs against a server chosen at the previous update, which could be that one
    # (its delete step uses the connection the previous update stored, pulumi-command
    # Delete reads only the old state), and drains and the etcd removal stay one at a time.
    leaving_servers = removed + rebuilt
    current = {n.name for n in nodes}
    others = sorted(
        {n for n in previous_nodes if n not in current and n not in before}
        | {n for n in rebuilding if n in current and n not in names}
    )
    if leaving_servers and others:
        raise JoinError(
            f"multicloud:rebuild: server {leaving_servers[0]} leaves the cluster (removed or "
            f"rebuilt) while other nodes are removed or rebuilt too ({', '.join(others)}); "
            "change a server in a `pulumi up` of its own, then the other nodes"
        )
    # Servers that are in the cluster now and stay in it through this update.
    staying = [n for n in names if n in before and n not in rebuilding]
    if not staying:
        raise JoinError(
            "multicloud:sites: no server of the existing cluster stays through this update "
            f"(it had {', '.join(previous.servers)}), so a new server would have nothing to "
            "join; keep one, or restore from an etcd snapshot (docs/rke2.md)"
        )
    anchor = previous.init_server if previous.init_server in staying else staying[0]
    fallback = next((n for n in staying if n != anchor), None)
    targets = {n.name: anchor for n in nodes}
    # The anchor's own user-data names another staying server: it is used only if the
    # anchor is rebuilt later, and then it must join, never initialize.
    # With a single server that is None: rebuilding it is refused above (nothing stays).
    targets[anchor] = fallback
    # The anchor and its runner are recorded: after the init server's (or the runner's)
    # rebuild the next update keeps the server that took over, rather than moving every
    # drain and the cluster-ready command back one update late.
    runner = previous.anchor_runner
    if runner not in staying or runner == anchor:  # with no other server staying: any other
        runner = fallback or next((n for n in names if n != anchor), None)
    record = ClusterRecord(anchor, tuple(names), kubernetes_version, runner)
    return JoinPlan(targets, anchor, record)


_JOIN_TARGET = re.compile(rf"(server: https://)[0-9.]+(:{SUPERVISOR_PORT})")


def without_join_target(user_data: str) -> str:
    """``user_data`` with the server its config.yaml joins set aside: which server a later
    VM of a node joins is chosen per update from the servers there are, not a boot input
    that puts the node behind its code (``components/boot_record.py``)."""
    return _JOIN_TARGET.sub(r"\1(a server)\2", user_data)


def steady_plan(nodes: Sequence[NodeSpec], plan: JoinPlan) -> JoinPlan:
    """The plan a quiet update after ``plan``'s makes (no server added, removed or rebuilt):
    each node's join target as a VM created by a later update gets it. It differs from
    ``plan`` on a first deployment for the server that initializes (a later VM of it joins
    another server) and, during a server change, for the anchor. The boot record digests
    the user-data rendered with it (``components/boot_record.py``), so that a target only
    this update uses never counts as a node behind its code."""
    return plan_join(
        nodes,
        rebuild=(),
        previous=plan.record,
        kubernetes_version=plan.record.kubernetes_version,
        previous_nodes=[n.name for n in nodes],
    )

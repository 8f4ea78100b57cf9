"""The seam between sites and everything downstream (RKE, readiness, entrypoint).

A site produces ``ClusterNode``s; ``rke/`` and the entrypoint consume them without
asking which cloud a node came from (hobby-kube's uniform provider outputs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import pulumi

from components.nodes import NodeSpec


@dataclass(frozen=True)
class ClusterNode:
    spec: NodeSpec
    ssh_address: pulumi.Output[str]  # what RKE and readiness checks connect to
    public_address: pulumi.Output[str] | None  # None behind NAT without port forwarding
    vm: pulumi.Resource  # the VM; readiness depends on it
    member: pulumi.Resource | None = None  # the node's ZeroTier member, once the overlay exists
    # The node's SSH host public key ("ssh-ed25519 AAAA..."), which SSH clients pin.
    host_key: pulumi.Output[str] | None = None
    # What the VM is created from, read only at boot (components/boot_record.py): the
    # image its site gives it and its user-data (a secret); its size is ``spec.size``.
    image: str = ""
    user_data: pulumi.Output[str] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def site(self) -> str:
        return self.spec.site

    @property
    def roles(self) -> tuple[str, ...]:
        return self.spec.roles

    @property
    def zerotier_ip(self) -> str:
        return self.spec.zerotier_ip

    @property
    def labels(self) -> Mapping[str, str]:
        return self.spec.labels

    def joined(self, member: pulumi.Resource) -> ClusterNode:
        """The same node, with the ZeroTier member that authorizes it on the overlay."""
        return replace(self, member=member)

    def with_host_key(self, public_openssh: pulumi.Output[str]) -> ClusterNode:
        """The same node, with the SSH host public key its cloud-init installed."""
        return replace(self, host_key=public_openssh)


def node_row(spec: NodeSpec, ssh_address: str, host_key: str | None) -> dict[str, object]:
    row: dict[str, object] = {
        "name": spec.name,
        "site": spec.site,
        "roles": list(spec.roles),
        "size": spec.size,
        "overlayIp": spec.zerotier_ip,
        "sshAddress": ssh_address,
        "ingress": spec.ingress,
    }
    if host_key:  # what an SSH client pins for the node ("ssh-ed25519 AAAA...")
        row["hostKey"] = host_key.strip()
    return row


def node_table(nodes: Sequence[ClusterNode]) -> pulumi.Output[list[dict[str, object]]]:
    """The stack's node table: what an operator (and ``make roll``) looks up first."""
    addresses = [node.ssh_address for node in nodes]
    keys = [node.host_key if node.host_key is not None else "" for node in nodes]
    return pulumi.Output.all(*addresses, *keys).apply(
        lambda resolved: [
            node_row(n.spec, address, key)
            for n, address, key in zip(
                nodes, resolved[: len(nodes)], resolved[len(nodes) :], strict=True
            )
        ]
    )

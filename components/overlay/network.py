"""Overlay: the ZeroTier network, one identity and one pre-authorized member per node."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_tls as tls

from components.boot.document import EnginePart, render_user_data
from components.boot.host_key import HostKey
from components.boot.overlay import OverlayFiles
from components.nodes import NodeSpec
from components.overlay.zerotier.naming import interface_name
from components.overlay.zerotier.resources import ZeroTierIdentity, ZeroTierMember, ZeroTierNetwork
from components.overlay.zerotier.rules import flow_rules


class Overlay(pulumi.ComponentResource):
    """Every node boots already joined: identity and membership exist before the VM."""

    network_id: pulumi.Output[str]
    interface: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        cluster_name: str,
        nodes: Sequence[NodeSpec],
        overlay_cidr: str,
        token: pulumi.Output[str],
        network_id: str | None,
        central_url: str,
        mtu: int | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("multicloud:overlay:Overlay", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.network = ZeroTierNetwork(
            f"{name}-network",
            token=token,
            network_id=network_id,
            network_name=cluster_name,
            description=f"multicloud cluster {cluster_name}",
            cidr=overlay_cidr,
            mtu=mtu,
            rules_source=flow_rules(overlay_cidr),
            base_url=central_url,
            opts=child,
        )
        # Members and nodes follow the network's resource id (NetworkProvider returns the
        # network id as the id), not its network_id output. In a preview the engine keeps a
        # resource's id through an in-place update (pulumi pkg/resource/deploy/step.go
        # UpdateStep.Apply) but hands back only the new inputs as its outputs, as dynamic
        # providers do not support preview (sdk/go/common/resource/plugin/provider_plugin.go
        # Update), so network_id would read unknown and every member preview as replaced
        # after any change of the network's settings. The id is unknown only when the network
        # is replaced: exactly when the members must be replaced too.
        self.network_id = self.network.id
        # Known at preview when the network is adopted; computed once created otherwise.
        self.interface = (
            pulumi.Output.from_input(interface_name(network_id))
            if network_id
            else self.network_id.apply(interface_name)
        )
        self.identities: dict[str, ZeroTierIdentity] = {}
        self.members: dict[str, ZeroTierMember] = {}
        for node in nodes:
            identity = ZeroTierIdentity(f"{node.name}-zt-identity", opts=child)
            self.identities[node.name] = identity
            self.members[node.name] = ZeroTierMember(
                f"{node.name}-zt-member",
                token=token,
                network_id=self.network_id,
                node_id=identity.address,
                ip=node.zerotier_ip,
                member_name=node.name,
                description=f"{node.site} {'/'.join(node.roles)}",
                base_url=central_url,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.network]),
            )
        self.register_outputs({"network_id": self.network_id, "interface": self.interface})

    def user_data(
        self,
        node: NodeSpec,
        *,
        ssh_user: str,
        ssh_public_key: str,
        host_key: tls.PrivateKey,
        engine: EnginePart,
    ) -> pulumi.Output[str]:
        """The node's cloud-init, carrying its own identity and SSH host key, with the
        engine's part: a Pulumi secret."""
        identity = self.identities[node.name]
        rendered = pulumi.Output.all(
            self.network_id,
            identity.secret,
            identity.public,
            host_key.private_key_openssh,
            host_key.public_key_openssh,
        ).apply(
            lambda args: render_user_data(
                node,
                ssh_user=ssh_user,
                ssh_public_key=ssh_public_key,
                engine=engine,
                overlay=OverlayFiles(
                    network_id=args[0], identity_secret=args[1], identity_public=args[2]
                ),
                host_key=HostKey(private_openssh=args[3], public_openssh=args[4]),
            )
        )
        return pulumi.Output.secret(rendered)

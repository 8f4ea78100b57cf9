"""RKE v1 behind the engine seam (``components/engine.py``): Docker at boot, then one
readiness gate per node and the command that runs ``rke up`` once every gate passed."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi

from components.boot_record import package_versions
from components.cluster_node import ClusterNode
from components.config import ClusterSettings
from components.engine import Engine, StackParts
from components.nodes import NodeSpec
from components.overlay.zerotier.resources import DEFAULT_MTU
from rke import config_rules
from rke.boot import docker_part
from rke.cluster_yml import ClusterYmlSettings
from rke.component import RkeCluster
from rke.readiness import node_readiness


def cluster_settings(settings: ClusterSettings) -> ClusterYmlSettings:
    """What cluster.yml needs from the stack config. The flannel interface is the
    overlay's, which RkeCluster takes as an Output (known once the network exists)."""
    return ClusterYmlSettings(
        cluster_name=settings.cluster_name,
        ssh_user=settings.ssh_user,
        kubernetes_version=settings.kubernetes_version,
        flannel_iface="",
        overlay_cidr=settings.overlay_cidr,
        rke=settings.rke,
        # a created network without overlayMtu gets ZeroTier's default; an adopted one keeps
        # its own, which the program does not know
        overlay_mtu=settings.overlay_mtu
        or (DEFAULT_MTU if settings.zerotier_network_id is None else None),
    )


class RkeInstall:
    """RKE's ``Install``: nothing is registered before the sites."""

    def __init__(self, parts: StackParts) -> None:
        self._parts = parts

    def user_data(
        self, node: NodeSpec, public_address: pulumi.Input[str] | None = None
    ) -> pulumi.Output[str]:
        """ZeroTier, then Docker for ``rke up`` to use, and the node's SSH host key."""
        del public_address  # RKE sets no node address of its own; cluster.yml has them
        settings = self._parts.config.settings
        return self._parts.overlay.user_data(
            node,
            ssh_user=settings.ssh_user,
            ssh_public_key=settings.ssh_public_key,
            host_key=self._parts.host_keys[node.name],
            engine=docker_part(settings.ssh_user),
        )

    def boot_digest(self, node: str) -> None:
        """The boot record digests RKE's exact user-data."""
        del node

    def cluster(self, nodes: Sequence[ClusterNode]) -> RkeCluster:
        """A readiness gate per node, then ``rke up`` once every gate passed."""
        config, secrets, overlay = self._parts.config, self._parts.secrets, self._parts.overlay
        settings = config.settings
        gates = [
            node_readiness(node, settings.ssh_user, secrets.ssh_private_key, overlay.interface)
            for node in nodes
        ]
        return RkeCluster(
            "cluster",
            nodes=nodes,
            settings=cluster_settings(settings),
            flannel_iface=overlay.interface,
            ready=gates,
            ssh_private_key=secrets.ssh_private_key,
            s3_access_key=secrets.etcd_s3_access_key,
            s3_secret_key=secrets.etcd_s3_secret_key,
        )


def boot_versions(settings: ClusterSettings) -> dict[str, str]:
    """The packages RKE's boot part pins: Docker and containerd (``rke.boot``)."""
    return package_versions(docker_part(settings.ssh_user).packages)


ENGINE = Engine(
    name="rke", rules=config_rules.RULES, install=RkeInstall, boot_versions=boot_versions
)

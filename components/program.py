"""Small pieces of composition that keep ``__main__.py`` one screen long."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_tls as tls

from components.config import ClusterConfig, ClusterSettings, DigitalOceanSiteConfig, Secrets
from components.nodes import NodeSpec
from components.overlay.network import Overlay
from components.overlay.zerotier.resources import DEFAULT_MTU
from components.sites.base import CloudSite, SiteArgs, UserData
from components.sites.digitalocean import DigitalOceanSite
from components.sites.firewall import SitePolicy
from components.sites.openstack import OpenStackSite
from rke.boot import docker_part
from rke.cluster_yml import ClusterSettings as RkeClusterSettings


def ssh_host_keys(nodes: Sequence[NodeSpec]) -> dict[str, tls.PrivateKey]:
    """One generated ED25519 SSH host key per node, by node name.

    ``pulumi_tls.PrivateKey`` keeps ``private_key_openssh`` as a secret output (the SDK's
    ``additional_secret_outputs``); cloud-init installs it (components/boot/host_key.py) and every
    SSH client the program runs pins ``public_key_openssh``. A key lives as long as its
    resource: a rebuilt VM boots with the same key, so its pin holds.
    """
    return {
        node.name: tls.PrivateKey(f"{node.name}-ssh-host-key", algorithm="ED25519")
        for node in nodes
    }


def rke_user_data(
    config: ClusterConfig, overlay: Overlay, host_keys: Mapping[str, tls.PrivateKey]
) -> UserData:
    """RKE's node user-data: ZeroTier, then Docker for ``rke up`` to use, and the node's
    SSH host key."""
    settings = config.settings

    def user_data(
        node: NodeSpec, public_address: pulumi.Input[str] | None = None
    ) -> pulumi.Output[str]:
        del public_address  # RKE sets no node address of its own; cluster.yml has them
        return overlay.user_data(
            node,
            ssh_user=settings.ssh_user,
            ssh_public_key=settings.ssh_public_key,
            host_key=host_keys[node.name],
            engine=docker_part(settings.ssh_user),
        )

    return user_data


def build_site(
    name: str, config: ClusterConfig, secrets: Secrets, user_data: UserData, policy: SitePolicy
) -> CloudSite:
    """The site component for ``sites.<name>``, whichever cloud it is on; ``user_data`` is
    the engine's cloud-init per node (``rke_user_data`` or ``Rke2Bootstrap.user_data``),
    ``policy`` the site's firewall the preflight checked (``NetworkPlan.firewall``)."""
    settings = config.settings
    site = settings.sites[name]
    specs = config.site_nodes(name)
    args = SiteArgs(
        cluster_name=settings.cluster_name,
        specs=specs,
        ssh_public_key=settings.ssh_public_key,
        policy=policy,
        user_data=user_data,
        rebuild=settings.rebuild,
    )
    if isinstance(site, DigitalOceanSiteConfig):
        assert secrets.digitalocean_token is not None  # read_secrets requires it
        return DigitalOceanSite(name, args, site, token=secrets.digitalocean_token)
    return OpenStackSite(name, args, site, auth_secret=(secrets.openstack or {}).get(name))


def node_row(spec: NodeSpec, ssh_address: str) -> dict[str, object]:
    return {
        "name": spec.name,
        "site": spec.site,
        "roles": list(spec.roles),
        "size": spec.size,
        "overlayIp": spec.zerotier_ip,
        "sshAddress": ssh_address,
        "ingress": spec.ingress,
    }


def node_table(
    specs: Sequence[NodeSpec], ssh: Mapping[str, pulumi.Output[str]]
) -> pulumi.Output[list[dict[str, object]]]:
    """The stack's node table: what an operator looks up first."""
    addresses = [ssh[spec.name] for spec in specs]
    return pulumi.Output.all(*addresses).apply(
        lambda resolved: [node_row(s, a) for s, a in zip(specs, resolved, strict=True)]
    )


def cluster_settings(settings: ClusterSettings) -> RkeClusterSettings:
    """What cluster.yml needs from the stack config. The flannel interface is the
    overlay's, which RkeCluster takes as an Output (known once the network exists)."""
    return RkeClusterSettings(
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

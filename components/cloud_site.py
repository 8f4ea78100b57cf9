"""CloudSite: what every site is and exposes, whichever cloud it runs on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi

from components.cluster_node import ClusterNode
from components.config import SiteBase
from components.nodes import NodeSpec

# Properties a VM only reads at boot. Changing them would replace every VM at once
# (and every etcd member with it), so existing VMs keep what they booted with; a
# node listed in `rebuild` takes the current values, which replaces just that node.
BOOT_ONLY = {
    "openstack": ["userData", "imageName", "keyPair", "blockDevices"],
    "digitalocean": ["userData", "image", "sshKeys"],
}


class CloudSite(pulumi.ComponentResource):
    """A site's VMs, firewall and SSH key. Subclasses fill ``self.nodes``."""

    nodes: list[ClusterNode]

    def __init__(
        self,
        type_name: str,
        name: str,
        site: SiteBase,
        specs: Sequence[NodeSpec],
        opts: pulumi.ResourceOptions | None,
    ) -> None:
        super().__init__(type_name, name, None, opts)
        self.site_name = name
        self.site = site
        self.specs = tuple(specs)
        self.nodes = []

    def vm_options(
        self, kind: str, spec: NodeSpec, rebuild: Sequence[str], **extra: object
    ) -> pulumi.ResourceOptions:
        ignore = [] if spec.name in rebuild else BOOT_ONLY[kind]
        return pulumi.ResourceOptions(parent=self, ignore_changes=ignore, **extra)  # type: ignore[arg-type]

    def ssh_address(
        self,
        spec: NodeSpec,
        public: pulumi.Output[str] | None,
        private: pulumi.Output[str],
    ) -> pulumi.Output[str]:
        if self.site.ssh_via == "public":
            assert public is not None  # config validation guarantees a public address
            return public
        if self.site.ssh_via == "private":
            return private
        return pulumi.Output.from_input(spec.zerotier_ip)

    def finish(self) -> None:
        self.register_outputs(
            {
                "nodes": {node.name: node.ssh_address for node in self.nodes},
            }
        )


def user_data_for(
    user_data: Mapping[str, pulumi.Output[str]], spec: NodeSpec
) -> pulumi.Output[str]:
    return pulumi.Output.secret(user_data[spec.name])

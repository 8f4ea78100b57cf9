"""CloudSite: what every site is and exposes, whichever cloud it runs on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import pulumi

from components.cluster_node import ClusterNode
from components.config import SiteBase
from components.nodes import NodeSpec
from components.sites.firewall import SitePolicy

# Properties a VM only reads at boot. Changing them would replace every VM at once
# (and every etcd member with it), so existing VMs keep what they booted with; a
# node listed in `rebuild` takes the current values, which replaces just that node.
BOOT_ONLY = {
    "openstack": ["userData", "imageName", "keyPair", "blockDevices", "flavorName"],
    "digitalocean": ["userData", "image", "sshKeys", "size"],
}
# The providers resize a VM in place (terraform-provider-digitalocean droplet/
# resource_droplet.go `resourceDigitalOceanDropletUpdate` powers the droplet off for it;
# terraform-provider-openstack resource_openstack_compute_instance_v2.go
# `resourceComputeInstanceV2Update` resizes and reboots the server, and rebuilds it in place
# from a new `image_name`, which is not ForceNew there). A node is replaced instead, never
# patched: the size is boot-only too, and a node in `rebuild` that takes a new size or
# image is replaced as for any other boot input.
REPLACE_ON = {"openstack": ["flavorName", "imageName"], "digitalocean": ["size"]}

# A node's old and new VM must never run side by side, so a VM (and an SSH key whose name
# the cloud keeps unique) is replaced delete-first. Pulumi replaces create-first unless
# `delete_before_replace` is set (pulumi sdk/python resource.py, ResourceOptions;
# pkg/resource/deploy/step_generator.go, continueStepsFromDiff). Create-first would boot
# the new OpenStack server on the node's pre-created port while the old one holds it:
# Nova refuses (nova/network/neutron.py `_ports_needed_per_instance` raises PortInUse for
# a port with a device_id, which servers.py `ServersController.create` answers with 409),
# and on DigitalOcean two droplets would run the same ZeroTier identity and overlay
# address until the update ends. Delete-first also deletes, before the VM, every
# dependent that the replacement would replace (`calculateDependentReplacements`: a
# dependent whose input comes from the VM and whose provider diff then says replace),
# in reverse dependency order: that is how a node's leave command (drain, etcd member
# removal; triggered by the VM's id) runs before its VM goes.
REPLACE_DELETE_FIRST = True


class UserData(Protocol):
    """The engine's cloud-init for one node (``components.engine.Install.user_data``).
    ``public_address`` is the address a site allocated for the node before its VM (an
    OpenStack floating IP), for an engine that writes it into the node's config (RKE2's
    ``node-external-ip``)."""

    def __call__(
        self, node: NodeSpec, public_address: pulumi.Input[str] | None = None
    ) -> pulumi.Output[str]: ...


@dataclass(frozen=True)
class SiteArgs:
    """What every site needs, whichever cloud it is on."""

    cluster_name: str
    specs: Sequence[NodeSpec]
    ssh_public_key: str
    policy: SitePolicy  # the site's firewall, rendered by the config (ClusterConfig.network)
    user_data: UserData  # the engine's cloud-init per node (made a secret by the site)
    rebuild: Sequence[str] = ()


class CloudSite(pulumi.ComponentResource):
    """A site's VMs, firewall and SSH key. Subclasses fill ``self.nodes``."""

    nodes: list[ClusterNode]

    def __init__(
        self,
        type_name: str,
        name: str,
        site: SiteBase,
        args: SiteArgs,
        opts: pulumi.ResourceOptions | None,
    ) -> None:
        super().__init__(type_name, name, None, opts)
        self.site = site
        self.args = args
        self.prefix = f"{args.cluster_name}-{name}"
        self.nodes = []

    def user_data(
        self, spec: NodeSpec, public_address: pulumi.Input[str] | None = None
    ) -> pulumi.Output[str]:
        return pulumi.Output.secret(self.args.user_data(spec, public_address))

    def vm_options(
        self, kind: str, spec: NodeSpec, provider: pulumi.ProviderResource
    ) -> pulumi.ResourceOptions:
        """A VM is replaced delete-first (``REPLACE_DELETE_FIRST``)."""
        ignore = [] if spec.name in self.args.rebuild else BOOT_ONLY[kind]
        return pulumi.ResourceOptions(
            parent=self,
            provider=provider,
            ignore_changes=ignore,
            replace_on_changes=REPLACE_ON[kind],
            delete_before_replace=REPLACE_DELETE_FIRST,
        )

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

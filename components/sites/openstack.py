"""OpenStackSite: Ramnode, the home lab, any OpenStack with a clouds.yaml entry."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_openstack as openstack

from components.cluster_node import ClusterNode
from components.config import OpenStackSiteConfig
from components.sites.base import CloudSite, SiteArgs
from components.sites.firewall import address_groups_of, openstack_rules


class OpenStackSite(CloudSite):
    def __init__(
        self,
        name: str,
        args: SiteArgs,
        site: OpenStackSiteConfig,
        auth_secret: pulumi.Output[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("multicloud:site:OpenStackSite", name, site, args, opts)
        prefix = self.prefix
        child = pulumi.ResourceOptions(parent=self)

        # Its own provider: two OpenStack clouds never share credentials or a region.
        self.provider = openstack.Provider(
            f"{name}-openstack", **_auth(site, auth_secret), opts=child
        )
        on_cloud = pulumi.ResourceOptions(parent=self, provider=self.provider)
        invoke = pulumi.InvokeOptions(provider=self.provider, parent=self)

        # Nova keeps key pair names unique (nova/api/openstack/compute/keypairs.py, create:
        # KeyPairExists -> 409), so a new key (sshPublicKey changed) replaces it delete-first.
        # The VMs ignore `keyPair` after boot (BOOT_ONLY): no running VM is replaced with it.
        keypair = openstack.compute.Keypair(
            f"{name}-ssh",
            name=prefix,
            public_key=args.ssh_public_key,
            opts=pulumi.ResourceOptions.merge(
                on_cloud, pulumi.ResourceOptions(delete_before_replace=True)
            ),
        )
        # Neutron address groups (extensions address-group and
        # security-groups-remote-address-group): a rule with remote_address_group_id
        # matches every address of the group, so Cloudflare's ranges take one rule per port
        # instead of one per range and port (sites.<name>.addressGroups).
        address_groups = {
            group: openstack.networking.AddressGroupV2(
                f"{name}-{group}",
                name=f"{prefix}-{group}",
                addresses=list(addresses),
                description=f"multicloud {prefix}: {group} ranges",
                opts=on_cloud,
            )
            for group, addresses in (
                address_groups_of(args.policy).items() if site.address_groups else ()
            )
        }
        groups = {}
        for group, rules in openstack_rules(args.policy, site.address_groups).items():
            sg = openstack.networking.SecGroup(
                f"{name}-{group}",
                name=f"{prefix}-{group}",
                description=f"multicloud {prefix}: {group} traffic",
                opts=on_cloud,
            )
            for rule in rules:
                openstack.networking.SecGroupRule(
                    f"{name}-{group}-{rule.name}",
                    security_group_id=sg.id,
                    direction="ingress",
                    ethertype=rule.ethertype,
                    protocol=rule.protocol,
                    port_range_min=rule.port,
                    port_range_max=rule.port,
                    remote_ip_prefix=rule.remote_ip_prefix,
                    remote_address_group_id=(
                        address_groups[rule.address_group].id if rule.address_group else None
                    ),
                    description=rule.description,
                    opts=pulumi.ResourceOptions(parent=sg, provider=self.provider),
                )
            groups[group] = sg

        network = openstack.networking.get_network_output(name=site.network, opts=invoke)
        image_id = (
            openstack.images.get_image_output(name=site.image, most_recent=True, opts=invoke).id
            if site.boot_volume_gb
            else None
        )

        for spec in args.specs:
            # The port outlives a replaced VM, so a node keeps its LAN address.
            port = openstack.networking.Port(
                f"{spec.name}-port",
                name=spec.name,
                network_id=network.id,
                security_group_ids=[groups[g].id for g in args.policy.groups_for(spec)],
                opts=on_cloud,
            )
            # The floating IP is allocated from the pool and associated with the port,
            # neither of which needs the VM: its address exists before the VM does, so an
            # engine can write it into the node's config (RKE2's node-external-ip) instead
            # of the node asking the metadata service, which its guard closes after
            # cloud-init (components/boot/metadata_guard.py). The VM's user-data is boot-only
            # (BOOT_ONLY): an existing VM keeps what it booted with.
            floating: pulumi.Output[str] | None = None
            if site.floating_ip_pool:
                fip = openstack.networking.FloatingIp(
                    f"{spec.name}-fip", pool=site.floating_ip_pool, opts=on_cloud
                )
                openstack.networking.FloatingIpAssociate(
                    f"{spec.name}-fip", floating_ip=fip.address, port_id=port.id, opts=on_cloud
                )
                floating = fip.address
            user_data = self.user_data(spec, floating)
            vm = openstack.compute.Instance(
                spec.name,
                name=spec.name,
                flavor_name=spec.size,
                image_name=site.image,
                key_pair=keypair.name,
                networks=[openstack.compute.InstanceNetworkArgs(port=port.id)],
                block_devices=(
                    [
                        openstack.compute.InstanceBlockDeviceArgs(
                            source_type="image",
                            uuid=image_id,
                            destination_type="volume",
                            volume_size=site.boot_volume_gb,
                            boot_index=0,
                            delete_on_termination=True,
                        )
                    ]
                    if image_id is not None
                    else None
                ),
                user_data=user_data,
                metadata={
                    "cluster": args.cluster_name,
                    "site": name,
                    "roles": ",".join(spec.roles),
                },
                opts=self.vm_options("openstack", spec, provider=self.provider),
            )
            private = port.all_fixed_ips[0]
            public: pulumi.Output[str] | None = floating
            if floating is None and site.network_is_public:
                public = private
            self.nodes.append(
                ClusterNode(
                    spec=spec,
                    ssh_address=self.ssh_address(spec, public, private),
                    public_address=public,
                    vm=vm,
                    image=site.image,
                    user_data=user_data,
                )
            )
        self.finish()


def _auth(site: OpenStackSiteConfig, secret: pulumi.Output[str] | None) -> dict[str, Any]:
    """Provider arguments: a clouds.yaml entry, or explicit auth with a secret."""
    args: dict[str, Any] = {"region": site.region} if site.region else {}
    if site.cloud:
        return {**args, "cloud": site.cloud}
    auth = site.auth
    assert auth is not None and secret is not None  # guaranteed by config validation
    args |= {"auth_url": auth.auth_url}
    if auth.application_credential_id:
        return {
            **args,
            "application_credential_id": auth.application_credential_id,
            "application_credential_secret": secret,
        }
    return {
        **args,
        "user_name": auth.user_name,
        "password": secret,
        "tenant_name": auth.project_name,
        "user_domain_name": auth.user_domain_name,
        "project_domain_name": auth.project_domain_name,
    }

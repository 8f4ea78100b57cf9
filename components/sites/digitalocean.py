"""DigitalOceanSite: droplets, firewalls selected by tag, an SSH key."""

from __future__ import annotations

import pulumi
import pulumi_digitalocean as digitalocean

from components.cluster_node import ClusterNode
from components.config import DigitalOceanSiteConfig
from components.sites.base import CloudSite, SiteArgs
from components.sites.firewall import ANYWHERE


class DigitalOceanSite(CloudSite):
    def __init__(
        self,
        name: str,
        args: SiteArgs,
        site: DigitalOceanSiteConfig,
        token: pulumi.Output[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("multicloud:site:DigitalOceanSite", name, site, args, opts)
        prefix = self.prefix
        self.provider = digitalocean.Provider(
            f"{name}-digitalocean", token=token, opts=pulumi.ResourceOptions(parent=self)
        )
        on_cloud = pulumi.ResourceOptions(parent=self, provider=self.provider)

        key = digitalocean.SshKey(
            f"{name}-ssh", name=prefix, public_key=args.ssh_public_key, opts=on_cloud
        )
        # Firewalls select droplets by tag, so adding a droplet never rewrites a firewall.
        # A rule lists every source (Cloudflare's 15 ranges when the record is proxied: one
        # rule per port), within DigitalOcean's limits of 50 rules per firewall and 1000
        # sources per rule (docs.digitalocean.com/products/networking/firewalls/details/
        # limits): a group has at most two inbound rules, sources at most the 100 adminCidrs
        # plus the deployer's (config/model.py MAX_SOURCE_CIDRS).
        tags = {}
        for group, rules in args.policy.groups.items():
            tag = digitalocean.Tag(f"{name}-{group}", name=f"{prefix}-{group}", opts=on_cloud)
            inbound = [
                digitalocean.FirewallInboundRuleArgs(
                    protocol=rule.protocol,
                    port_range=str(rule.port),
                    source_addresses=list(rule.sources),
                )
                for rule in rules
            ]
            digitalocean.Firewall(
                f"{name}-{group}",
                name=f"{prefix}-{group}",
                tags=[tag.name],
                inbound_rules=inbound,
                # A droplet firewall without outbound rules blocks all egress.
                outbound_rules=(
                    [
                        digitalocean.FirewallOutboundRuleArgs(
                            protocol=protocol,
                            port_range="1-65535",
                            destination_addresses=list(ANYWHERE),
                        )
                        for protocol in ("tcp", "udp")
                    ]
                    + [
                        digitalocean.FirewallOutboundRuleArgs(
                            protocol="icmp", destination_addresses=list(ANYWHERE)
                        )
                    ]
                    if group == "node"
                    else None
                ),
                opts=on_cloud,
            )
            tags[group] = tag

        for spec in args.specs:
            user_data = self.user_data(spec)
            droplet = digitalocean.Droplet(
                spec.name,
                name=spec.name,
                region=site.region,
                size=spec.size,
                image=site.image,
                ssh_keys=[key.fingerprint],
                tags=[tags[g].name for g in args.policy.groups_for(spec)],
                vpc_uuid=site.vpc_uuid,
                monitoring=True,
                user_data=user_data,
                opts=self.vm_options("digitalocean", spec, provider=self.provider),
            )
            public = droplet.ipv4_address
            self.nodes.append(
                ClusterNode(
                    spec=spec,
                    ssh_address=self.ssh_address(spec, public, droplet.ipv4_address_private),
                    public_address=public,
                    vm=droplet,
                    image=site.image,
                    user_data=user_data,
                )
            )
        self.finish()

"""Cloudflare side of the entrypoint: the A record and the updater's zone-scoped API token.

Pulumi creates the record pointing at the first ingress node and then leaves its content to
the in-cluster updater (``ignore_changes``), so ``pulumi up`` never moves traffic back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import quote

import pulumi
import pulumi_cloudflare as cloudflare

from components.cluster_node import ClusterNode
from components.config.entrypoint import EntrypointSettings

ZONE_SCOPE = "com.cloudflare.api.account.zone"
# favonia/cloudflare-ddns documents "Zone - DNS - Edit" (group "DNS Write") as what it needs;
# "Zone Read" lets it resolve the zone from DOMAINS. Both apply to the configured zone only.
UPDATER_PERMISSION_GROUPS = ("DNS Write", "Zone Read")


def zone_resource(zone_id: str) -> str:
    """The policy resource key for exactly one zone."""
    return f"{ZONE_SCOPE}.{zone_id}"


def entry_node(nodes: Sequence[ClusterNode]) -> ClusterNode:
    """The first public-ingress node with a public address: the record's initial target."""
    for node in nodes:
        if node.spec.public_ingress and node.public_address is not None:
            return node
    raise ValueError(
        "entrypoint: no ingress-capable node with a public address; mark at least one site's "
        "nodes as ingress and give them a public address (nodes behind NAT cannot be the "
        f"entrypoint). Nodes: {', '.join(n.name for n in nodes) or '(none)'}"
    )


def permission_group_id(
    groups: Sequence[cloudflare.outputs.GetApiTokenPermissionGroupsListResultResult], name: str
) -> str:
    """The id of the group named exactly ``name`` (the API's name filter is not exact)."""
    ids = [group.id for group in groups if group.name == name]
    if not ids:
        raise ValueError(f"Cloudflare has no API token permission group named {name!r}")
    return ids[0]


def _lookup_permission_group(
    name: str, provider: cloudflare.Provider, parent: pulumi.Resource
) -> pulumi.Output[str]:
    """Look a zone-scoped permission group up by name (ids are Cloudflare's, not ours)."""
    found = cloudflare.get_api_token_permission_groups_list_output(
        name=quote(name),
        scope=ZONE_SCOPE,
        opts=pulumi.InvokeOutputOptions(provider=provider, parent=parent),
    )
    return found.apply(lambda result: permission_group_id(result.results or [], name))


class Entrypoint(pulumi.ComponentResource):
    """The Cloudflare record and, when the updater is enabled, its scoped token."""

    record_name: str
    record: cloudflare.DnsRecord
    token: cloudflare.ApiToken | None
    updater_token: pulumi.Output[str] | None

    def __init__(
        self,
        name: str,
        settings: EntrypointSettings,
        nodes: Sequence[ClusterNode],
        api_token: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("multicloud:entrypoint:Entrypoint", name, None, opts)
        cf = settings.cloudflare
        if cf is None:
            raise ValueError("Entrypoint needs entrypoint.cloudflare")
        target = entry_node(nodes)
        assert target.public_address is not None  # entry_node guarantees it

        provider = cloudflare.Provider(
            f"{name}-cloudflare",
            api_token=pulumi.Output.secret(api_token),
            opts=pulumi.ResourceOptions(parent=self),
        )
        child = pulumi.ResourceOptions(parent=self, provider=provider)

        self.record_name = cf.record_name
        self.record = cloudflare.DnsRecord(
            f"{name}-record",
            zone_id=cf.zone_id,
            name=cf.record_name,
            type="A",
            content=target.public_address,
            ttl=cf.ttl,
            proxied=cf.proxied,
            comment="multicloud entrypoint; content kept current by the in-cluster DNS updater",
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(ignore_changes=["content"])
            ),
        )

        self.token = None
        self.updater_token = None
        if settings.updater.enabled:
            group_ids = [
                _lookup_permission_group(g, provider, self) for g in UPDATER_PERMISSION_GROUPS
            ]
            self.token = cloudflare.ApiToken(
                f"{name}-updater-token",
                name=f"multicloud-{pulumi.get_stack()}-dns-updater",
                policies=[
                    {
                        "effect": "allow",
                        "permission_groups": [{"id": gid} for gid in group_ids],
                        "resources": json.dumps({zone_resource(cf.zone_id): "*"}),
                    }
                ],
                opts=pulumi.ResourceOptions.merge(
                    child, pulumi.ResourceOptions(additional_secret_outputs=["value"])
                ),
            )
            self.updater_token = pulumi.Output.secret(self.token.value)

        self.register_outputs(
            {
                "recordName": self.record_name,
                "recordId": self.record.id,
                "updaterToken": self.updater_token,
            }
        )

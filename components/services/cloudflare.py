"""Cloudflare side of the entrypoint: the A record and zone-scoped API tokens.

Pulumi creates the record pointing at the first ingress node and then leaves its content to
the in-cluster updater (``ignore_changes``), so ``pulumi up`` never moves traffic back. Every
other input is written in the form the provider stores, so a second ``pulumi preview`` shows no
change (tests/components/services/test_entrypoint.py checks it against a model of the provider's
normalization).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pulumi
import pulumi_cloudflare as cloudflare

from components.cluster_node import ClusterNode
from components.config.entrypoint import EntrypointSettings

ZONE_SCOPE = "com.cloudflare.api.account.zone"
# favonia/cloudflare-ddns documents "Zone - DNS - Edit" (group "DNS Write") as what it needs;
# "Zone Read" lets it resolve the zone from DOMAINS. cert-manager's Cloudflare DNS-01 solver
# needs the same two. Both apply to the configured zone only.
ZONE_DNS_PERMISSION_GROUPS = ("DNS Write", "Zone Read")

PermissionGroup = cloudflare.outputs.GetApiTokenPermissionGroupsListResultResult


def zone_resource(zone_id: str) -> str:
    """The policy resource key for exactly one zone."""
    return f"{ZONE_SCOPE}.{zone_id}"


def policy_resources(zone_id: str) -> str:
    """``policies[].resources`` for one zone, as the provider stores it: compact JSON.

    The attribute is a plain string in terraform-provider-cloudflare v5
    (internal/services/api_token/schema.go: ``schema.StringAttribute`` with a JSON-validity
    check, not ``jsontypes.Normalized``), and after create, update and read the provider stores
    the API's raw JSON bytes for it (custom.go ``unmarshalCustomWithSnapshot``: ``resources:
    string(p.Resources)``). The API answers compact JSON, so anything else (``json.dumps``'s
    default ``", "`` and ``": "``) compares unequal on every preview. Keys are sorted as
    Terraform's ``jsonencode`` writes them; with a single key the order cannot differ.
    """
    return json.dumps({zone_resource(zone_id): "*"}, separators=(",", ":"), sort_keys=True)


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


def permission_group_ids(groups: Sequence[PermissionGroup], names: Sequence[str]) -> list[str]:
    """Ids of the zone-scoped groups named exactly ``names``, sorted (the provider's order).

    Raises ``ValueError`` naming a missing or ambiguous group and listing every zone-scoped
    group Cloudflare did return, so a renamed group is found by reading the error.
    """
    zone_groups = [g for g in groups if ZONE_SCOPE in (g.scopes or [])]
    ids = []
    for name in names:
        matches = sorted(g.id for g in zone_groups if g.name == name)
        if len(matches) != 1:
            found = ", ".join(sorted({g.name for g in zone_groups})) or "(none)"
            problem = "no" if not matches else f"{len(matches)} ({', '.join(matches)})"
            raise ValueError(
                f"Cloudflare lists {problem} API token permission groups named {name!r} with "
                f"scope {ZONE_SCOPE}; the {len(zone_groups)} it listed for that scope: {found}"
            )
        ids.append(matches[0])
    return sorted(ids)


def _zone_permission_group_ids(
    provider: cloudflare.Provider, parent: pulumi.Resource
) -> pulumi.Output[list[str]]:
    """Look the zone-scoped permission groups up (their ids are Cloudflare's, not ours).

    One call filtered by scope only; the names are matched here, exactly. No ``name`` filter:
    the provider hands it to cloudflare-go, whose ``TokenPermissionGroupListParams.URLQuery``
    (user/tokenpermissiongroup.go) and ``requestconfig.NewRequestConfig`` percent-encode every
    query value themselves (``url.Values.Encode``), so the documented "must be URL-encoded"
    would be encoded twice (``DNS%20Write`` is sent as ``DNS%2520Write``); the plain name would
    be right. Sending no name leaves nothing to encode but the scope, whose characters are
    all unreserved, and lets a failed match list every group that exists.
    """
    found = cloudflare.get_api_token_permission_groups_list_output(
        scope=ZONE_SCOPE,
        opts=pulumi.InvokeOutputOptions(provider=provider, parent=parent),
    )

    def pick(result: cloudflare.GetApiTokenPermissionGroupsListResult) -> list[str]:
        try:
            return permission_group_ids(result.results or [], ZONE_DNS_PERMISSION_GROUPS)
        except ValueError as err:  # RunError: Pulumi prints it without a stack trace
            raise pulumi.RunError(f"entrypoint.cloudflare: {err}") from None

    return found.apply(pick)


def zone_dns_policy(
    zone_id: str, group_ids: pulumi.Output[list[str]]
) -> cloudflare.ApiTokenPolicyArgsDict:
    """The one policy of a token that may edit DNS records in one zone, in the provider's form."""
    return {
        "effect": "allow",  # the API's spelling; the provider compares it as a string
        "permission_groups": group_ids.apply(lambda ids: [{"id": gid} for gid in ids]),
        "resources": policy_resources(zone_id),
    }


class Entrypoint(pulumi.ComponentResource):
    """The Cloudflare record and the zone-scoped tokens of the updater and, for DNS-01,
    cert-manager."""

    record_name: str
    record: cloudflare.DnsRecord
    token: cloudflare.ApiToken | None
    updater_token: pulumi.Output[str] | None
    cert_manager_token: pulumi.Output[str] | None

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
        self._child = pulumi.ResourceOptions(parent=self, provider=provider)

        self.record_name = cf.record_name
        self.record = cloudflare.DnsRecord(
            f"{name}-record",
            zone_id=cf.zone_id,
            name=cf.record_name,  # an FQDN: what the API returns, so no name drift to suppress
            type="A",
            content=target.public_address,
            ttl=cf.record_ttl,  # 1 when proxied: dns_record's Create refuses anything else
            proxied=cf.proxied,
            comment="multicloud entrypoint; content kept current by the in-cluster DNS updater",
            opts=pulumi.ResourceOptions.merge(
                self._child, pulumi.ResourceOptions(ignore_changes=["content"])
            ),
        )

        self.token = None
        self.updater_token = None
        self.cert_manager_token = None
        dns01 = settings.cert_manager.enabled and settings.cert_manager.solver == "dns01"
        group_ids = None
        if settings.updater.enabled or dns01:
            group_ids = _zone_permission_group_ids(provider, self)
        if settings.updater.enabled:
            assert group_ids is not None
            self.token = self._zone_token(
                f"{name}-updater-token", "dns-updater", cf.zone_id, group_ids
            )
            self.updater_token = pulumi.Output.secret(self.token.value)
        if dns01:
            assert group_ids is not None
            token = self._zone_token(
                f"{name}-cert-manager-token", "cert-manager", cf.zone_id, group_ids
            )
            self.cert_manager_token = pulumi.Output.secret(token.value)

        self.register_outputs(
            {
                "recordName": self.record_name,
                "recordId": self.record.id,
                "updaterToken": self.updater_token,
                "certManagerToken": self.cert_manager_token,
            }
        )

    def _zone_token(
        self, resource_name: str, user: str, zone_id: str, group_ids: pulumi.Output[list[str]]
    ) -> cloudflare.ApiToken:
        """A token that may edit DNS records in one zone, its value a secret."""
        return cloudflare.ApiToken(
            resource_name,
            name=f"multicloud-{pulumi.get_stack()}-{user}",
            policies=[zone_dns_policy(zone_id, group_ids)],
            opts=pulumi.ResourceOptions.merge(
                self._child, pulumi.ResourceOptions(additional_secret_outputs=["value"])
            ),
        )

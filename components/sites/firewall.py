"""The firewall policy of one site, as data both clouds render from.

Only what must be open is open: SSH (22) and the Kubernetes API (6443) from exactly
the ranges the deployer and the admins reach each node from, ZeroTier's UDP port from
anywhere, 80/443 on public-ingress nodes from anywhere (or, when the Cloudflare record is
proxied, from Cloudflare's published ranges only: the proxy is then the one way in) and
from the site's LAN on private-ingress nodes. etcd, kubelet and VXLAN ride the overlay
(inside ZeroTier's UDP) and never appear here. Outbound stays open.

``site_policy`` is a pure function of the site, the deployer and the site's nodes; the
site components register it and the preflight (``components/preflight/``) checks the
same object, so what is checked is what is created.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from components.config.deployer import Deployer
from components.config.sites import SiteBase
from components.nodes import NodeSpec
from components.services.network_policies import CLOUDFLARE_IPS_FILE, cloudflare_ranges

ANYWHERE = ("0.0.0.0/0", "::/0")
ZEROTIER_PORT = 9993
SSH_PORT = 22
API_PORT = 6443
HTTP_PORTS = (80, 443)
CLOUDFLARE_GROUP = "cloudflare"  # the address group of Cloudflare's ranges
# Neutron adds rules of its own, counted against the same project quota: each new group
# gets the templates marked used_in_non_default_sg (egress IPv4 + IPv6), the project's
# `default` group all four (the two egress, two ingress from itself); neutron
# db/migration/alembic_migrations/versions/2023.2/expand/c33da356b165_security_group_
# default_rules.py, applied in db/securitygroups_db.py create_security_group.
NEUTRON_RULES_PER_GROUP = 2
NEUTRON_DEFAULT_GROUP_RULES = 4
# neutron/conf/quota.py DEFAULT_QUOTA_SG_RULE: security-group rules per project (Neutron
# has no per-group limit).
NEUTRON_DEFAULT_RULE_QUOTA = 100


@dataclass(frozen=True)
class Rule:
    """One inbound rule: ``protocol`` ``port`` from each of ``sources`` (CIDRs)."""

    protocol: Literal["tcp", "udp"]
    port: int
    sources: tuple[str, ...]
    description: str
    # a name for ``sources`` as one set: where a cloud has address groups (Neutron's
    # address-group extension), one rule per port refers to the group instead of one rule
    # per source (``openstack_rules``)
    address_group: str | None = None

    def admits(self, protocol: str, port: int, source: str) -> bool:
        """Whether this rule lets ``protocol``/``port`` in from every address of ``source``."""
        return (self.protocol, self.port) == (protocol, port) and _covers(self.sources, source)


@dataclass(frozen=True)
class SitePolicy:
    """The rule groups of one site: group name -> rules, only groups some node is in.

    Every node is in ``node``; control planes also in ``api``; public-ingress nodes in
    ``ingress``; private-ingress nodes in ``lan-ingress``.
    """

    site: str
    groups: Mapping[str, tuple[Rule, ...]]
    # answers of `admits` per (memberships, protocol, port, source): nodes of a site share
    # a handful of membership sets, and the preflight asks for every node
    _answers: dict[tuple[object, ...], bool] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def groups_for(self, node: NodeSpec) -> tuple[str, ...]:
        """The groups (security groups / tagged firewalls) ``node`` belongs to."""
        return tuple(g for g in _memberships(node) if g in self.groups)

    def admits(self, node: NodeSpec, protocol: str, port: int, source: str) -> bool:
        """Whether traffic from ``source`` reaches ``node`` on ``protocol``/``port``."""
        key = (_memberships(node), protocol, port, source)
        answer = self._answers.get(key)
        if answer is None:
            answer = any(
                rule.admits(protocol, port, source)
                for group in self.groups_for(node)
                for rule in self.groups[group]
            )
            self._answers[key] = answer
        return answer


@functools.lru_cache(maxsize=4096)
def _covers(sources: tuple[str, ...], source: str) -> bool:
    """Whether one of ``sources`` contains all of ``source`` (cached: the preflight asks the
    same question for every node of a site, and parsing CIDRs dominates its time)."""
    wanted = ipaddress.ip_network(source)
    return any(
        wanted.version == allowed.version and wanted.subnet_of(allowed)  # type: ignore[arg-type]
        for allowed in map(ipaddress.ip_network, sources)
    )


def _memberships(node: NodeSpec) -> tuple[str, ...]:
    return _groups_of("controlplane" in node.roles, node.ingress)


@functools.lru_cache(maxsize=16)
def _groups_of(controlplane: bool, ingress: str) -> tuple[str, ...]:
    groups = ["node"]
    if controlplane:
        groups.append("api")
    if ingress == "public":
        groups.append("ingress")
    elif ingress == "private":
        groups.append("lan-ingress")
    return tuple(groups)


def management_sources(
    site_name: str, site: SiteBase, deployer: Deployer, admin_cidrs: Sequence[str]
) -> tuple[str, ...]:
    """Where SSH and the API are opened from on ``site``'s nodes.

    Public addresses: ``adminCidrs`` (people) plus the deployer's public sources. The
    site's LAN, when the deployer sits on it and reaches the nodes there
    (``sshVia: private``): it then connects from its LAN address, not a public one.
    A site without public addresses gets no public sources (nothing reaches it from
    the internet, so they would only widen the rule).
    """
    sources: dict[str, None] = {}  # ordered, without duplicates
    if site.has_public_address:
        sources.update(dict.fromkeys((*admin_cidrs, *deployer.sources)))
    if site.ssh_via == "private" and deployer.lan == site_name and site.lan_cidr:
        sources.setdefault(site.lan_cidr)
    return tuple(sources)


@functools.cache
def cloudflare_origin_ranges() -> tuple[str, ...]:
    """Cloudflare's published IPv4 ranges (``reference/cloudflare-ips.json``, key ``ipv4``):
    where a proxied record's edge connects to the origin from. Not the file's trace
    endpoints (resolver addresses, not the proxy). No IPv6 list: the record is an A record
    (components/services/cloudflare.py), so the edge reaches the origin over IPv4 only."""
    published = set(json.loads(CLOUDFLARE_IPS_FILE.read_text())["ipv4"])
    # cloudflare_ranges validates every entry and names the file when one is malformed
    return tuple(cidr for cidr in cloudflare_ranges() if cidr in published)


def site_policy(
    site_name: str,
    site: SiteBase,
    deployer: Deployer,
    admin_cidrs: Sequence[str],
    nodes: Sequence[NodeSpec],
    proxied: bool = False,
) -> SitePolicy:
    """The rule groups ``site``'s nodes need (see ``SitePolicy``); empty groups are left out.

    ``proxied``: the Cloudflare record is proxied, so public ingress (80/443) is opened to
    Cloudflare's ranges only; anyone else would bypass the proxy by the node's address.
    """
    managers = management_sources(site_name, site, deployer, admin_cidrs)
    lan = (site.lan_cidr,) if site.lan_cidr else ()
    # Descriptions stay as they were: every field of an OpenStack SecGroupRule forces its
    # replacement (terraform-provider-openstack, resource_openstack_networking_secgroup_
    # rule_v2.go, has no Update), so new wording would churn every existing rule.
    rules: dict[str, tuple[Rule, ...]] = {
        "node": (
            *_rules("tcp", (SSH_PORT,), managers, "SSH from admins"),
            Rule("udp", ZEROTIER_PORT, ANYWHERE, "ZeroTier peer-to-peer"),
        ),
        "api": _rules("tcp", (API_PORT,), managers, "Kubernetes API from admins"),
        "ingress": (
            tuple(
                replace(rule, address_group=CLOUDFLARE_GROUP)
                for rule in _rules(
                    "tcp",
                    HTTP_PORTS,
                    cloudflare_origin_ranges(),
                    "{} from Cloudflare to the ingress controller",
                )
            )
            if proxied
            else _rules("tcp", HTTP_PORTS, ANYWHERE, "{} to the ingress controller")
        ),
        "lan-ingress": _rules("tcp", HTTP_PORTS, lan, "{} from the site's LAN"),
    }
    used = {group for node in nodes for group in _memberships(node)}
    return SitePolicy(
        site=site_name,
        groups={name: group for name, group in rules.items() if name in used and group},
    )


def _rules(
    protocol: Literal["tcp", "udp"], ports: Sequence[int], sources: tuple[str, ...], text: str
) -> tuple[Rule, ...]:
    """One rule per port (none without sources); ``{}`` in ``text`` becomes HTTP/HTTPS."""
    if not sources:
        return ()
    names = {80: "HTTP", 443: "HTTPS"}
    return tuple(Rule(protocol, port, sources, text.format(names.get(port, ""))) for port in ports)


def ethertype(cidr: str) -> Literal["IPv4", "IPv6"]:
    return "IPv4" if ipaddress.ip_network(cidr).version == 4 else "IPv6"


@dataclass(frozen=True)
class OpenStackRule:
    """One Neutron security-group rule as the OpenStack site registers it: from one CIDR
    (``remote_ip_prefix``) or from an address group (``remote_address_group_id``)."""

    name: str  # the resource name's suffix within its group
    protocol: Literal["tcp", "udp"]
    port: int
    ethertype: Literal["IPv4", "IPv6"]
    description: str
    remote_ip_prefix: str | None = None
    address_group: str | None = None


def openstack_rules(
    policy: SitePolicy, address_groups: bool
) -> dict[str, tuple[OpenStackRule, ...]]:
    """Group -> the Neutron rules rendering it: one per source and port, or, with
    ``address_groups`` (the site's ``addressGroups``), one per port and address family for
    a rule whose sources form an address group (``address_groups_of``)."""
    rendered: dict[str, tuple[OpenStackRule, ...]] = {}
    for group, rules in policy.groups.items():
        out: list[OpenStackRule] = []
        for rule in rules:
            prefix = f"{rule.protocol}{rule.port}"
            if address_groups and rule.address_group:
                families = dict.fromkeys(ethertype(s) for s in rule.sources)
                out += [
                    OpenStackRule(
                        f"{prefix}-{rule.address_group}" + ("" if family == "IPv4" else "-v6"),
                        rule.protocol,
                        rule.port,
                        family,
                        rule.description,
                        address_group=rule.address_group,
                    )
                    for family in families
                ]
                continue
            out += [
                OpenStackRule(
                    f"{prefix}-{_slug(source)}",
                    rule.protocol,
                    rule.port,
                    ethertype(source),
                    rule.description,
                    remote_ip_prefix=source,
                )
                for source in rule.sources
            ]
        rendered[group] = tuple(out)
    return rendered


def address_groups_of(policy: SitePolicy) -> dict[str, tuple[str, ...]]:
    """Address group name -> its addresses, for the rules of ``policy`` that name one."""
    return {
        rule.address_group: rule.sources
        for rules in policy.groups.values()
        for rule in rules
        if rule.address_group
    }


def neutron_rule_count(policy: SitePolicy, address_groups: bool) -> int:
    """Security-group rules the site's project holds once the plan is applied: the rules
    ``openstack_rules`` registers plus those Neutron adds (``NEUTRON_RULES_PER_GROUP`` per
    group, ``NEUTRON_DEFAULT_GROUP_RULES`` in the project's default group)."""
    rendered = openstack_rules(policy, address_groups)
    return (
        sum(len(rules) for rules in rendered.values())
        + NEUTRON_RULES_PER_GROUP * len(rendered)
        + NEUTRON_DEFAULT_GROUP_RULES
    )


def _slug(cidr: str) -> str:
    """A CIDR as a resource-name part (URNs reserve '::')."""
    return cidr.replace(":", "_").replace("/", "_")

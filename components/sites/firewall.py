"""The firewall policy of one site, as data both clouds render from.

Only what must be open is open: SSH (22) and the Kubernetes API (6443) from exactly
the ranges the deployer and the admins reach each node from, ZeroTier's UDP port from
anywhere, 80/443 from anywhere on public-ingress nodes and from the site's LAN on
private-ingress nodes. etcd, kubelet and VXLAN ride the overlay (inside ZeroTier's UDP)
and never appear here. Outbound stays open.

``site_policy`` is a pure function of the site, the deployer and the site's nodes; the
site components register it and the preflight (``components/preflight.py``) checks the
same object, so what is checked is what is created.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from components.nodes import NodeSpec

if TYPE_CHECKING:
    from components.config.deployer import Deployer
    from components.config.stack import SiteBase

ANYWHERE = ("0.0.0.0/0", "::/0")
ZEROTIER_PORT = 9993
SSH_PORT = 22
API_PORT = 6443
HTTP_PORTS = (80, 443)


@dataclass(frozen=True)
class Rule:
    """One inbound rule: ``protocol`` ``port`` from each of ``sources`` (CIDRs)."""

    protocol: Literal["tcp", "udp"]
    port: int
    sources: tuple[str, ...]
    description: str

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


def site_policy(
    site_name: str,
    site: SiteBase,
    deployer: Deployer,
    admin_cidrs: Sequence[str],
    nodes: Sequence[NodeSpec],
) -> SitePolicy:
    """The rule groups ``site``'s nodes need (see ``SitePolicy``); empty groups are left out."""
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
        "ingress": _rules("tcp", HTTP_PORTS, ANYWHERE, "{} to the ingress controller"),
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

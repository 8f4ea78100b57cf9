"""One check for every address range a node, pod or service uses.

Ranges the cluster assigns (the ZeroTier overlay, RKE's pod and service ranges) must
be RFC 1918 private ranges and must not overlap each other nor anything a node
already routes: each site's LAN (for DigitalOcean, its VPC range), Docker's default
bridge, link-local (with the cloud metadata address) and the DNS upstreams CoreDNS
forwards to. A LAN must not overlap the overlay nor the fixed ranges either.

Docker's bridge is checked against rather than moved: user-data is boot-only
(``components/sites/base.py`` ``BOOT_ONLY``), so a ``bip`` written into daemon.json
would reach new nodes only, and every existing node keeps ``docker0`` on
172.17.0.0/16 (Docker's default ``bip``; RKE v1 runs its system containers with host
networking and creates no other Docker network) until it is rebuilt.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from components.boot.metadata_guard import METADATA_ADDRESS
from components.config.model import fail
from components.config.settings import ClusterSettings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DOCKER_BRIDGE = ipaddress.ip_network("172.17.0.0/16")  # Docker's default `bip` (docker0)
LINK_LOCAL = ipaddress.ip_network("169.254.0.0/16")  # RFC 3927; holds METADATA_ADDRESS
ULA = ipaddress.ip_network("fc00::/7")  # RFC 4193 unique local IPv6 addresses
RFC1918 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


@dataclass(frozen=True)
class Range:
    """A range in use: the config ``key`` that sets it (None: fixed) and what it is."""

    key: str | None
    network: Network
    what: str


def fixed_ranges() -> tuple[Range, ...]:
    """Ranges every node uses whatever the config says."""
    assert ipaddress.ip_address(METADATA_ADDRESS) in LINK_LOCAL
    return (
        Range(None, DOCKER_BRIDGE, f"Docker's default bridge docker0 ({DOCKER_BRIDGE})"),
        Range(
            None,
            LINK_LOCAL,
            f"link-local {LINK_LOCAL}, with the cloud metadata service {METADATA_ADDRESS}",
        ),
    )


def _private(network: Network) -> bool:
    return network.version == 4 and any(network.subnet_of(p) for p in RFC1918)  # type: ignore[arg-type]


def check_address_ranges(settings: ClusterSettings) -> None:
    """Refuse a range that is not private or that overlaps another one in use.

    Order of blame: of two overlapping ranges, the one listed later is reported (the
    overlay, then each LAN, then podCidr, then serviceCidr; fixed ranges are never
    blamed). Raises ``ConfigError`` naming the key, both ranges and the fix.
    """
    overlay = Range(
        "overlayCidr",
        ipaddress.ip_network(settings.overlay_cidr),
        f"overlayCidr {settings.overlay_cidr} (the ZeroTier overlay)",
    )
    lans = [
        Range(
            f"sites.{name}.lanCidr",
            ipaddress.ip_network(site.lan_cidr),
            f"the {'VPC' if site.kind == 'digitalocean' else 'LAN'} of site {name!r} "
            f"({site.lan_cidr})",
        )
        for name, site in settings.sites.items()
        if site.lan_cidr
    ]
    rke = settings.rke
    pods = Range("rke.podCidr", ipaddress.ip_network(rke.pod_cidr), f"podCidr {rke.pod_cidr}")
    services = Range(
        "rke.serviceCidr",
        ipaddress.ip_network(rke.service_cidr),
        f"serviceCidr {rke.service_cidr}",
    )
    assigned = (overlay, pods, services)
    for item in assigned:
        if not _private(item.network):
            assert item.key is not None
            raise fail(
                item.key,
                f"{item.network} is not an RFC 1918 private range (10.0.0.0/8, 172.16.0.0/12, "
                "192.168.0.0/16): cluster traffic to it could leave for the internet, or "
                "hide public addresses; pick a private range used nowhere else",
            )
    for lan in lans:
        ula = lan.network.version == 6 and lan.network.subnet_of(ULA)  # type: ignore[arg-type]
        if not _private(lan.network) and not ula:
            assert lan.key is not None
            raise fail(
                lan.key,
                f"{lan.network} is not a private range (RFC 1918 10.0.0.0/8, 172.16.0.0/12, "
                "192.168.0.0/16, or IPv6 unique local fc00::/7): the site's firewall opens "
                "SSH, the Kubernetes API and LAN ingress to every address in lanCidr; set the "
                "LAN's own private range, and reach public addresses with "
                "deployer.sourceCidrs or adminCidrs instead",
            )
    fixed = fixed_ranges()
    ordered: list[Range] = [overlay, *lans, pods, services]
    for i, item in enumerate(ordered):
        for other in (*fixed, *ordered[:i]):
            if other in lans and item in lans:
                continue  # two sites' LANs never meet: nodes reach each other on the overlay
            if item.network.overlaps(other.network):
                assert item.key is not None
                raise fail(
                    item.key,
                    f"{item.network} overlaps {other.what}: a node would route one of them "
                    "into the other; pick a range used nowhere else",
                )
    _check_upstreams(settings.rke.dns_upstreams, [*fixed, overlay, pods, services], lans)


def _unusable_resolver(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why no node can forward DNS queries to ``address``, or None (a public unicast one)."""
    kinds = (
        (address.is_unspecified, "the unspecified address (no host)"),
        (address.is_loopback, "a loopback address (the node itself, inside CoreDNS's pod)"),
        (address.is_link_local, "link-local (only reachable on one network segment)"),
        (address.is_multicast, "a multicast address"),
        (address.is_reserved, "a reserved address (no host has it)"),
        (not address.is_global, "not a public address (only reachable on its own network)"),
    )
    return next((why for unusable, why in kinds if unusable), None)


def _check_upstreams(
    upstreams: Sequence[str], cluster: Sequence[Range], lans: Sequence[Range]
) -> None:
    """CoreDNS (on any node) forwards to every upstream: none may sit in a range that
    routes elsewhere on the node, nor on one site's LAN (the other sites cannot reach it)."""
    for i, text in enumerate(upstreams):
        address = ipaddress.ip_address(text)
        key = f"rke.dnsUpstreams[{i}]"
        for item in cluster:
            if address in item.network:
                raise fail(
                    key,
                    f"{address} lies in {item.what}: queries would never leave the node; "
                    "use a resolver on the internet such as 1.1.1.1",
                )
        for lan in lans:
            if address in lan.network:
                raise fail(
                    key,
                    f"{address} lies in {lan.what}: CoreDNS runs on every site and the "
                    "other sites cannot reach it; use a resolver on the internet such as 1.1.1.1",
                )
        unusable = _unusable_resolver(address)
        if unusable:
            raise fail(
                key,
                f"{address} is {unusable}: CoreDNS on every node forwards to it, so it must "
                "be a resolver every site reaches; use one on the internet such as 1.1.1.1",
            )

"""The public firewall policy, as data both clouds render from.

Only what must be public is public: SSH and the Kubernetes API from the admin
CIDRs, ZeroTier's UDP port from anywhere, 80/443 on ingress nodes. etcd, kubelet
and VXLAN ride the overlay and never appear here. Outbound stays open.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from components.nodes import NodeSpec

ANYWHERE = ("0.0.0.0/0", "::/0")
ZEROTIER_PORT = 9993


@dataclass(frozen=True)
class Rule:
    protocol: Literal["tcp", "udp"]
    port: int
    sources: tuple[str, ...]
    description: str


def policy(admin_cidrs: Sequence[str]) -> dict[str, tuple[Rule, ...]]:
    """Rule groups by name: every node is in ``node``, masters also in ``api``,
    ingress nodes also in ``ingress``."""
    admins = tuple(admin_cidrs)
    return {
        "node": (
            Rule("tcp", 22, admins, "SSH from admins"),
            Rule("udp", ZEROTIER_PORT, ANYWHERE, "ZeroTier peer-to-peer"),
        ),
        "api": (Rule("tcp", 6443, admins, "Kubernetes API from admins"),),
        "ingress": (
            Rule("tcp", 80, ANYWHERE, "HTTP to the ingress controller"),
            Rule("tcp", 443, ANYWHERE, "HTTPS to the ingress controller"),
        ),
    }


def groups_for(node: NodeSpec) -> tuple[str, ...]:
    groups = ["node"]
    if "controlplane" in node.roles:
        groups.append("api")
    if node.ingress:
        groups.append("ingress")
    return tuple(groups)


def ethertype(cidr: str) -> Literal["IPv4", "IPv6"]:
    return "IPv4" if ipaddress.ip_network(cidr).version == 4 else "IPv6"

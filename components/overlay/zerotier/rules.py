"""ZeroTier flow rules for the cluster's network: a pure function of the overlay CIDR.

Nodes (blocks 1..) talk freely; block 0, members added by hand, reaches only SSH (22) and
the Kubernetes API (6443) on nodes; nothing else crosses the overlay. The text is
ZeroTier's rules language (https://docs.zerotier.com/rules/), sent as Central's
``rulesSource``; how the agent evaluates it (ZeroTierOne node/Network.cpp ``_doZtFilter``)
and why pods never appear with their own addresses:
docs/security.md#what-a-zerotier-member-outside-the-cluster-can-reach.
"""

from __future__ import annotations

import ipaddress

from components.overlay.addressing import BLOCK_SIZE

SSH_PORT = 22
KUBE_API_PORT = 6443
ADMIN_PORTS = (SSH_PORT, KUBE_API_PORT)


def admin_block(overlay_cidr: str) -> ipaddress.IPv4Network:
    """Block 0 of the overlay: the addresses for members added by hand."""
    overlay = ipaddress.IPv4Network(overlay_cidr)
    return ipaddress.IPv4Network((int(overlay.network_address), 32 - (BLOCK_SIZE - 1).bit_length()))


def flow_rules(overlay_cidr: str) -> str:
    """The network's ``rulesSource``: ZeroTier rules text for ``overlay_cidr`` (IPv4, /23 or
    larger). Raises ``ValueError`` for a network that has no node blocks."""
    overlay = ipaddress.IPv4Network(overlay_cidr)
    if overlay.num_addresses < 2 * BLOCK_SIZE:
        raise ValueError(f"overlay {overlay} holds no node block beyond block 0")
    admins = admin_block(overlay_cidr)
    is_node_src = f"ipsrc {overlay} and not ipsrc {admins}"
    is_node_dst = f"ipdest {overlay} and not ipdest {admins}"

    def ports(kind: str) -> str:
        return " or ".join(f"{kind} {port}" for port in ADMIN_PORTS)

    return "\n".join(
        [
            "# Managed by the multicloud Pulumi program (components/overlay/zerotier/rules.py);",
            "# edits made in Central are overwritten on the next `pulumi up`.",
            f"# Nodes live in {overlay} outside block 0 ({admins}); block 0 is for members",
            "# added by hand, which reach only SSH and the Kubernetes API on nodes.",
            "",
            "# IPv4 and ARP only, and only from an address Central assigned to the sender.",
            "drop not ethertype ipv4 and not ethertype arp or not chr ipauth;",
            "accept ethertype arp;",
            "",
            "# Nodes talk to each other freely: etcd, kubelet, VXLAN, the API server.",
            f"accept {is_node_src} and {is_node_dst};",
            "",
            "# Block 0 to a node: TCP to SSH or the Kubernetes API only.",
            f"accept {ports('dport')} and ipprotocol tcp and ipsrc {admins} and {is_node_dst};",
            "# ... and the node's replies (never a connection a node opens: those lack ACK).",
            f"accept {ports('sport')} and ipprotocol tcp and chr tcp_ack and {is_node_src}"
            f" and ipdest {admins};",
            "",
            "drop;",
            "",
        ]
    )

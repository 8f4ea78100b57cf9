"""ZeroTier flow rules for the cluster's network: a pure function of the overlay CIDR.

The overlay is cut into /24 blocks (``components/overlay/addressing.py``): block 0 is for
members added by hand (an operator's laptop, a CI runner), blocks 1.. hold the nodes of
one site each. The rules let nodes talk to each other freely and let block 0 reach only
SSH (22) and the Kubernetes API (6443) on nodes; nothing else crosses the overlay.

The text is ZeroTier's rules language (https://docs.zerotier.com/rules/), sent to Central
as the network's ``rulesSource``, which Central compiles (ZeroTier's own Terraform provider
sends only ``RulesSource``: terraform-provider-zerotier pkg/zerotier/ztnetwork.go). How the
agent evaluates the compiled rules is ZeroTierOne node/Network.cpp ``_doZtFilter``:

- rules run top to bottom; each action ends a set of matches (AND by default, ``or`` joins
  left to right); the first action whose set matches decides; no match at the end drops;
- they are evaluated twice, by the sender (outbound) and by the receiver (inbound), so a
  member that skips its own outbound check is still stopped by the node it sends to;
- they are stateless: a reply is a packet of its own and needs its own accept;
- a match that does not apply to the frame (``ipsrc`` on ARP) is false, even negated;
- ``chr ipauth`` is true when the frame's source IPv4 (ARP: sender address) is covered by
  the sender's certificate of ownership, which the controller issues for exactly the
  member's assigned addresses (controller/EmbeddedNetworkController.cpp, "Issue a
  certificate of ownership for all static IPs"); dropping unauthenticated frames stops a
  block-0 member from claiming a node's address.

Pods never appear on the overlay with their own addresses: flannel and canal carry them in
VXLAN between node addresses, and both masquerade pod traffic to non-pod destinations
(RKE's templates in rancher/kontainer-driver-metadata pkg/rke/templates: flannel's
``--ip-masq``, canal's ``FLANNELD_IP_MASQ`` from ``masquerade: "true"``), so every frame's
source is a node address.
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

"""ZeroTier network and node ids, and the Linux interface name a network gets."""

import re

_NETWORK_ID = re.compile(r"[0-9a-f]{16}")
_NODE_ID = re.compile(r"[0-9a-f]{10}")
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


def is_network_id(value: str) -> bool:
    """True for a network id as ZeroTier writes it: 16 lower-case hex digits."""
    return _NETWORK_ID.fullmatch(value) is not None


def is_node_id(value: str) -> bool:
    """True for a node id (an identity's address): 10 lower-case hex digits."""
    return _NODE_ID.fullmatch(value) is not None


def validate_network_id(value: str) -> str:
    """Return ``value`` if it is a network id, else raise ValueError saying what is expected."""
    if not is_network_id(value):
        raise ValueError(f"ZeroTier network id {value!r} is not 16 lower-case hex digits")
    return value


def interface_name(network_id: str) -> str:
    """The Linux interface name zerotier-one gives a network without a devicemap entry.

    ``zt`` and the low 40 bits of ``nwid ^ (nwid >> 24)`` as 8 base32 digits, most
    significant first. It is the same on every member, which is what lets cloud-init and
    flannel name it before the node joins. (zerotier-one picks another name only if this
    one is already taken on the host, which a fresh node's is not.)
    """
    nwid = int(validate_network_id(network_id), 16)
    folded = nwid ^ (nwid >> 24)
    return "zt" + "".join(_BASE32[(folded >> shift) & 0x1F] for shift in range(35, -1, -5))

"""Overlay addresses as a pure function of (site id, kind, index).

The overlay CIDR is cut into blocks of 256 addresses. Block 0 is left for members
added by hand (an operator's laptop, a CI runner); block ``siteId`` belongs to one
site. Inside a block masters take ``.10``-``.49`` and workers ``.50``-``.249``, so
adding a node or a site never moves another node's address.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

BLOCK_SIZE = 256
MASTER_OFFSET, MAX_MASTERS = 10, 40
WORKER_OFFSET, MAX_WORKERS = 50, 200


def site_blocks(overlay: ipaddress.IPv4Network) -> int:
    """How many site blocks the overlay holds (block 0 excluded)."""
    return max(overlay.num_addresses // BLOCK_SIZE - 1, 0)


def overlay_address(
    overlay: ipaddress.IPv4Network,
    site_id: int,
    kind: Literal["master", "worker"],
    index: int,
) -> ipaddress.IPv4Address:
    """The fixed overlay address of node ``index`` of ``kind`` in site ``site_id``."""
    if not 1 <= site_id <= site_blocks(overlay):
        raise ValueError(
            f"siteId {site_id} is outside 1..{site_blocks(overlay)}, the site blocks "
            f"of overlay {overlay}"
        )
    limit, offset = (
        (MAX_MASTERS, MASTER_OFFSET) if kind == "master" else (MAX_WORKERS, WORKER_OFFSET)
    )
    if not 0 <= index < limit:
        raise ValueError(
            f"a site has room for {limit} {kind}s in the overlay; index {index} is not"
        )
    return overlay.network_address + site_id * BLOCK_SIZE + offset + index

"""The metadata guard: closes the cloud metadata service once cloud-init has read it.

User-data holds the node's ZeroTier identity.secret and SSH host private key, and the
metadata service serves it for the VM's whole life. The guard adds a ``prohibit`` policy
routing rule (before any routing table or iptables chain) for the host and every pod; the
unit is Before= the engine's runtime units, which require it. Why blocking after boot is
safe (cloud-init 22.4.2's sources):
docs/security.md#the-metadata-service-blocked-once-cloud-init-has-read-it.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.boot.apt import File
from components.boot.assets import render

METADATA_ADDRESS = "169.254.169.254"
METADATA_ADDRESS_V6 = "fe80::a9fe:a9fe"  # OpenStack's IPv6 metadata address
METADATA_RULE_PRIORITY = 100  # before the main table (32766); 0 is the local table
GUARD = "multicloud-metadata-guard"  # the script in /usr/local/sbin and its unit

METADATA_GUARD_SCRIPT = render(
    "components.boot",
    GUARD,
    METADATA_ADDRESS=METADATA_ADDRESS,
    METADATA_ADDRESS_V6=METADATA_ADDRESS_V6,
    METADATA_RULE_PRIORITY=METADATA_RULE_PRIORITY,
)


@dataclass(frozen=True)
class GuardOrder:
    """The engine's runtime units the guard starts before, and those that require it."""

    before: tuple[str, ...]
    required_by: tuple[str, ...]
    note: str = ""  # comment lines the unit carries above its Before=


def unit(order: GuardOrder) -> str:
    return render(
        "components.boot",
        f"{GUARD}.service",
        ORDERING_NOTE=order.note,
        BEFORE=" ".join(order.before),
        REQUIRED_BY=" ".join(order.required_by),
    )


def files(order: GuardOrder) -> list[File]:
    return [
        {
            "path": f"/usr/local/sbin/{GUARD}",
            "permissions": "0755",
            "content": METADATA_GUARD_SCRIPT,
        },
        {"path": f"/etc/systemd/system/{GUARD}.service", "content": unit(order)},
    ]

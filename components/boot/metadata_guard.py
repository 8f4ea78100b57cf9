"""The metadata guard: closes the cloud metadata service once cloud-init has read it.

User-data holds the node's ZeroTier identity.secret and SSH host private key, and the
metadata service at 169.254.169.254 serves it for the VM's whole life. No process on a
node needs it after cloud-init's first two stages, so the guard blocks it for everything
on the host (root processes, hostNetwork pods) and every pod, with a policy routing rule:
`prohibit` is evaluated before any routing table, for locally generated and for forwarded
packets alike, so no iptables chain order (Docker's DOCKER-USER, Calico's cali-FORWARD,
kube-proxy) can let a packet around it.

Why blocking after boot is safe (cloud-init 22.4.2, Debian 12's version):
- On every boot cloud-init-local.service and cloud-init.service run before sysinit.target
  (systemd/cloud-init*.service.tmpl, "Before=sysinit.target"); the guard has default
  dependencies (after basic.target) and is not persisted (an ip rule is runtime state),
  so whenever cloud-init asks the metadata service it is reachable.
- On a reboot of the same instance cloud-init does not ask it at all: the local stage
  restores the cached datasource "with check" (cloudinit/cmd/main.py main_init,
  existing="check"; stages.py Init._restore_from_checked_cache), and both
  DataSourceOpenStack and DataSourceDigitalOcean implement check_instance_id as a local
  DMI comparison (system-uuid, system-serial-number); the network stage trusts that cache
  (existing="trust"), and metadata is refreshed only on EventType.BOOT_NEW_INSTANCE
  (sources/__init__.py default_update_events). So no reboot sees a new instance, and
  per-instance modules (cc_ssh: host keys; users) never run again.
- The container runtime, and so every container, starts only after the guard: the unit
  is Before= the engine's runtime units, and they require it (RequiredBy=).
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

"""A node's ``#cloud-config`` document (Debian 12, bookworm), put together from its parts.

What a node trusts is pinned in the parts (docs/security.md): the apt signing keys by
fingerprint (the keyring holds that one key and nothing else), the repositories over
https, the exact versions of the engine's packages and of zerotier-one (held), and the SSH
host key the program generated (the image's keys are deleted, no other type is made).
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from components.boot import apt, metadata_guard
from components.boot import host_key as ssh_host_key
from components.boot import overlay as zerotier
from components.boot.apt import File
from components.boot.host_key import HostKey
from components.boot.metadata_guard import GuardOrder
from components.boot.overlay import OverlayFiles
from components.nodes import NodeSpec

BOOTSTRAP = "/usr/local/sbin/multicloud-bootstrap"
KERNEL_FILES: tuple[File, ...] = (
    {"path": "/etc/modules-load.d/kubernetes.conf", "content": "overlay\nbr_netfilter\n"},
    {
        "path": "/etc/sysctl.d/90-kubernetes.conf",
        "content": "net.ipv4.ip_forward = 1\n"
        "net.bridge.bridge-nf-call-iptables = 1\n"
        "net.bridge.bridge-nf-call-ip6tables = 1\n",
    },
)
KERNEL_LINES = (
    "swapoff -a",
    "sed -ri '/\\sswap\\s/s/^/#/' /etc/fstab",
    "modprobe overlay",
    "modprobe br_netfilter",
    "sysctl --system",
)


@dataclass(frozen=True)
class EnginePart:
    """What the Kubernetes engine adds to every node's boot document (``rke/boot.py``,
    ``rke2/boot.py``). Bootstrap lines run in the order of the fields, around the base
    packages and ZeroTier's: ``before_base``, the base packages, ``repositories`` (then
    ZeroTier's), ``packages`` with zerotier-one in one install, ``after_packages``,
    ZeroTier's start, ``start``."""

    installs: str  # the bootstrap's header names it: "Docker (pinned)"
    guard: GuardOrder  # the runtime units the metadata guard comes before
    groups: tuple[str, ...] = ()  # the SSH user's groups besides sudo
    early_files: tuple[File, ...] = ()  # written right after the kernel settings
    files: tuple[File, ...] = ()  # written after the bootstrap
    overlay_files: tuple[File, ...] = ()  # written last, on nodes that join the overlay
    before_base: tuple[str, ...] = ()
    repositories: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    after_packages: tuple[str, ...] = ()
    start: tuple[str, ...] = ()


def bootstrap_script(engine: EnginePart, overlay: OverlayFiles | None) -> str:
    """multicloud-bootstrap: ZeroTier when the node joins an overlay, then the engine."""
    lines = [
        "#!/bin/sh",
        f"# Installs zerotier-one when the node joins an overlay, then {engine.installs}.",
        apt.BOOTSTRAP_PROLOGUE.rstrip("\n"),
        *KERNEL_LINES,
        *engine.before_base,
        *apt.base_install(),
        *engine.repositories,
        *zerotier.repository(overlay),
    ]
    packages = [*engine.packages, *zerotier.packages(overlay)]
    if packages:
        lines += apt.install(packages)
    lines += [*engine.after_packages, *zerotier.start(overlay), *engine.start]
    return "\n".join(lines) + "\n"


def render_user_data(
    node: NodeSpec,
    *,
    ssh_user: str,
    ssh_public_key: str,
    engine: EnginePart,
    overlay: OverlayFiles | None,
    host_key: HostKey | None = None,
) -> str:
    """The node's ``#cloud-config`` document; a secret when ``overlay`` or ``host_key`` is
    set, or when the engine's files hold one (RKE2's token)."""
    files: list[File] = [
        *KERNEL_FILES,
        *engine.early_files,
        apt.apt_key_file(),
        *metadata_guard.files(engine.guard),
        *apt.wrapper_files(),
        {"path": BOOTSTRAP, "permissions": "0755", "content": bootstrap_script(engine, overlay)},
        *engine.files,
        *ssh_host_key.files(host_key),
        *zerotier.files(overlay),
    ]
    if overlay is not None:
        files += engine.overlay_files
    document: dict[str, object] = {
        "hostname": node.name,
        "preserve_hostname": False,
        "manage_etc_hosts": True,
        "disable_root": True,
        "ssh_pwauth": False,
        "groups": list(engine.groups),
        "users": [
            {
                "name": ssh_user,
                "groups": [*engine.groups, "sudo"],
                "shell": "/bin/bash",
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "lock_passwd": True,
                "ssh_authorized_keys": [ssh_public_key],
            }
        ],
        **ssh_host_key.cloud_config(host_key),
        "write_files": files,
        "runcmd": [[BOOTSTRAP]],
    }
    if not engine.groups:
        del document["groups"]
    return "#cloud-config\n" + yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=1000)


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Multi-line strings as literal blocks, so a reviewer reads scripts as scripts.

    libyaml's emitter where PyYAML was built with it (about 10x faster than the pure-Python
    one, the same text for these documents), the pure-Python one otherwise."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)

"""ZeroTier on the node: identity, network and local.conf on disk before the package.

``write_files`` runs before ``runcmd``, so the identity, ``networks.d/<nwid>.conf`` and
``local.conf`` exist before ``zerotier-one`` is installed (its package starts the service
at once and would otherwise mint a fresh identity).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from components.boot import apt
from components.boot.apt import File

ZEROTIER_HOME = "/var/lib/zerotier-one"
ZEROTIER_KEY_URL = "https://download.zerotier.com/contact%40zerotier.com.gpg"
ZEROTIER_KEY_FINGERPRINT = "74A5E9C458E1A431F1DA57A71657198823E52A61"
# The same repository ZeroTier's install script writes as http://, over https.
ZEROTIER_APT = "https://download.zerotier.com/debian/bookworm bookworm main"
# In ZeroTier's bookworm pool (pool/main/z/zerotier-one/zerotier-one_1.16.2_amd64.deb);
# reference/zerotier-install.json says where that was read. Held: an upgrade restarts
# zerotier-one, which drops every node's overlay (etcd, kubelet) at once.
ZEROTIER_VERSION = "1.16.2"
# ZeroTier must never carry its own traffic over interfaces that ride on it.
INTERFACE_BLACKLIST = ("flannel", "cni", "veth", "docker")


@dataclass(frozen=True)
class OverlayFiles:
    """What a node needs to join the ZeroTier network on first boot, already authorized."""

    network_id: str
    identity_secret: str  # a secret: user-data carrying it must be a Pulumi secret
    identity_public: str


def local_conf() -> str:
    return json.dumps(
        {"settings": {"interfacePrefixBlacklist": list(INTERFACE_BLACKLIST)}}, indent=2
    )


def files(overlay: OverlayFiles | None) -> list[File]:
    if overlay is None:
        return []
    return [
        {
            "path": f"{ZEROTIER_HOME}/identity.secret",
            "permissions": "0600",
            "content": overlay.identity_secret + "\n",
        },
        {
            "path": f"{ZEROTIER_HOME}/identity.public",
            "permissions": "0644",
            "content": overlay.identity_public + "\n",
        },
        {"path": f"{ZEROTIER_HOME}/networks.d/{overlay.network_id}.conf", "content": ""},
        {"path": f"{ZEROTIER_HOME}/local.conf", "content": local_conf() + "\n"},
    ]


def repository(overlay: OverlayFiles | None) -> list[str]:
    if overlay is None:
        return []
    return apt.repository("zerotier", ZEROTIER_KEY_URL, ZEROTIER_KEY_FINGERPRINT, ZEROTIER_APT)


def packages(overlay: OverlayFiles | None) -> list[str]:
    return [] if overlay is None else [f"zerotier-one={ZEROTIER_VERSION}"]


def start(overlay: OverlayFiles | None) -> list[str]:
    """Held, like the engine's packages: an unattended upgrade would restart it."""
    if overlay is None:
        return []
    return ["apt-mark hold zerotier-one", "systemctl enable --now zerotier-one"]

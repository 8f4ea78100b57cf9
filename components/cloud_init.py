"""User-data for a node: a pure function of the node and the overlay it joins.

Debian 12 (bookworm). Order matters and is encoded here: ``write_files`` runs
before ``runcmd``, so the ZeroTier identity, ``networks.d/<nwid>.conf`` and
``local.conf`` are on disk before ``zerotier-one`` is installed (its package
starts the service at once and would otherwise mint a fresh identity).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import yaml

from components.nodes import NodeSpec

ZEROTIER_HOME = "/var/lib/zerotier-one"
ZEROTIER_KEY_URL = "https://download.zerotier.com/contact%40zerotier.com.gpg"
ZEROTIER_KEY_FINGERPRINT = "74A5E9C458E1A431F1DA57A71657198823E52A61"
ZEROTIER_APT = "http://download.zerotier.com/debian/bookworm bookworm main"
DOCKER_KEY_URL = "https://download.docker.com/linux/debian/gpg"
DOCKER_KEY_FINGERPRINT = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
DOCKER_APT = "https://download.docker.com/linux/debian bookworm stable"
# RKE v1.8 accepts Docker 26.1 for Kubernetes 1.30; held so unattended upgrades
# cannot move it past what RKE checks.
DOCKER_VERSION = "5:26.1.4-1~debian.12~bookworm"
# ZeroTier must never carry its own traffic over interfaces that ride on it.
INTERFACE_BLACKLIST = ("flannel", "cni", "veth", "docker")
METADATA_ADDRESS = "169.254.169.254"


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


APT_KEY_SCRIPT = """\
#!/bin/sh
# usage: multicloud-apt-key URL FINGERPRINT KEYRING
# Installs a repository signing key only if it is the key we pinned.
set -eu
tmp=$(mktemp)
curl -fsSL --retry 5 "$1" -o "$tmp"
fingerprints=$(gpg --batch --show-keys --with-colons "$tmp" | awk -F: '$1 == "fpr" {print $10}')
echo "$fingerprints" | grep -qx "$2" || {
  echo "multicloud: key at $1 is not $2, refusing it" >&2; exit 1; }
gpg --batch --yes --dearmor -o "$3" < "$tmp" 2>/dev/null || cp "$tmp" "$3"
chmod 0644 "$3"
rm -f "$tmp"
"""

METADATA_GUARD_SCRIPT = f"""\
#!/bin/sh
# Pods must not read user-data (it holds the node's ZeroTier identity) back from
# the metadata service. Forwarded traffic is pod traffic; the host itself keeps access.
set -eu
for chain in DOCKER-USER FORWARD; do
  iptables -n -L "$chain" >/dev/null 2>&1 || continue
  iptables -C "$chain" -d {METADATA_ADDRESS}/32 -j DROP 2>/dev/null ||
    iptables -I "$chain" 1 -d {METADATA_ADDRESS}/32 -j DROP
done
"""

METADATA_GUARD_UNIT = """\
[Unit]
Description=Block pod access to the cloud metadata service
After=docker.service
PartOf=docker.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/multicloud-metadata-guard

[Install]
WantedBy=docker.service multi-user.target
"""


# --- overlay restarts: flannel's VXLAN device rides on the ZeroTier interface ---
# When zerotier-one restarts (a package upgrade, a crash) its tap interface is deleted and
# created again; the kernel deletes flannel.1 and its routes with it, and flannel before
# v0.27.4 does not recreate them (flannel-io/flannel#2247, fixed by #2272): pods on the
# node lose the network until kube-flannel restarts. Which flannel RKE ships for
# v1.30.14-rancher1-1 could not be read here (the newest kontainer-driver-metadata data
# available, dev-v2.10, gives v1.30.x flannel v0.25.1), so udev restarts the node's
# kube-flannel container (its name in RKE's flannel manifests) whenever a zt*
# interface appears and flannel.1 is missing.
FLANNEL_RESTART_SCRIPT = """\
#!/bin/sh
# usage: multicloud-flannel-restart IFACE (started by udev when IFACE appears)
set -u
iface=$1
tries=0
until ip -4 -o addr show dev "$iface" 2>/dev/null | grep -q ' inet '; do
  tries=$((tries + 1))
  [ "$tries" -lt 120 ] || { echo "multicloud: $iface got no IPv4 address" >&2; exit 1; }
  sleep 1
done
ip link show flannel.1 >/dev/null 2>&1 && exit 0
ids=$(docker ps --quiet --filter label=io.kubernetes.container.name=kube-flannel 2>/dev/null)
[ -n "$ids" ] || exit 0
echo "multicloud: $iface came back without flannel.1; restarting kube-flannel" >&2
docker restart $ids
"""

FLANNEL_RESTART_UNIT = """\
[Unit]
Description=Restart flannel when the ZeroTier interface %i comes back
After=docker.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/multicloud-flannel-restart %i
"""

OVERLAY_UDEV_RULE = (
    'ACTION=="add", SUBSYSTEM=="net", KERNEL=="zt*", TAG+="systemd", '
    'ENV{SYSTEMD_WANTS}+="multicloud-flannel-restart@%k.service"\n'
)


def _bootstrap_script(ssh_user: str, overlay: OverlayFiles | None) -> str:
    lines = [
        "#!/bin/sh",
        "# Installs Docker (pinned) and, when the node joins an overlay, zerotier-one.",
        "set -eux",
        "swapoff -a",
        "sed -ri '/\\sswap\\s/s/^/#/' /etc/fstab",
        "modprobe overlay",
        "modprobe br_netfilter",
        "sysctl --system",
        f"/usr/local/sbin/multicloud-apt-key {DOCKER_KEY_URL} {DOCKER_KEY_FINGERPRINT} "
        "/usr/share/keyrings/docker.gpg",
        f"echo 'deb [signed-by=/usr/share/keyrings/docker.gpg] {DOCKER_APT}' "
        "> /etc/apt/sources.list.d/docker.list",
    ]
    packages = [f"docker-ce={DOCKER_VERSION}", f"docker-ce-cli={DOCKER_VERSION}", "containerd.io"]
    if overlay is not None:
        lines += [
            f"/usr/local/sbin/multicloud-apt-key {ZEROTIER_KEY_URL} {ZEROTIER_KEY_FINGERPRINT} "
            "/usr/share/keyrings/zerotier.gpg",
            f"echo 'deb [signed-by=/usr/share/keyrings/zerotier.gpg] {ZEROTIER_APT}' "
            "> /etc/apt/sources.list.d/zerotier.list",
        ]
        packages.append("zerotier-one")
    lines += [
        "apt-get update",
        "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
        + " ".join(packages),
        "apt-mark hold docker-ce docker-ce-cli",
        f"usermod -aG docker {ssh_user}",
        "systemctl enable --now docker iscsid multicloud-metadata-guard",
    ]
    if overlay is not None:
        # held like Docker: an unattended upgrade would restart it (see FLANNEL_RESTART_SCRIPT)
        lines.append("apt-mark hold zerotier-one")
        lines.append("systemctl enable --now zerotier-one")
    return "\n".join(lines) + "\n"


def render_user_data(
    node: NodeSpec,
    *,
    ssh_user: str,
    ssh_public_key: str,
    overlay: OverlayFiles | None,
) -> str:
    """The node's ``#cloud-config`` document."""
    files: list[dict[str, object]] = [
        {"path": "/etc/modules-load.d/kubernetes.conf", "content": "overlay\nbr_netfilter\n"},
        {
            "path": "/etc/sysctl.d/90-kubernetes.conf",
            "content": "net.ipv4.ip_forward = 1\n"
            "net.bridge.bridge-nf-call-iptables = 1\n"
            "net.bridge.bridge-nf-call-ip6tables = 1\n",
        },
        {
            "path": "/etc/docker/daemon.json",
            "content": json.dumps(
                {"log-driver": "json-file", "log-opts": {"max-size": "50m", "max-file": "3"}},
                indent=2,
            )
            + "\n",
        },
        {
            "path": "/usr/local/sbin/multicloud-apt-key",
            "permissions": "0755",
            "content": APT_KEY_SCRIPT,
        },
        {
            "path": "/usr/local/sbin/multicloud-metadata-guard",
            "permissions": "0755",
            "content": METADATA_GUARD_SCRIPT,
        },
        {
            "path": "/etc/systemd/system/multicloud-metadata-guard.service",
            "content": METADATA_GUARD_UNIT,
        },
        {
            "path": "/usr/local/sbin/multicloud-bootstrap",
            "permissions": "0755",
            "content": _bootstrap_script(ssh_user, overlay),
        },
    ]
    # --- overlay: the node's ZeroTier identity and network, written before install ---
    if overlay is not None:
        files += [
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
            {
                "path": "/usr/local/sbin/multicloud-flannel-restart",
                "permissions": "0755",
                "content": FLANNEL_RESTART_SCRIPT,
            },
            {
                "path": "/etc/systemd/system/multicloud-flannel-restart@.service",
                "content": FLANNEL_RESTART_UNIT,
            },
            {"path": "/etc/udev/rules.d/90-multicloud-overlay.rules", "content": OVERLAY_UDEV_RULE},
        ]
    document = {
        "hostname": node.name,
        "preserve_hostname": False,
        "manage_etc_hosts": True,
        "disable_root": True,
        "ssh_pwauth": False,
        "groups": ["docker"],
        "users": [
            {
                "name": ssh_user,
                "groups": ["docker", "sudo"],
                "shell": "/bin/bash",
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "lock_passwd": True,
                "ssh_authorized_keys": [ssh_public_key],
            }
        ],
        "package_update": True,
        "packages": ["ca-certificates", "curl", "gnupg", "iptables", "open-iscsi", "nfs-common"],
        "write_files": files,
        "runcmd": [["/usr/local/sbin/multicloud-bootstrap"]],
    }
    return "#cloud-config\n" + yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=1000)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so a reviewer reads scripts as scripts."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)

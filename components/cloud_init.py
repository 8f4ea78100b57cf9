"""User-data for a node: a pure function of the node and the overlay it joins.

Debian 12 (bookworm). Order matters and is encoded here: ``write_files`` runs
before ``runcmd``, so the ZeroTier identity, ``networks.d/<nwid>.conf`` and
``local.conf`` are on disk before ``zerotier-one`` is installed (its package
starts the service at once and would otherwise mint a fresh identity).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class Rke2Files:
    """What an RKE2 node installs and writes at boot (``rke2/`` builds it).

    ``config_yaml`` holds the cluster token: user-data carrying it must be a Pulumi secret.
    """

    role: str  # "server" (masters) or "agent" (workers)
    config_yaml: str  # /etc/rancher/rke2/config.yaml
    install_script: str  # rke2.scripts.install_script
    external_ip_script: str | None = None  # rke2.config_yaml.external_ip_dropin, where public
    manifests: Mapping[str, str] = field(default_factory=dict)  # servers: file name -> YAML
    environment: tuple[str, str] | None = None  # (path, text) the RKE2 unit reads


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

# RKE2 brings its own containerd: the guard runs before RKE2 starts instead of with Docker.
METADATA_GUARD_UNIT_RKE2 = """\
[Unit]
Description=Block pod access to the cloud metadata service
Before=rke2-server.service rke2-agent.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/multicloud-metadata-guard

[Install]
WantedBy=multi-user.target
"""
RKE2_INSTALL = "/usr/local/sbin/multicloud-rke2-install"
RKE2_EXTERNAL_IP = "/usr/local/sbin/multicloud-rke2-external-ip"
RKE2_CONFIG = "/etc/rancher/rke2/config.yaml"
RKE2_MANIFESTS = "/var/lib/rancher/rke2/server/manifests"


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


def _zerotier_lines(overlay: OverlayFiles | None) -> list[str]:
    if overlay is None:
        return []
    return [
        f"/usr/local/sbin/multicloud-apt-key {ZEROTIER_KEY_URL} {ZEROTIER_KEY_FINGERPRINT} "
        "/usr/share/keyrings/zerotier.gpg",
        f"echo 'deb [signed-by=/usr/share/keyrings/zerotier.gpg] {ZEROTIER_APT}' "
        "> /etc/apt/sources.list.d/zerotier.list",
    ]


def _bootstrap_script(
    ssh_user: str, overlay: OverlayFiles | None, rke2: Rke2Files | None = None
) -> str:
    what = "RKE2 (pinned, verified)" if rke2 is not None else "Docker (pinned)"
    lines = [
        "#!/bin/sh",
        f"# Installs zerotier-one when the node joins an overlay, then {what}.",
        "set -eux",
        "swapoff -a",
        "sed -ri '/\\sswap\\s/s/^/#/' /etc/fstab",
        "modprobe overlay",
        "modprobe br_netfilter",
        "sysctl --system",
    ]
    if rke2 is not None:
        # The public address first: an OpenStack floating IP comes from the metadata
        # service, which the guard below closes.
        if rke2.external_ip_script is not None:  # only informative: never stops the install
            lines.append(f"{RKE2_EXTERNAL_IP} || true")
        # No Docker: RKE2 runs its own containerd. ZeroTier first, as for RKE.
        lines += _zerotier_lines(overlay)
        packages = ["zerotier-one"] if overlay is not None else []
        if packages:
            lines += [
                "apt-get update",
                "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
                + " ".join(packages),
            ]
        lines.append("systemctl enable --now iscsid multicloud-metadata-guard")
        if overlay is not None:
            lines.append("apt-mark hold zerotier-one")  # as for RKE: an upgrade restarts it
            lines.append("systemctl enable --now zerotier-one")
        lines.append(RKE2_INSTALL)
        return "\n".join(lines) + "\n"
    lines += [
        f"/usr/local/sbin/multicloud-apt-key {DOCKER_KEY_URL} {DOCKER_KEY_FINGERPRINT} "
        "/usr/share/keyrings/docker.gpg",
        f"echo 'deb [signed-by=/usr/share/keyrings/docker.gpg] {DOCKER_APT}' "
        "> /etc/apt/sources.list.d/docker.list",
    ]
    packages = [f"docker-ce={DOCKER_VERSION}", f"docker-ce-cli={DOCKER_VERSION}", "containerd.io"]
    if overlay is not None:
        lines += _zerotier_lines(overlay)
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
    rke2: Rke2Files | None = None,
) -> str:
    """The node's ``#cloud-config`` document: Docker for RKE, or RKE2 when ``rke2`` is given."""
    files: list[dict[str, object]] = [
        {"path": "/etc/modules-load.d/kubernetes.conf", "content": "overlay\nbr_netfilter\n"},
        {
            "path": "/etc/sysctl.d/90-kubernetes.conf",
            "content": "net.ipv4.ip_forward = 1\n"
            "net.bridge.bridge-nf-call-iptables = 1\n"
            "net.bridge.bridge-nf-call-ip6tables = 1\n",
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
            "content": METADATA_GUARD_UNIT if rke2 is None else METADATA_GUARD_UNIT_RKE2,
        },
        {
            "path": "/usr/local/sbin/multicloud-bootstrap",
            "permissions": "0755",
            "content": _bootstrap_script(ssh_user, overlay, rke2),
        },
    ]
    if rke2 is None:
        files.insert(2, DOCKER_DAEMON_FILE)
    else:
        files += _rke2_files(rke2)
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
        ]
    # RKE's flannel in Docker needs a restart when zt* comes back; RKE2's canal does not:
    # its flannel is v0.27.4 or newer from v1.35.0 on (docs.rke2.io release notes v1.35.X),
    # which recreates flannel.1 itself (flannel-io/flannel#2272).
    if overlay is not None and rke2 is None:
        files += [
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
        "groups": ["docker"] if rke2 is None else [],
        "users": [
            {
                "name": ssh_user,
                "groups": ["docker", "sudo"] if rke2 is None else ["sudo"],
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
    if not document["groups"]:
        del document["groups"]
    return "#cloud-config\n" + yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=1000)


DOCKER_DAEMON_FILE: dict[str, object] = {
    "path": "/etc/docker/daemon.json",
    "content": json.dumps(
        {"log-driver": "json-file", "log-opts": {"max-size": "50m", "max-file": "3"}}, indent=2
    )
    + "\n",
}


def _rke2_files(rke2: Rke2Files) -> list[dict[str, object]]:
    """RKE2's config (0600: it holds the token), install script and, on servers, manifests."""
    files: list[dict[str, object]] = [
        {"path": RKE2_CONFIG, "permissions": "0600", "content": rke2.config_yaml},
        {"path": RKE2_INSTALL, "permissions": "0755", "content": rke2.install_script},
    ]
    if rke2.external_ip_script is not None:
        files.append(
            {"path": RKE2_EXTERNAL_IP, "permissions": "0755", "content": rke2.external_ip_script}
        )
    if rke2.environment is not None:
        path, text = rke2.environment
        files.append({"path": path, "permissions": "0644", "content": text})
    for name, text in sorted(rke2.manifests.items()):
        files.append({"path": f"{RKE2_MANIFESTS}/{name}", "permissions": "0600", "content": text})
    return files


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so a reviewer reads scripts as scripts."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)

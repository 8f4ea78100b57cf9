"""RKE's part of a node's boot document: Docker, pinned, for ``rke up`` to use."""

from __future__ import annotations

import json

from components.boot import apt
from components.boot.apt import File
from components.boot.assets import render
from components.boot.document import EnginePart
from components.boot.metadata_guard import GUARD, GuardOrder

DOCKER_KEY_URL = "https://download.docker.com/linux/debian/gpg"
DOCKER_KEY_FINGERPRINT = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
DOCKER_APT = "https://download.docker.com/linux/debian bookworm stable"
# RKE v1.8 accepts Docker 26.1 for Kubernetes 1.30; held so unattended upgrades
# cannot move it past what RKE checks.
DOCKER_VERSION = "5:26.1.4-1~debian.12~bookworm"
# The containerd.io Docker published with 26.1.4 (June 2024), in Docker's bookworm pool as
# containerd.io_1.6.33-1_amd64.deb; held with Docker so the pair never drifts apart.
CONTAINERD_VERSION = "1.6.33-1"
HELD_PACKAGES = ("docker-ce", "docker-ce-cli", "containerd.io")
DOCKER_DAEMON_FILE: File = {
    "path": "/etc/docker/daemon.json",
    "content": json.dumps(
        {"log-driver": "json-file", "log-opts": {"max-size": "50m", "max-file": "3"}}, indent=2
    )
    + "\n",
}
# Docker (and so every container) starts only after the metadata guard.
GUARD_ORDER = GuardOrder(
    before=("docker.service", "containerd.service"),
    required_by=("docker.service",),
    note="# cloud-init-local.service and cloud-init.service (the stages that read the metadata\n"
    "# service) run before sysinit.target; this unit's default dependencies order it after.\n",
)

# --- overlay restarts: flannel's VXLAN device rides on the ZeroTier interface ---
# When zerotier-one restarts (a package upgrade, a crash) its tap interface is deleted and
# created again; the kernel deletes flannel.1 and its routes with it, and flannel before
# v0.27.4 does not recreate them (flannel-io/flannel#2247, fixed by #2272): pods on the
# node lose the network until kube-flannel restarts. Which flannel RKE ships for
# v1.30.14-rancher1-1 could not be read here (the newest kontainer-driver-metadata data
# available, dev-v2.10, gives v1.30.x flannel v0.25.1), so udev restarts the node's
# kube-flannel container (its name in RKE's flannel manifests) whenever a zt*
# interface appears and flannel.1 is missing. RKE2's canal does not need it (rke2/boot.py).
FLANNEL_RESTART_SCRIPT = render("rke", "multicloud-flannel-restart")
FLANNEL_RESTART_UNIT = render("rke", "multicloud-flannel-restart@.service")
OVERLAY_UDEV_RULE = render("rke", "90-multicloud-overlay.rules")
FLANNEL_RESTART_FILES: tuple[File, ...] = (
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
)


def docker_part(ssh_user: str) -> EnginePart:
    """Docker and containerd, pinned and held; ``ssh_user`` joins the docker group."""
    return EnginePart(
        installs="Docker (pinned)",
        guard=GUARD_ORDER,
        groups=("docker",),
        early_files=(DOCKER_DAEMON_FILE,),
        overlay_files=FLANNEL_RESTART_FILES,
        # Before anything is installed: Docker and its containers never see the service.
        before_base=(f"systemctl enable --now {GUARD}",),
        repositories=tuple(
            apt.repository("docker", DOCKER_KEY_URL, DOCKER_KEY_FINGERPRINT, DOCKER_APT)
        ),
        packages=(
            f"docker-ce={DOCKER_VERSION}",
            f"docker-ce-cli={DOCKER_VERSION}",
            f"containerd.io={CONTAINERD_VERSION}",
        ),
        after_packages=(
            "apt-mark hold " + " ".join(HELD_PACKAGES),
            f"usermod -aG docker {ssh_user}",
            "systemctl enable --now docker iscsid",
        ),
    )

"""RKE2's part of a node's boot document: its config, verified install and manifests.

RKE2 brings its own containerd, so no Docker: the metadata guard runs before RKE2's units.
Its canal needs no restart when the ZeroTier interface comes back: its flannel is v0.27.4
or newer from v1.35.0 on (docs.rke2.io release notes v1.35.X), which recreates flannel.1
itself (flannel-io/flannel#2272).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from components.boot.apt import File
from components.boot.document import EnginePart
from components.boot.metadata_guard import GUARD, GuardOrder

RKE2_INSTALL = "/usr/local/sbin/multicloud-rke2-install"
RKE2_EXTERNAL_IP = "/usr/local/sbin/multicloud-rke2-external-ip"
RKE2_CONFIG = "/etc/rancher/rke2/config.yaml"
RKE2_MANIFESTS = "/var/lib/rancher/rke2/server/manifests"
RKE2_UNITS = ("rke2-server.service", "rke2-agent.service")


@dataclass(frozen=True)
class Rke2Files:
    """What an RKE2 node installs and writes at boot (``rke2/component.py`` builds it).

    ``config_yaml`` holds the cluster token: user-data carrying it must be a Pulumi secret.
    """

    role: str  # "server" (masters) or "agent" (workers)
    config_yaml: str  # /etc/rancher/rke2/config.yaml
    install_script: str  # rke2.scripts.install_script
    external_ip_script: str | None = None  # rke2.config_yaml.external_ip_dropin, where public
    manifests: Mapping[str, str] = field(default_factory=dict)  # servers: file name -> YAML
    environment: tuple[str, str] | None = None  # (path, text) the RKE2 unit reads


def rke2_part(rke2: Rke2Files) -> EnginePart:
    # The public address (of the default route's interface) first; a floating IP is in
    # config.yaml already (the program allocates it before the VM), so nothing here needs
    # the metadata service, which the guard closes. Only informative: never stops the install.
    external_ip = () if rke2.external_ip_script is None else (f"{RKE2_EXTERNAL_IP} || true",)
    return EnginePart(
        installs="RKE2 (pinned, verified)",
        guard=GuardOrder(before=RKE2_UNITS, required_by=RKE2_UNITS),
        files=tuple(_files(rke2)),
        before_base=external_ip,
        after_packages=(f"systemctl enable --now iscsid {GUARD}",),
        start=(RKE2_INSTALL,),
    )


def _files(rke2: Rke2Files) -> list[File]:
    """RKE2's config (0600: it holds the token), install script and, on servers, manifests."""
    files: list[File] = [
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

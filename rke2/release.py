"""The pinned RKE2 release, read from ``reference/rke2-release.json`` and
``reference/rke2-cli-flags.json`` (see ``reference/README.md`` for their provenance)."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

REFERENCE = Path(__file__).resolve().parent.parent / "reference"
# Ports RKE2 nodes use between each other (reference/rke2-release.json "ports"): name,
# protocol, first and last port, and who listens (servers or every node). All of them
# are reached on overlay addresses (node-ip, advertise-address), never publicly.
CLUSTER_PORTS: tuple[tuple[str, str, int, int, str], ...] = (
    ("supervisor", "tcp", 9345, 9345, "servers"),
    ("kube-api", "tcp", 6443, 6443, "servers"),
    ("etcd", "tcp", 2379, 2381, "servers"),
    ("kubelet", "tcp", 10250, 10250, "nodes"),
    ("vxlan", "udp", 8472, 8472, "nodes"),
    ("canal-health", "tcp", 9099, 9099, "nodes"),
)
RKE2_VERSION = re.compile(r"^v(\d+)\.(\d+)\.(\d+)\+rke2r(\d+)$")


def _load(name: str) -> Any:
    return json.loads((REFERENCE / name).read_text())


@cache
def release() -> dict[str, Any]:
    """The pinned release's facts (version, artifacts, charts, ports)."""
    data: dict[str, Any] = _load("rke2-release.json")
    return data


@cache
def cli_flags() -> dict[str, frozenset[str]]:
    """``{"server": names, "agent": names}``: the keys each role's config.yaml may carry."""
    flags = _load("rke2-cli-flags.json")
    return {"server": frozenset(flags["server"]), "agent": frozenset(flags["agent"])}


def pinned_version() -> str:
    """The RKE2 release this project verified, e.g. ``v1.35.7+rke2r1``."""
    return str(release()["version"])


def supported_versions() -> tuple[str, ...]:
    """Every ``kubernetesVersion`` the rke2 engine accepts: releases recorded in reference/."""
    return (pinned_version(),)


def version_key(version: str) -> tuple[int, int, int, int]:
    """``v1.35.7+rke2r1`` -> ``(1, 35, 7, 1)``, ordered as RKE2 orders its releases.

    Raises ``ValueError`` for anything that is not an RKE2 release version.
    """
    match = RKE2_VERSION.fullmatch(version)
    if not match:
        raise ValueError(f"{version!r} is not an RKE2 version such as {pinned_version()}")
    major, minor, patch, revision = (int(g) for g in match.groups())
    return major, minor, patch, revision


def kubernetes_minor(version: str) -> str:
    """``v1.35.7+rke2r1`` -> ``1.35`` (what kubernetes-validate and the skew policy use)."""
    major, minor, _, _ = version_key(version)
    return f"{major}.{minor}"


def artifact_urls(version: str) -> tuple[str, str]:
    """(tarball URL, sha256sum file URL) of ``version``'s amd64 Linux release assets.

    The names and the ``+`` -> ``%2B`` escaping are those of RKE2's ``install.sh``
    (``download_tarball``, ``download_checksums``).
    """
    version_key(version)
    base = f"https://github.com/rancher/rke2/releases/download/{version.replace('+', '%2B')}"
    artifacts = release()["artifacts"]
    return f"{base}/{artifacts['tarball']}", f"{base}/{artifacts['checksums']}"


def tarball_sha256(version: str) -> str | None:
    """The verified sha256 of ``version``'s tarball, or None when none is recorded."""
    if version != pinned_version():
        return None
    value = release()["artifacts"]["tarball_sha256"]
    return str(value) if value else None

"""Which RKE release ships which Kubernetes version: ``reference/rke-releases.json`` as data.

RKE refuses a ``kubernetes_version`` its release does not ship ("unsupported Kubernetes
version"), but only inside ``rke up``, after it has read and written state. The runner
checks ``rke --version`` against this data first, and the stack config accepts only
versions the latest release ships. The file records where each list came from (the
release notes on GitHub) and how to re-check it; releases whose notes could not be
read are listed with ``kubernetes_versions: null`` and are refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REFERENCE_FILE = Path(__file__).resolve().parent.parent / "reference" / "rke-releases.json"
_VERSION = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")


@dataclass(frozen=True)
class Release:
    """One RKE release: its name (``v1.8.14``) and what its notes list (None: unknown)."""

    name: str
    kubernetes_versions: tuple[str, ...] | None
    extended_life_only: tuple[str, ...] = ()
    source: str | None = None


@cache
def releases() -> dict[str, Release]:
    """Every release in the reference file, by name. Raises ``OSError``/``ValueError``
    when the file is missing or malformed (the repository is incomplete)."""
    data = json.loads(REFERENCE_FILE.read_text())
    found = {}
    for name, entry in data["releases"].items():
        versions = entry.get("kubernetes_versions")
        found[name] = Release(
            name=name,
            kubernetes_versions=None if versions is None else tuple(versions),
            extended_life_only=tuple(entry.get("extended_life_only") or ()),
            source=entry.get("source"),
        )
    return found


def latest() -> Release:
    """The newest release recorded (RKE v1 is end-of-life: this is its last release)."""
    data = json.loads(REFERENCE_FILE.read_text())
    return releases()[data["latest"]]


def supported_kubernetes_versions() -> tuple[str, ...]:
    """The versions the latest release ships: what ``kubernetesVersion`` may be."""
    versions = latest().kubernetes_versions
    assert versions is not None, "the latest release must list its Kubernetes versions"
    return versions


def releases_shipping(kubernetes_version: str) -> tuple[str, ...]:
    """Names of the releases known to ship ``kubernetes_version``, oldest first."""
    names = [
        r.name
        for r in releases().values()
        if r.kubernetes_versions is not None and kubernetes_version in r.kubernetes_versions
    ]
    return tuple(sorted(names, key=_order))


def _order(name: str) -> tuple[int, ...]:
    match = _VERSION.fullmatch(name)
    return tuple(int(g) for g in match.groups()) if match else (0,)


def check_release(rke_version: str, kubernetes_version: str) -> str | None:
    """None when RKE ``rke_version`` ships ``kubernetes_version``; otherwise why not."""
    shipping = releases_shipping(kubernetes_version)
    wanted = (
        f"releases that ship it: {', '.join(shipping)}"
        if shipping
        else "no release recorded in reference/rke-releases.json ships it"
    )
    release = releases().get(rke_version)
    if release is None:
        return (
            f"RKE {rke_version} is not in reference/rke-releases.json, so whether it ships "
            f"{kubernetes_version} is unknown ({wanted})"
        )
    if release.kubernetes_versions is None:
        return (
            f"the Kubernetes versions of RKE {rke_version} are not recorded in "
            f"reference/rke-releases.json ({wanted})"
        )
    if kubernetes_version not in release.kubernetes_versions:
        return (
            f"RKE {rke_version} does not ship {kubernetes_version} (it ships "
            f"{', '.join(release.kubernetes_versions)}; {wanted})"
        )
    return None

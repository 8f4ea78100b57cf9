"""Pure description of the cluster's nodes, known before any VM exists."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["master", "worker"]

ZONE_LABEL = "topology.kubernetes.io/zone"
INGRESS_LABEL = "multicloud.io/ingress"


@dataclass(frozen=True)
class NodeSpec:
    """One VM as the config describes it: everything here is known at preview time."""

    name: str  # <cluster>-<site>-<kind>-<index>, also the VM name and RKE hostname_override
    site: str
    kind: Kind
    index: int
    roles: tuple[str, ...]  # RKE roles: controlplane, etcd, worker
    size: str  # flavor (OpenStack) or droplet size (DigitalOcean)
    zerotier_ip: str  # overlay address, a pure function of (site, kind, index)
    ingress: bool  # may take public 80/443 traffic
    labels: Mapping[str, str] = field(default_factory=dict)

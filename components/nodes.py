"""Pure description of the cluster's nodes, known before any VM exists."""

from __future__ import annotations

from dataclasses import dataclass
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

    @property
    def labels(self) -> dict[str, str]:
        """Kubernetes node labels: the site as zone (Longhorn spreads replicas by it) and
        whether RKE's ingress controller and the DNS updater may run here."""
        return {ZONE_LABEL: self.site, INGRESS_LABEL: "true" if self.ingress else "false"}

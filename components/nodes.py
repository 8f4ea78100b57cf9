"""Pure description of the cluster's nodes, known before any VM exists."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

Kind = Literal["master", "worker"]
IngressMode = Literal["public", "private", "none"]
"""``sites.<name>.ingress``: ``public`` runs RKE's ingress controller and takes public
80/443 (DNS record target, DNS updater); ``private`` runs the controller for the site's
LAN only; ``none`` runs no controller."""
INGRESS_MODES: tuple[str, ...] = get_args(IngressMode)

ZONE_LABEL = "topology.kubernetes.io/zone"
# RKE's `ingress.node_selector` (rke/cluster_yml.py) selects nodes by this label. RKE v1.8
# with Kubernetes v1.30 deploys ingress-nginx 1.11.2 (rancher/kontainer-driver-metadata
# pkg/rke/templates/templates.go -> nginx-v1.11.2-rancher2.go): the controller DaemonSet
# takes the node_selector and also requires node-role.kubernetes.io/worker (node
# affinity); the admission Jobs (ingress-nginx-admission-create/-patch), whose secret the
# controller mounts, take the same node_selector and tolerate every taint. The
# ValidatingWebhookConfiguration has failurePolicy: Fail, so an Ingress can be created
# only once a controller runs on a node with this label and the worker role.
INGRESS_CONTROLLER_LABEL = "multicloud.io/ingress-controller"
# The DNS updater's nodeSelector and the record's first target use this one.
PUBLIC_INGRESS_LABEL = "multicloud.io/public-ingress"


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
    ingress: IngressMode  # the site's ingress mode on worker-role nodes, else "none"

    def __post_init__(self) -> None:
        if self.ingress not in INGRESS_MODES:  # a leftover boolean would read as "public"
            raise ValueError(
                f"NodeSpec {self.name}: ingress must be one of {INGRESS_MODES}, "
                f"got {self.ingress!r}"
            )

    @property
    def schedulable(self) -> bool:
        """Carries the worker role. RKE v1 taints nodes without it: controlplane-only nodes
        ``NoSchedule`` (kubelet ``register-with-taints``, rancher/rke ``cluster/plan.go``),
        etcd nodes ``NoExecute`` (``services/workerplane.go``)."""
        return "worker" in self.roles

    @property
    def runs_ingress_controller(self) -> bool:
        """RKE's ingress-nginx DaemonSet (and its admission jobs) may run here."""
        return self.ingress != "none"

    @property
    def public_ingress(self) -> bool:
        """Takes public 80/443: a target of the DNS record, where the DNS updater runs."""
        return self.ingress == "public"

    @property
    def labels(self) -> dict[str, str]:
        """Kubernetes node labels: the site as zone (Longhorn spreads replicas by it), whether
        RKE's ingress controller may run here and whether the node takes public traffic."""
        return {
            ZONE_LABEL: self.site,
            INGRESS_CONTROLLER_LABEL: "true" if self.runs_ingress_controller else "false",
            PUBLIC_INGRESS_LABEL: "true" if self.public_ingress else "false",
        }


def schedulable_zones(nodes: Iterable[NodeSpec]) -> tuple[str, ...]:
    """Sites (Longhorn zones) with at least one worker-role node, in config order."""
    zones: dict[str, None] = {}
    for node in nodes:
        if node.schedulable:
            zones.setdefault(node.site)
    return tuple(zones)

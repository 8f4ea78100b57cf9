"""What the generic modules know of an install engine at preview (``EngineFacts``): each
engine states its own (``rke/config_rules.py``, ``rke2/config_rules.py``) and the parsed
config carries the chosen one's (``ClusterConfig.engine``), so no generic module tests an
engine's name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# A node-to-node port range that must ride the overlay: name, protocol, first and last
# port, and who listens ("servers" or every node, "nodes").
ClusterPort = tuple[str, str, int, int, str]


@dataclass(frozen=True)
class EngineFacts:
    """What the generic modules know of an engine at preview, read instead of its name."""

    title: str  # the engine as prose names it ("RKE2")
    install: str  # how the cluster forms, as the diagram's deployer box says it
    ssh_use: str  # what the deployer's SSH to the nodes is for (preflight notes)
    api_clients: tuple[str, ...]  # the tools on the deployer that use the Kubernetes API
    # which control plane the kubeconfig names: the first by node name, or the one with
    # the lowest overlay address (the server the others join)
    kubeconfig_server: Literal["name", "overlay-address"]
    ingress_controller: tuple[str, str]  # the controller's workloads, and where they run
    ingress_namespace: str  # the ingress controller's namespace (its NetworkPolicy peer)
    ingress_pod_labels: tuple[tuple[str, str], ...]  # its pods' labels; empty: every pod there
    longhorn_network_policy: str  # the Longhorn chart's networkPolicies.type
    cert_manager_chart: str  # the jetstack/cert-manager chart without certManager.chartVersion
    cluster_ports: tuple[ClusterPort, ...] = ()  # the overlay-only ports the preflight checks

    @property
    def api_users(self) -> str:
        """``api_clients`` as prose: "rke and pulumi-kubernetes"."""
        return " and ".join(self.api_clients)

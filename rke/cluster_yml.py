"""cluster.yml for RKE v1, a pure function of the nodes and the settings.

The text is deterministic (nodes sorted by name, fixed key order) so a PR preview
shows exactly what ``rke up`` will get, and an unchanged cluster gives an unchanged
string (no spurious update). It never contains secrets: the SSH key and the S3
keys are added by ``rke.runner`` to the copy it writes to disk.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from components.config.cluster import RkeSettings
from components.nodes import INGRESS_CONTROLLER_LABEL, NodeSpec

ROLE_ORDER = ("controlplane", "etcd", "worker")
# flannel's VXLAN (also canal's) wraps each packet in 50 bytes: outer IPv4 20, UDP 8,
# VXLAN 8, inner Ethernet 14.
VXLAN_OVERHEAD = 50
ZEROTIER_MIN_MTU = 1280  # ZeroTierOne ZT_MIN_MTU: no ZeroTier network has a smaller MTU


@dataclass(frozen=True)
class RkeNode:
    """One entry of cluster.yml ``nodes``."""

    name: str  # hostname_override: the Kubernetes node name
    address: str  # where RKE connects over SSH
    internal_address: str  # the node's ZeroTier address: all cluster traffic
    roles: tuple[str, ...]
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: NodeSpec, address: str) -> RkeNode:
        """The node as RKE sees it, with the spec's zone and ingress labels."""
        return cls(spec.name, address, spec.zerotier_ip, spec.roles, spec.labels)


@dataclass(frozen=True)
class ClusterYmlSettings:
    """Cluster-wide inputs of cluster.yml besides the nodes."""

    cluster_name: str
    ssh_user: str
    kubernetes_version: str  # e.g. v1.30.14-rancher1-1
    flannel_iface: str  # the ZeroTier interface, the same on every node
    overlay_cidr: str
    rke: RkeSettings = field(default_factory=RkeSettings)
    overlay_mtu: int | None = None  # the ZeroTier network's MTU in bytes; None: not known
    ssh_key_path: str | None = None  # used only when rke.ssh_agent_auth is false

    @property
    def s3_configured(self) -> bool:
        return self.rke.etcd.s3 is not None


def _check_nodes(nodes: Sequence[RkeNode], overlay_cidr: str) -> None:
    if not nodes:
        raise ValueError("cluster.yml: no nodes")
    overlay = ipaddress.ip_network(overlay_cidr)
    for attr in ("name", "internal_address"):
        values = [getattr(n, attr) for n in nodes]
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise ValueError(f"cluster.yml: duplicate node {attr}: {', '.join(dupes)}")
    for node in nodes:
        unknown = set(node.roles) - set(ROLE_ORDER)
        if not node.roles or unknown:
            raise ValueError(
                f"node {node.name}: roles must be among {ROLE_ORDER}, got {node.roles}"
            )
        if node.address == node.internal_address:
            # RKE would start kubelet without --node-ip (rke/config_rules.py ssh_via_problem).
            raise ValueError(
                f"node {node.name}: address equals internal_address {node.address}; "
                "RKE v1 needs the SSH address to differ from the overlay address"
            )
        if ipaddress.ip_address(node.internal_address) not in overlay:
            raise ValueError(
                f"node {node.name}: internal address {node.internal_address} is outside "
                f"the overlay {overlay_cidr}"
            )
    for role in ROLE_ORDER:
        if not any(role in n.roles for n in nodes):
            raise ValueError(f"cluster.yml: RKE needs at least one {role} node")


def _node(node: RkeNode, user: str) -> dict[str, Any]:
    return {
        "address": node.address,
        "internal_address": node.internal_address,
        "hostname_override": node.name,
        "user": user,
        "role": [r for r in ROLE_ORDER if r in node.roles],
        "labels": {k: str(node.labels[k]) for k in sorted(node.labels)},
    }


def _etcd(rke: RkeSettings) -> dict[str, Any]:
    etcd = rke.etcd
    backup: dict[str, Any] = {
        "enabled": True,
        "interval_hours": etcd.snapshot_interval_hours,
        "retention": etcd.retention,
    }
    if etcd.s3 is not None:
        s3: dict[str, Any] = {"bucket_name": etcd.s3.bucket, "endpoint": etcd.s3.endpoint}
        if etcd.s3.region is not None:
            s3["region"] = etcd.s3.region
        if etcd.s3.folder is not None:
            s3["folder"] = etcd.s3.folder
        backup["s3backupconfig"] = s3
    return {
        "extra_args": {
            "heartbeat-interval": str(etcd.heartbeat_interval_ms),
            "election-timeout": str(etcd.election_timeout_ms),
        },
        "backup_config": backup,
    }


def _controller_args(rke: RkeSettings) -> dict[str, str]:
    """kube-controller-manager flags that set how fast a dead node's pods move.

    RKE's ``BuildKubeControllerProcess`` (cluster/plan.go) lets ``extra_args`` override the KDM
    defaults, which already pass ``node-monitor-grace-period: 40s``.
    """
    return {
        "node-monitor-grace-period": f"{rke.node_monitor_grace_period_seconds}s",
        "node-eviction-rate": f"{rke.node_eviction_rate:g}",
    }


def _kubelet(rke: RkeSettings) -> dict[str, Any]:
    kubelet: dict[str, Any] = {
        "cluster_domain": rke.cluster_domain,
        "cluster_dns_server": rke.cluster_dns_server,
    }
    env = rke.kubelet_http2_env
    if env:  # RKE's BuildKubeletProcess passes extra_env to the kubelet container
        kubelet["extra_env"] = [f"{k}={v}" for k, v in sorted(env.items())]
    return kubelet


def _network(settings: ClusterYmlSettings) -> dict[str, Any]:
    """cluster.yml ``network``: the plugin's VXLAN rides the ZeroTier interface.

    canal (RKE cluster/network.go doCanalDeploy) reads ``canal_iface`` and takes
    ``network.mtu`` as the pods' veth MTU; without it RKE's canal templates hard-code 1450
    (reference/rke-network-options.json), which fits only a ZeroTier MTU of 1500 or more,
    so it is set from the overlay's MTU; when that is not known (an adopted network whose MTU
    the stack leaves alone, possibly lowered) from ZeroTier's minimum, which fits any
    network. flannel sizes its MTU from the interface itself, and RKE refuses
    ``network.mtu`` with flannel (cluster/validation.go validateNetworkOptions).
    """
    if settings.rke.network_plugin == "flannel":
        return {"plugin": "flannel", "options": {"flannel_iface": settings.flannel_iface}}
    mtu = (settings.overlay_mtu or ZEROTIER_MIN_MTU) - VXLAN_OVERHEAD
    return {"plugin": "canal", "options": {"canal_iface": settings.flannel_iface}, "mtu": mtu}


def cluster_config(nodes: Sequence[RkeNode], settings: ClusterYmlSettings) -> dict[str, Any]:
    """The cluster.yml document as plain data (no None values)."""
    _check_nodes(nodes, settings.overlay_cidr)
    rke = settings.rke
    auth: dict[str, Any] = (
        {"ssh_agent_auth": True}
        if rke.ssh_agent_auth
        else {"ssh_agent_auth": False, "ssh_key_path": settings.ssh_key_path or "~/.ssh/id_rsa"}
    )
    ingress: dict[str, Any] = (
        # ingress-nginx's DaemonSet and admission Jobs take this node_selector (and the
        # DaemonSet also requires node-role.kubernetes.io/worker): see components/nodes.py.
        {"provider": "nginx", "node_selector": {INGRESS_CONTROLLER_LABEL: "true"}}
        if rke.ingress.enabled
        else {"provider": "none"}
    )
    upgrade = rke.upgrade
    return {
        "cluster_name": settings.cluster_name,
        "kubernetes_version": settings.kubernetes_version,
        "nodes": [_node(n, settings.ssh_user) for n in sorted(nodes, key=lambda n: n.name)],
        **auth,
        "network": _network(settings),
        "services": {
            "etcd": _etcd(rke),
            "kube-api": {
                "service_cluster_ip_range": rke.service_cidr,
                # Secrets at rest in etcd (and so in every snapshot) are AES-CBC encrypted.
                # RKE generates the key and keeps it in cluster.rkestate (the RKE command's
                # secret output), deploys it to /etc/kubernetes/ssl/encryption.yaml on the
                # control plane, and rewrites every Secret when encryption is first turned
                # on (cluster/encryption.go); `rotate_encryption_key: true` rotates it.
                "secrets_encryption_config": {"enabled": True},
            },
            "kube-controller": {
                "cluster_cidr": rke.pod_cidr,
                "service_cluster_ip_range": rke.service_cidr,
                "extra_args": _controller_args(rke),
            },
            "kubelet": _kubelet(rke),
        },
        "authentication": {"strategy": "x509"},
        "authorization": {"mode": "rbac"},
        "dns": {"provider": "coredns", "upstreamnameservers": list(rke.dns_upstreams)},
        "ingress": ingress,
        "upgrade_strategy": {
            "max_unavailable_worker": upgrade.max_unavailable_worker,
            "max_unavailable_controlplane": upgrade.max_unavailable_controlplane,
            "drain": upgrade.drain,
            "node_drain_input": {
                "ignore_daemonsets": True,
                "delete_local_data": True,
                "timeout": upgrade.drain_timeout_seconds,
            },
        },
    }


def render_cluster_yml(nodes: Sequence[RkeNode], settings: ClusterYmlSettings) -> str:
    """cluster.yml text: deterministic, secret-free, valid for RKE v1.8."""
    return yaml.safe_dump(
        cluster_config(nodes, settings), sort_keys=False, default_flow_style=False, width=1000
    )

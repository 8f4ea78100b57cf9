"""What the RKE2 engine requires of the stack: its released versions, snapshot intervals
cron can express, and no ``multicloud:rke`` key only RKE v1 reads. RKE2 sets kubelet's
node-ip itself (``node-ip`` in rke2/config_yaml.py), so it takes every sshVia. ``RULES``
is handed to ``parse_config`` (``rke2/engine.py``, ``engines.py``).
"""

from __future__ import annotations

import re

from components.config.engine_facts import EngineFacts
from components.config.entrypoint import DEFAULT_CERT_MANAGER_CHART
from components.config.model import fail
from components.config.rules import EngineRules
from components.config.settings import ClusterSettings
from components.nodes import INGRESS_CONTROLLER_LABEL
from rke2.release import CLUSTER_PORTS, supported_versions

RKE_VERSION = re.compile(r"^v1\.\d+\.\d+-rancher\d+-\d+$")  # RKE v1's version strings


def version_problem(value: str) -> str | None:
    """Why RKE2 cannot install ``kubernetesVersion: <value>``, or None."""
    supported = supported_versions()
    if RKE_VERSION.fullmatch(value):
        return (
            f"{value} is an RKE (v1) version, but engine is rke2; "
            f"expected {' or '.join(supported)} (or remove the key for the default)"
        )
    if value not in supported:
        return (
            f"{value} is not an RKE2 release this project verified; "
            f"expected one of {', '.join(supported)} (reference/rke2-release.json)"
        )
    return None


def check(settings: ClusterSettings) -> None:
    """Refuse what RKE2 would silently ignore or cannot schedule, naming the key."""
    _check_rke_only_keys(settings)
    _check_snapshots(settings)


# `multicloud:rke` keys only the RKE engine reads; with rke2 a set one would do nothing.
RKE_ONLY_KEYS = {
    "network_plugin": (
        "networkPlugin",
        "RKE2 always runs canal, the `cni` of rke2/config_yaml.py",
    ),
    "dns_upstreams": ("dnsUpstreams", "RKE2's CoreDNS forwards to the nodes' resolvers"),
    "ssh_agent_auth": ("sshAgentAuth", "RKE2 has no SSH installer"),
    "restore": ("restore", "an RKE2 cluster is restored as docs/rke2.md describes"),
}
RKE_ONLY_UPGRADE_KEYS = {
    "max_unavailable_worker": "maxUnavailableWorker",
    "max_unavailable_controlplane": "maxUnavailableControlplane",
}


def _check_snapshots(settings: ClusterSettings) -> None:
    """RKE2 takes snapshots on a cron schedule (``_snapshot_cron`` in rke2/config_yaml.py):
    "0 */h * * *" restarts every midnight, so only an interval dividing 24 hours keeps the
    gaps even (7 would give 7, 7, 7 and 3 hours), and a longer one is not expressible."""
    hours = settings.rke.etcd.snapshot_interval_hours
    if 24 % hours:
        even = ", ".join(str(h) for h in range(1, 25) if 24 % h == 0)
        raise fail(
            "rke.etcd.snapshotIntervalHours",
            f"{hours} hours does not divide a day: RKE2 schedules snapshots with cron, every "
            f"{hours} hours from midnight, so the gaps would be uneven; with engine rke2 use "
            f"one of {even}",
        )


def _check_rke_only_keys(settings: ClusterSettings) -> None:
    """Refuse `multicloud:rke` keys the rke2 engine would silently ignore."""
    rke = settings.rke
    for field, (key, why) in RKE_ONLY_KEYS.items():
        if field in rke.model_fields_set:
            raise fail(f"rke.{key}", f"only the rke engine reads it ({why}); remove it")
    for field, key in RKE_ONLY_UPGRADE_KEYS.items():
        if field in rke.upgrade.model_fields_set:
            raise fail(
                f"rke.upgrade.{key}",
                "only the rke engine reads it (RKE2's upgrade Plans take one node at a time); "
                "remove it",
            )


FACTS = EngineFacts(
    title="RKE2",
    install="RKE2 nodes join a server on 9345",
    ssh_use="the cluster-ready and drain commands",
    api_clients=("pulumi-kubernetes",),
    # the kubeconfig names the server the others join: on a first deployment the one with
    # the lowest overlay address (rke2/join.py)
    kubeconfig_server="overlay-address",
    # rke2-ingress-nginx with the HelmChartConfig's nodeSelector (rke2/manifests.py);
    # masters without the worker role carry the control-plane NoSchedule taint
    ingress_controller=(
        "rke2-ingress-nginx DaemonSet",
        f"{INGRESS_CONTROLLER_LABEL}=true, untainted",
    ),
    # RKE2's packaged ingress controller: kube-system, the rke2-ingress-nginx chart's labels
    # (as the Longhorn 1.8.1 chart's own rke2 policy selects it,
    # chart/templates/network-policies/ui-frontend-network-policy.yaml); hostPort, not
    # hostNetwork (rancher/rke2-charts rke2-ingress-nginx values.yaml.patch), so a pod
    # selector matches its traffic.
    ingress_namespace="kube-system",
    ingress_pod_labels=(
        ("app.kubernetes.io/component", "controller"),
        ("app.kubernetes.io/instance", "rke2-ingress-nginx"),
        ("app.kubernetes.io/name", "rke2-ingress-nginx"),
    ),
    longhorn_network_policy="rke2",
    cert_manager_chart=DEFAULT_CERT_MANAGER_CHART,
    cluster_ports=CLUSTER_PORTS,
)
RULES = EngineRules(supported_versions()[0], version_problem, check, FACTS)

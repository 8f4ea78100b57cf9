"""What the RKE v1 engine requires of the stack beyond cluster.yml's schema: its
Kubernetes versions and the ``sshVia`` it cannot install. ``RULES`` is handed to
``parse_config`` (``rke/engine.py``, ``engines.py``); RKE2 has its own (``rke2/config_rules.py``).
"""

from __future__ import annotations

import re

from components.config.engine_facts import EngineFacts
from components.config.entrypoint import DEFAULT_CERT_MANAGER_CHART_RKE
from components.config.model import fail
from components.config.rules import EngineRules
from components.config.settings import ClusterSettings
from components.nodes import INGRESS_CONTROLLER_LABEL
from rke import releases

DEFAULT_KUBERNETES_VERSION = "v1.30.14-rancher1-1"
# The versions the last RKE release ships (reference/rke-releases.json, read by
# rke.releases; the runner checks `rke --version` against the same data). The 1.31/1.32
# builds need RKE's paid extended-life subscription.
KUBERNETES_VERSIONS = releases.supported_kubernetes_versions()
VERSION = re.compile(r"^v1\.\d+\.\d+-rancher\d+-\d+$")  # RKE's version strings


def version_problem(value: str) -> str | None:
    """Why RKE v1 cannot install ``kubernetesVersion: <value>``, or None."""
    if not VERSION.fullmatch(value):
        return f"expected an RKE version such as {DEFAULT_KUBERNETES_VERSION}"
    if value not in KUBERNETES_VERSIONS:
        return (
            f"RKE {releases.latest().name} does not ship {value}; "
            f"expected one of {', '.join(KUBERNETES_VERSIONS)}"
        )
    return None


def ssh_via_problem(site: str, ssh_via: str) -> str | None:
    """Why RKE v1 cannot install nodes reached with ``sshVia: <ssh_via>``, or None.

    ``overlay`` makes a node's cluster.yml ``address`` (where RKE connects) equal its
    ``internal_address`` (the ZeroTier address every node uses). RKE v1 adds kubelet's
    ``--node-ip`` only when the two differ (rancher/rke ``cluster/plan.go``,
    ``BuildKubeletProcess``: ``if host.Address != host.InternalAddress``), so kubelet
    registers the address of the interface holding the default route, a LAN or VPC
    address the other sites cannot reach (logs, exec and metrics fail).
    """
    if ssh_via != "overlay":
        return None
    return (
        "'overlay' makes the node's RKE address equal its internal (overlay) address, and "
        "RKE v1 then starts kubelet without --node-ip, so the node registers a LAN address "
        "other sites cannot reach. Use sshVia: private (the deployer on the site's LAN, "
        f"multicloud:deployer.lan: {site}) or sshVia: public (the nodes have public addresses)"
    )


def check(settings: ClusterSettings) -> None:
    """Refuse what RKE v1 cannot install, naming the key."""
    for name, site in settings.sites.items():
        problem = ssh_via_problem(name, site.ssh_via)
        if problem:
            raise fail(f"sites.{name}.sshVia", f"{problem} (rke engine)")


FACTS = EngineFacts(
    title="RKE",
    install="rke up",
    ssh_use="the readiness gates and rke up",
    api_clients=("rke", "pulumi-kubernetes"),
    # RKE writes the first control plane's address into the kubeconfig (rancher/rke
    # pki/services.go; cluster.yml lists nodes by name)
    kubeconfig_server="name",
    ingress_controller=(
        "RKE ingress-nginx DaemonSet + admission Jobs",
        f"{INGRESS_CONTROLLER_LABEL}=true + node-role.kubernetes.io/worker",
    ),
    ingress_namespace="ingress-nginx",  # RKE v1's nginx ingress addon: every pod there
    ingress_pod_labels=(),
    longhorn_network_policy="rke1",
    cert_manager_chart=DEFAULT_CERT_MANAGER_CHART_RKE,
)
RULES = EngineRules(DEFAULT_KUBERNETES_VERSION, version_problem, check, FACTS)

"""HelmChartConfigs that tune RKE2's packaged charts: pure functions returning manifests.

They are written on every server into ``/var/lib/rancher/rke2/server/manifests/``, which
RKE2's deploy controller applies at start, so canal comes up on the overlay from the
first pod (RKE2 drops K3s's ``flannel-iface`` flag; ``pkg/cli/cmds/server.go``). The
values are those of the charts the pinned release bundles (rancher/rke2-charts:
``rke2-canal`` ``values.yaml`` ``flannel.iface``, rendered into the canal ConfigMap's
``canal_iface`` and flannel's ``FLANNELD_IFACE``; ``rke2-ingress-nginx``
``controller.nodeSelector``).
"""

from __future__ import annotations

from typing import Any

import yaml

from components.nodes import INGRESS_CONTROLLER_LABEL

Manifest = dict[str, Any]
NAMESPACE = "kube-system"  # where RKE2 installs its HelmCharts


def helm_chart_config(chart: str, values: dict[str, Any]) -> Manifest:
    """A ``helm.cattle.io/v1`` HelmChartConfig for RKE2's packaged ``chart``."""
    return {
        "apiVersion": "helm.cattle.io/v1",
        "kind": "HelmChartConfig",
        "metadata": {"name": chart, "namespace": NAMESPACE},
        "spec": {"valuesContent": yaml.safe_dump(values, sort_keys=True)},
    }


def canal_config(interface: str) -> Manifest:
    """rke2-canal with flannel's VXLAN on the ZeroTier interface: pod traffic rides the overlay."""
    if not interface:
        raise ValueError("canal needs the overlay interface name")
    return helm_chart_config("rke2-canal", {"flannel": {"iface": interface}})


def ingress_nginx_config() -> Manifest:
    """rke2-ingress-nginx only on nodes the ingress settings select: worker-role nodes of
    sites with `ingress: public` or `private` (``NodeSpec.labels``)."""
    selector = {"kubernetes.io/os": "linux", INGRESS_CONTROLLER_LABEL: "true"}
    return helm_chart_config("rke2-ingress-nginx", {"controller": {"nodeSelector": selector}})


def server_manifests(interface: str, ingress_enabled: bool) -> dict[str, Manifest]:
    """File name (in the server manifests directory) -> manifest."""
    files = {"multicloud-rke2-canal.yaml": canal_config(interface)}
    if ingress_enabled:
        files["multicloud-rke2-ingress-nginx.yaml"] = ingress_nginx_config()
    return files

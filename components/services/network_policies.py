"""NetworkPolicies for the program's own namespaces: deny by default, then exactly the flows
each workload needs. Pure functions of the cluster's address ranges; no Pulumi here.

Enforced by canal (Calico on flannel's network); flannel ignores NetworkPolicy. Per
namespace (``cloudflare-ddns``, ``example``, ``cert-manager``, ``longhorn-system``) what
goes in and out, and the Kubernetes semantics that shape it:
docs/security.md#what-a-pod-can-reach.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.config.engine_facts import EngineFacts
from components.services import workloads

Manifest = dict[str, Any]

NAMESPACE_NAME = "kubernetes.io/metadata.name"  # set on every namespace since Kubernetes 1.21
API_SERVER_PORT = 6443
CERT_MANAGER_WEBHOOK_PORT = 10250  # jetstack/cert-manager chart v1.16 webhook.securePort
ACME_SOLVER_PORT = 8089  # cert-manager pkg/issuer/acme/http: acmeSolverListenPort
ACME_SOLVER_LABEL = "acme.cert-manager.io/http01-solver"  # pkg/apis/acme/v1: "true" on solver pods
LONGHORN_WEBHOOK_PORTS = (9501, 9502, 9503)  # conversion, admission, recovery backend
NFS_PORT = 2049
LINK_LOCAL = "169.254.0.0/16"  # the cloud metadata service lives here
# Cloudflare's published IPv4 ranges live in one place, reference/cloudflare-ips.json (its
# README row and the file's own "source"/"how_to_recheck" keep the provenance).
CLOUDFLARE_IPS_FILE = Path(__file__).resolve().parents[2] / "reference" / "cloudflare-ips.json"


def cloudflare_ranges(path: Path | None = None) -> tuple[str, ...]:
    """The IPv4 CIDRs the DNS updater may reach over HTTPS, read from ``path`` (default
    ``reference/cloudflare-ips.json``): Cloudflare's published ranges
    (https://www.cloudflare.com/ips-v4, api.cloudflare.com among them; key ``ipv4``) and the
    resolver addresses older favonia/cloudflare-ddns releases used for cloudflare.trace
    (``trace_endpoints.ipv4``), in the file's order.

    Raises ValueError naming the file when a key is missing or an entry is not an IPv4
    network in canonical form (``192.0.2.0/24``, not ``192.0.2.1/24``).
    """
    source = path or CLOUDFLARE_IPS_FILE
    try:
        data = json.loads(source.read_text())
        cidrs = [*data["ipv4"], *data["trace_endpoints"]["ipv4"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"{source}: expected JSON with `ipv4` and `trace_endpoints.ipv4` lists ({err})"
        ) from None
    for cidr in cidrs:
        try:
            ipaddress.IPv4Network(cidr, strict=True)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{source}: {cidr!r} is not an IPv4 network ({err})") from None
    return tuple(cidrs)


@dataclass(frozen=True)
class ClusterRanges:
    """The address ranges policies must name: nodes (the overlay), pods and Services."""

    overlay_cidr: str
    pod_cidr: str
    service_cidr: str

    @property
    def api_service_ip(self) -> str:
        """The ``kubernetes`` Service address: the first of the service range."""
        return str(ipaddress.ip_network(self.service_cidr).network_address + 1)


def _policy(namespace: str, name: str, spec: Manifest) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "pulumi"},
        },
        "spec": spec,
    }


def _ports(protocol: str, *numbers: int) -> list[Manifest]:
    return [{"protocol": protocol, "port": n} for n in numbers]


def default_deny(namespace: str, *, egress: bool = True) -> Manifest:
    """Select every pod of ``namespace``; allow nothing (ingress, and egress unless told not)."""
    types = ["Ingress", "Egress"] if egress else ["Ingress"]
    return _policy(namespace, "default-deny", {"podSelector": {}, "policyTypes": types})


def allow_dns(namespace: str) -> Manifest:
    """Every pod may ask the cluster DNS, UDP and TCP 53 to kube-system (where both engines
    run CoreDNS; nothing else there listens on 53)."""
    peer = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME: "kube-system"}}}
    spec = {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [{"to": [peer], "ports": _ports("UDP", 53) + _ports("TCP", 53)}],
    }
    return _policy(namespace, "allow-dns", spec)


def allow_api_server(namespace: str, ranges: ClusterRanges) -> Manifest:
    """Every pod may reach the Kubernetes API: its endpoints are the control-plane nodes'
    overlay addresses on 6443 (RKE's ``internal_address``); the Service address on 443 is
    listed too for implementations that match before DNAT."""
    spec = {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [
            {
                "to": [{"ipBlock": {"cidr": ranges.overlay_cidr}}],
                "ports": _ports("TCP", API_SERVER_PORT),
            },
            {
                "to": [{"ipBlock": {"cidr": f"{ranges.api_service_ip}/32"}}],
                "ports": _ports("TCP", 443),
            },
        ],
    }
    return _policy(namespace, "allow-api-server", spec)


# Private and shared address space (RFC 1918, RFC 6598): the sites' LANs, routers and
# other tenants' networks live here, never an ACME server or a public API.
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")


def internet(ranges: ClusterRanges, *, private: bool = False) -> Manifest:
    """An ipBlock for "anywhere but this cluster and the link-local metadata range", and
    but private address space unless ``private``."""
    except_ = [ranges.overlay_cidr, ranges.pod_cidr, ranges.service_cidr, LINK_LOCAL]
    if not private:
        except_ += [r for r in PRIVATE_RANGES if r not in except_]
    return {"ipBlock": {"cidr": "0.0.0.0/0", "except": except_}}


def updater_policies(
    ranges: Sequence[str] | None = None,
    nameservers: Sequence[str] = workloads.UPDATER_NAMESERVERS,
) -> list[Manifest]:
    """The DNS updater asks ``nameservers`` (UDP and TCP 53) and talks to Cloudflare's API
    (and its trace endpoint) over HTTPS only: to ``ranges``, by default
    ``cloudflare_ranges()`` (the reference file).

    ``nameservers`` are the resolvers its pod spec names (``dnsPolicy: None``, see
    ``workloads.UPDATER_NAMESERVERS`` for why not the cluster DNS); port 53 anywhere else,
    kube-system's CoreDNS included, stays closed, so the policy and the pod use one path.
    """
    ns = workloads.UPDATER_NAMESPACE
    selector = {"matchLabels": {"app.kubernetes.io/name": workloads.UPDATER_NAME}}
    resolvers = [{"ipBlock": {"cidr": f"{ipaddress.IPv4Address(ip)}/32"}} for ip in nameservers]
    dns = {
        "podSelector": selector,
        "policyTypes": ["Egress"],
        "egress": [{"to": resolvers, "ports": _ports("UDP", 53) + _ports("TCP", 53)}],
    }
    peers = [{"ipBlock": {"cidr": cidr}} for cidr in (ranges or cloudflare_ranges())]
    cloudflare = {
        "podSelector": selector,
        "policyTypes": ["Egress"],
        "egress": [{"to": peers, "ports": _ports("TCP", 443)}],
    }
    return [
        default_deny(ns),
        _policy(ns, "allow-dns", dns),
        _policy(ns, "allow-cloudflare-api", cloudflare),
    ]


def ingress_controller(engine: EngineFacts) -> Manifest:
    """A NetworkPolicy peer for the engine's nginx ingress controller pods."""
    peer: Manifest = {
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME: engine.ingress_namespace}}
    }
    if engine.ingress_pod_labels:
        peer["podSelector"] = {"matchLabels": dict(engine.ingress_pod_labels)}
    return peer


def app_policies(engine: EngineFacts) -> list[Manifest]:
    """The example app and cert-manager's HTTP-01 solver: reached only by the ingress
    controller."""
    ns = workloads.APP_NAMESPACE
    from_ingress = [ingress_controller(engine)]
    app = {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": workloads.APP_NAME}},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": from_ingress, "ports": _ports("TCP", workloads.APP_PORT)}],
    }
    solver = {
        "podSelector": {"matchLabels": {ACME_SOLVER_LABEL: "true"}},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": from_ingress, "ports": _ports("TCP", ACME_SOLVER_PORT)}],
    }
    return [
        default_deny(ns),
        _policy(ns, "allow-from-ingress-nginx", app),
        _policy(ns, "allow-acme-http01-solver", solver),
    ]


def cert_manager_policies(ranges: ClusterRanges, dns01: bool = False) -> list[Manifest]:
    """cert-manager: the API server calls its webhook; the controller talks to ACME.

    With the DNS-01 solver the controller also asks, on port 53, whether the TXT record is
    there (pkg/issuer/acme/dns/util/wait.go ``checkDNSPropagation``): only the public
    resolvers it is given (``workloads.cert_manager_values``), so only those are open;
    HTTP-01 needs no DNS beyond the cluster's."""
    ns = workloads.CERT_MANAGER_NAMESPACE
    webhook = {
        "podSelector": {"matchLabels": {"app.kubernetes.io/component": "webhook"}},
        "policyTypes": ["Ingress"],
        "ingress": [{"ports": _ports("TCP", CERT_MANAGER_WEBHOOK_PORT)}],
    }
    # 443 (ACME, the Cloudflare API) only to public addresses; 80 also to private ones: the
    # HTTP-01 self-check fetches the app's host as the cluster resolves it, which behind
    # split-horizon DNS at home is a LAN address.
    egress = [
        {"to": [internet(ranges)], "ports": _ports("TCP", 443)},
        {"to": [internet(ranges, private=True)], "ports": _ports("TCP", 80)},
    ]
    if dns01:  # the self-check asks these resolvers only (--dns01-recursive-nameservers-only)
        resolvers = [
            {"ipBlock": {"cidr": f"{server.rsplit(':', 1)[0]}/32"}}
            for server in workloads.CERT_MANAGER_DNS01_RESOLVERS
        ]
        egress.append({"to": resolvers, "ports": _ports("UDP", 53) + _ports("TCP", 53)})
    acme = {
        "podSelector": {"matchLabels": {"app.kubernetes.io/component": "controller"}},
        "policyTypes": ["Egress"],
        "egress": egress,
    }
    return [
        default_deny(ns),
        allow_dns(ns),
        allow_api_server(ns, ranges),
        _policy(ns, "allow-webhook-from-api-server", webhook),
        _policy(ns, "allow-acme", acme),
    ]


def namespace_policies(
    ranges: ClusterRanges, engine: EngineFacts, dns01: bool = False
) -> dict[str, list[Manifest]]:
    """Every namespace's policies, by namespace name (which part registers which is up to
    ``cluster_services.py``: a namespace's policies go with the part that owns it).
    ``engine``: whose ingress controller reaches the app; ``dns01``: cert-manager solves
    ACME challenges with DNS-01."""
    return {
        workloads.UPDATER_NAMESPACE: updater_policies(),
        workloads.APP_NAMESPACE: app_policies(engine),
        workloads.CERT_MANAGER_NAMESPACE: cert_manager_policies(ranges, dns01),
        workloads.LONGHORN_NAMESPACE: longhorn_policies(),
    }


def longhorn_policies() -> list[Manifest]:
    """longhorn-system: nothing from other namespaces but the webhooks and RWX NFS."""
    ns = workloads.LONGHORN_NAMESPACE
    same_namespace = {
        "podSelector": {},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {}}]}],
    }
    webhooks = {
        "podSelector": {"matchLabels": {"app": "longhorn-manager"}},
        "policyTypes": ["Ingress"],
        "ingress": [{"ports": _ports("TCP", *LONGHORN_WEBHOOK_PORTS)}],
    }
    nfs = {
        "podSelector": {"matchLabels": {"longhorn.io/component": "share-manager"}},
        "policyTypes": ["Ingress"],
        "ingress": [{"ports": _ports("TCP", NFS_PORT)}],
    }
    return [
        default_deny(ns, egress=False),
        _policy(ns, "allow-same-namespace", same_namespace),
        _policy(ns, "allow-webhooks-from-api-server", webhooks),
        _policy(ns, "allow-rwx-nfs", nfs),
    ]

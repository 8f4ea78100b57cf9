"""In-cluster objects as plain dict manifests: pure functions of the entrypoint settings.

No Pulumi here; ``cluster_services.py`` registers what these return, and the tests validate
them against the Kubernetes 1.30 OpenAPI schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components.config.entrypoint import EntrypointSettings
from components.nodes import PUBLIC_INGRESS_LABEL, ZONE_LABEL

Manifest = dict[str, Any]

INGRESS_CLASS = "nginx"  # the IngressClass RKE v1's ingress-nginx addon creates

UPDATER_NAMESPACE = "cloudflare-ddns"
UPDATER_NAME = "cloudflare-ddns"
UPDATER_SECRET = "cloudflare-ddns-token"
UPDATER_SECRET_KEY = "token"
# The updater resolves api.cloudflare.com through Cloudflare's public resolvers, not the
# cluster DNS: CoreDNS may have run on the dead site, and until its endpoints are dropped (or
# its pods rescheduled, 300 s by default) half the lookups would go nowhere. Failover is the
# moment part of the cluster is gone, so the updater depends on no cluster service. Its
# NetworkPolicy opens port 53 to exactly these and nowhere else
# (network_policies.updater_policies; tests/components/services/test_netpol_connectivity.py checks
# the two agree).
UPDATER_NAMESERVERS = ("1.1.1.1", "1.0.0.1")

CERT_MANAGER_NAMESPACE = "cert-manager"
# The DNS-01 solver's token: a ClusterIssuer reads secrets from cert-manager's "cluster resource
# namespace", the namespace cert-manager runs in unless --cluster-resource-namespace says else.
CERT_MANAGER_TOKEN_SECRET = "cloudflare-api-token"
CERT_MANAGER_TOKEN_KEY = "api-token"
CERT_MANAGER_REPO = "https://charts.jetstack.io"
LONGHORN_NAMESPACE = "longhorn-system"  # the Longhorn chart supports no other namespace
LONGHORN_REPO = "https://charts.longhorn.io"
LONGHORN_DATA_LOCALITY = "disabled"
LONGHORN_ENGINE_REPLICA_TIMEOUT = 30  # seconds; longhorn-manager v1.12.1 allows 8 to 30

APP_NAMESPACE = "example"
APP_NAME = "whoami"
APP_PORT = 8080
APP_TLS_SECRET = "whoami-tls"

ACME_SERVERS = {
    "staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
    "production": "https://acme-v02.api.letsencrypt.org/directory",
}


# The digests of the images the program deploys itself, recorded by `make pin-images`
# (scripts/pin_images.py) from the registry; `digest: null` until then.
IMAGES_FILE = Path(__file__).resolve().parents[2] / "reference" / "images.json"


def image_reference(image: str, path: Path | None = None) -> str:
    """``image`` as the kubelet should pull it: ``name:tag@sha256:...`` when
    ``reference/images.json`` records the tag's digest (the runtime then pulls by digest and
    ignores the tag, distribution/reference's grammar), else as configured."""
    if "@sha256:" in image:
        return image
    pins = json.loads((path or IMAGES_FILE).read_text(encoding="utf-8"))["images"]
    digest = (pins.get(image) or {}).get("digest")
    return f"{image}@{digest}" if digest else image


def issuer_name(which: str) -> str:
    """Name of the ClusterIssuer for ``staging`` or ``production``."""
    return f"letsencrypt-{which}"


def _labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "pulumi"}


def _hardened(uid: int) -> tuple[Manifest, Manifest]:
    """(pod securityContext, container securityContext) for a non-root, read-only container."""
    pod = {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    return pod, container


def namespace(name: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "pulumi"}},
    }


def _token_secret(name: str, namespace: str, key: str, token: str, app: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": _labels(app)},
        "type": "Opaque",
        "stringData": {key: token},
    }


def updater_secret(token: str) -> Manifest:
    """The updater's Cloudflare token; the Pulumi layer passes it as a secret Output."""
    return _token_secret(UPDATER_SECRET, UPDATER_NAMESPACE, UPDATER_SECRET_KEY, token, UPDATER_NAME)


def cert_manager_token_secret(token: str) -> Manifest:
    """cert-manager's zone-scoped Cloudflare token for DNS-01 (a secret Output upstream)."""
    return _token_secret(
        CERT_MANAGER_TOKEN_SECRET,
        CERT_MANAGER_NAMESPACE,
        CERT_MANAGER_TOKEN_KEY,
        token,
        "cert-manager",
    )


def updater_env(settings: EntrypointSettings) -> dict[str, str]:
    """favonia/cloudflare-ddns 1.17.0 settings (README.markdown "All Settings" at v1.17.0; read
    by internal/config/config_read.go ``ReadEnv``; none renamed or deprecated), all as strings.

    PROXIED and TTL are fallbacks (README "DNS and WAF Fallback Values": "The updater preserves
    existing attributes (such as TTL and proxy status) when possible"); Pulumi creates the
    record, so they merely agree with it. UPDATE_ON_START makes a new updater update at once
    (cmd/ddns/ddns.go ``realMain`` runs ``UpdateIPs`` before its first wait), so failover does
    not wait for UPDATE_CRON, which only spaces re-checks and retries. TTL 1 is favonia's
    "automatic", accepted next to 30-86400 (internal/config/env_base.go ``readTTL``).
    cloudflare.trace fetches https://api.cloudflare.com/cdn-cgi/trace
    (internal/provider/cloudflare_trace.go), the API host the NetworkPolicy already allows.
    """
    cf, updater = settings.cloudflare, settings.updater
    if cf is None:
        raise ValueError("the DNS updater needs entrypoint.cloudflare")
    return {
        "DOMAINS": cf.record_name,
        "PROXIED": "true" if cf.proxied else "false",
        "TTL": str(cf.record_ttl),
        "UPDATE_CRON": f"@every {updater.update_interval_seconds}s",
        "UPDATE_ON_START": "true",
        "DELETE_ON_STOP": "false",  # a rescheduled pod must never delete the entrypoint
        "IP4_PROVIDER": "cloudflare.trace",  # the node's egress (SNAT) address = its public one
        "IP6_PROVIDER": "none",  # the cluster publishes IPv4 only
        "EMOJI": "false",
    }


def updater_deployment(settings: EntrypointSettings) -> Manifest:
    """One updater on a public-ingress node; evicted quickly when its node stops reporting.

    Exactly one replica: each updater publishes its own node's address, and favonia has no
    leader election, so two running updaters would take the record in turns. When the node
    dies the NoExecute taint evicts the pod after ``tolerationSeconds``; the ReplicaSet counts
    a pod being deleted as gone (``controller.IsPodActive``) and starts the replacement on
    another public-ingress node at once, even though the dead kubelet never confirms the deletion.
    """
    seconds = settings.updater.toleration_seconds
    # The image's own user (Dockerfile at v1.17.0: ``USER 1000:1000`` on a scratch image); the
    # program writes no file (no os.Create/WriteFile under internal/ or cmd/), so the root
    # filesystem can be read-only, as README's template ("read_only: true", "cap_drop: [all]").
    pod_sc, container_sc = _hardened(1000)
    labels = _labels(UPDATER_NAME)
    env: list[Manifest] = [
        {
            "name": "CLOUDFLARE_API_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": UPDATER_SECRET, "key": UPDATER_SECRET_KEY}},
        }
    ]
    env += [{"name": k, "value": v} for k, v in updater_env(settings).items()]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": UPDATER_NAME, "namespace": UPDATER_NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # never two updaters racing on one record
            "selector": {"matchLabels": {"app.kubernetes.io/name": UPDATER_NAME}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {PUBLIC_INGRESS_LABEL: "true"},
                    "tolerations": [
                        {
                            "key": key,
                            "operator": "Exists",
                            "effect": "NoExecute",
                            "tolerationSeconds": seconds,
                        }
                        for key in (
                            "node.kubernetes.io/not-ready",
                            "node.kubernetes.io/unreachable",
                        )
                    ],
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "dnsPolicy": "None",
                    "dnsConfig": {"nameservers": list(UPDATER_NAMESERVERS)},
                    "terminationGracePeriodSeconds": 10,
                    "securityContext": pod_sc,
                    "containers": [
                        {
                            "name": UPDATER_NAME,
                            "image": image_reference(settings.updater.image),
                            "imagePullPolicy": "IfNotPresent",
                            "env": env,
                            "securityContext": container_sc,
                            "resources": {
                                "requests": {"cpu": "10m", "memory": "16Mi"},
                                "limits": {"cpu": "100m", "memory": "64Mi"},
                            },
                        }
                    ],
                },
            },
        },
    }


def acme_solver(solver: str) -> Manifest:
    """The ClusterIssuers' one solver: HTTP-01 through the nginx ingress class, or DNS-01 in
    the Cloudflare zone with a zone-scoped token (cert-manager's
    ``ACMEIssuerDNS01ProviderCloudflare.apiTokenSecretRef``)."""
    if solver == "http01":
        return {"http01": {"ingress": {"ingressClassName": INGRESS_CLASS}}}
    if solver == "dns01":
        ref = {"name": CERT_MANAGER_TOKEN_SECRET, "key": CERT_MANAGER_TOKEN_KEY}
        return {"dns01": {"cloudflare": {"apiTokenSecretRef": ref}}}
    raise ValueError(f"unknown ACME solver {solver!r}")


def cluster_issuers(email: str, solver: str = "http01") -> list[Manifest]:
    """Let's Encrypt staging and production with one ACME solver (see ``acme_solver``)."""
    return [
        {
            "apiVersion": "cert-manager.io/v1",
            "kind": "ClusterIssuer",
            "metadata": {"name": issuer_name(which)},
            "spec": {
                "acme": {
                    "server": server,
                    "email": email,
                    "privateKeySecretRef": {"name": f"{issuer_name(which)}-account-key"},
                    "solvers": [acme_solver(solver)],
                }
            },
        }
        for which, server in ACME_SERVERS.items()
    ]


def app_manifests(settings: EntrypointSettings) -> list[Manifest]:
    """Deployment, Service and Ingress of the example app at ``settings.app_host``."""
    labels = _labels(APP_NAME)
    selector = {"app.kubernetes.io/name": APP_NAME}
    pod_sc, container_sc = _hardened(65532)
    meta = {"name": APP_NAME, "namespace": APP_NAMESPACE, "labels": labels}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": ZONE_LABEL,
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": selector},
                        }
                    ],
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_sc,
                    "containers": [
                        {
                            "name": APP_NAME,
                            "image": image_reference(settings.app.image),
                            "args": ["--port", str(APP_PORT)],
                            "ports": [{"name": "http", "containerPort": APP_PORT}],
                            "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}},
                            "securityContext": container_sc,
                            "resources": {
                                "requests": {"cpu": "10m", "memory": "16Mi"},
                                "limits": {"cpu": "100m", "memory": "64Mi"},
                            },
                        }
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }
    host = settings.app_host
    ingress_spec: Manifest = {
        "ingressClassName": INGRESS_CLASS,
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": APP_NAME, "port": {"name": "http"}}},
                        }
                    ]
                },
            }
        ],
    }
    ingress_meta = dict(meta)
    if settings.cert_manager.enabled:
        issuer = issuer_name(settings.cert_manager.issuer)
        ingress_meta["annotations"] = {"cert-manager.io/cluster-issuer": issuer}
        ingress_spec["tls"] = [{"hosts": [host], "secretName": APP_TLS_SECRET}]
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": ingress_meta,
        "spec": ingress_spec,
    }
    return [deployment, service, ingress]


def app_url(settings: EntrypointSettings) -> str:
    scheme = "https" if settings.cert_manager.enabled else "http"
    return f"{scheme}://{settings.app_host}/"


# The DNS-01 self-check's resolvers: public recursive resolvers only. By default cert-manager
# (v1.16 to v1.21.1) finds the zone's nameservers through /etc/resolv.conf (the cluster DNS,
# forwarding to the node's resolver) and then asks them directly (pkg/issuer/acme/dns/util/wait.go,
# checkDNSPropagation). Behind split-horizon DNS (home) that finds the LAN's view of the zone,
# which never holds the challenge's TXT record, so the check waits forever. With
# --dns01-recursive-nameservers-only it asks only these (cmd/controller/app/options/options.go;
# entries are <ip>:<port>, internal/apis/config/controller/validation/validation.go).
CERT_MANAGER_DNS01_RESOLVERS = ("1.1.1.1:53", "1.0.0.1:53")


def cert_manager_values(dns01: bool = False) -> Manifest:
    """jetstack/cert-manager >= v1.15 values: install the CRDs, keep them on uninstall; with
    the DNS-01 solver, the controller's self-check asks public resolvers only (the chart
    passes ``extraArgs`` to the controller verbatim, templates/deployment.yaml)."""
    values: Manifest = {"crds": {"enabled": True, "keep": True}}
    if dns01:
        values["extraArgs"] = [
            "--dns01-recursive-nameservers-only=true",
            "--dns01-recursive-nameservers=" + ",".join(CERT_MANAGER_DNS01_RESOLVERS),
        ]
    return values


def longhorn_replicas(settings: EntrypointSettings, zone_count: int) -> int:
    """Configured replicas, else one per zone (at most 3, at least 1).

    ``zone_count``: the sites that have schedulable (worker-role) nodes
    (``components.nodes.schedulable_zones``); Longhorn places replicas only where its
    instance managers run, and sites with masters only carry RKE's NoSchedule/NoExecute
    taints, so they hold no replica.
    """
    return settings.longhorn.replicas or max(1, min(3, zone_count))


def longhorn_values(settings: EntrypointSettings, zone_count: int, policy_type: str) -> Manifest:
    """longhorn chart values: default StorageClass, replicas in distinct zones (= sites).

    Zone anti-affinity is hard whenever every replica can have its own zone with
    schedulable nodes, so a site outage never takes every copy of a volume; with more
    replicas than such zones it must stay soft or the extra replicas could never be
    scheduled. ``zone_count`` as for ``longhorn_replicas``.
    """
    replicas = longhorn_replicas(settings, zone_count)
    return {
        # The chart's own NetworkPolicies (chart/templates/network-policies/ of longhorn 1.12.1):
        # longhorn-manager's API (9500) only from Longhorn's pods, instance-manager and the
        # backing-image components only from each other. "rke1"/"rke2" name the engine's
        # ingress-nginx (it shapes only the UI policy, which needs the chart's ingress).
        # network_policies.longhorn_policies() closes the namespace to other namespaces.
        "networkPolicies": {"enabled": True, "type": policy_type},
        # Data locality stays off: the v1 engine reads round-robin from every replica and
        # writes to all (longhorn-engine v1.8.1 pkg/controller/replicator.go, ReadAt/WriteAt),
        # so a local replica shortens no write and serves only its share of reads, while
        # "best-effort" would copy a whole replica over the WAN after every move of a pod.
        "persistence": {
            "defaultClass": True,
            "defaultClassReplicaCount": replicas,
            "defaultDataLocality": LONGHORN_DATA_LOCALITY,
        },
        # Setting names and allowed values: reference/longhorn-settings.json (longhorn-manager
        # v1.12.1 types/setting.go; a plain value sets every data engine's).
        # docs/architecture.md, "Longhorn across sites", says why.
        "defaultSettings": {
            "defaultReplicaCount": replicas,
            "defaultDataLocality": LONGHORN_DATA_LOCALITY,
            "replicaSoftAntiAffinity": False,  # never two replicas of a volume on one node
            "replicaZoneSoftAntiAffinity": replicas > zone_count,
            "replicaAutoBalance": "best-effort",
            # Kubernetes never force-deletes the pods of a node that is down: they stay
            # Terminating and keep their volumes attached there. Longhorn force-deletes them
            # once their grace period has run out (longhorn-manager v1.12.1
            # controller/kubernetes_pod_controller.go, handlePodDeletionIfNodeDown), so the
            # StatefulSet or Deployment starts them on another site.
            "nodeDownPodDeletionPolicy": "delete-both-statefulset-and-deployment-pod",
            # An I/O a replica has not answered within this is an error and the replica is
            # dropped (rebuilt later, over the WAN). Longhorn's maximum, 30 s, rides out a
            # ZeroTier path change (a path silent for 19 s ranks below every live one).
            "engineReplicaTimeout": LONGHORN_ENGINE_REPLICA_TIMEOUT,
        },
    }

"""Pure tests: entrypoint settings, manifests (kubernetes-validate 1.30), failover bound."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from components.config.entrypoint import (
    NODE_MONITOR_GRACE_SECONDS,
    EntrypointSettings,
    failover_bound_seconds,
)
from components.nodes import PUBLIC_INGRESS_LABEL, ZONE_LABEL
from components.services import workloads

K8S_VERSION = "1.30"
ZONE_ID = "0123456789abcdef0123456789abcdef"


def raw(**overrides: Any) -> dict[str, Any]:
    """A full ``multicloud:entrypoint`` object as it arrives from stack config (JSON)."""
    base: dict[str, Any] = {
        "cloudflare": {"zoneId": ZONE_ID, "zone": "example.com", "recordName": "*.k8s.example.com"},
        "updater": {"enabled": True, "updateIntervalSeconds": 60, "tolerationSeconds": 30},
        "certManager": {"enabled": True, "email": "ops@example.com"},
        "longhorn": {"enabled": True},
        "app": {"enabled": True},
    }
    for key, value in overrides.items():
        base[key] = {**base[key], **value}
    return json.loads(json.dumps(base))


def settings(**overrides: Any) -> EntrypointSettings:
    return EntrypointSettings.model_validate(raw(**overrides))


def all_manifests(s: EntrypointSettings) -> list[dict[str, Any]]:
    namespaces = [
        workloads.namespace(n)
        for n in (
            workloads.UPDATER_NAMESPACE,
            workloads.CERT_MANAGER_NAMESPACE,
            workloads.LONGHORN_NAMESPACE,
            workloads.APP_NAMESPACE,
        )
    ]
    return [
        *namespaces,
        workloads.updater_secret("not-a-real-token"),
        workloads.updater_deployment(s),
        *workloads.app_manifests(s),
    ]


# --- settings ---------------------------------------------------------------------------------


def test_defaults_and_derived_host() -> None:
    s = EntrypointSettings.model_validate({"cloudflare": raw()["cloudflare"]})
    assert s.cloudflare.ttl == 60 and s.cloudflare.proxied is False
    assert s.updater.image == "favonia/cloudflare-ddns:1.15.1"
    assert s.cert_manager.enabled is False  # needs an email, so it is opt-in
    assert s.app_host == "app.k8s.example.com"
    plain = settings(cloudflare={"recordName": "k8s.example.com"})
    assert plain.app_host == "k8s.example.com"  # only the record itself resolves


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cloudflare": {"zoneId": "XYZ"}}, "cloudflare.zoneId"),
        ({"cloudflare": {"recordName": "k8s.example.org"}}, "not within cloudflare.zone"),
        ({"cloudflare": {"recordName": "K8S.example.com."}}, "cloudflare.recordName"),
        ({"cloudflare": {"ttl": 5}}, "ttl"),
        ({"updater": {"image": "favonia/cloudflare-ddns:latest"}}, "updater.image"),
        ({"updater": {"image": "favonia/cloudflare-ddns"}}, "updater.image"),
        ({"updater": {"image": "timothyjmiller/cloudflare-ddns:2.0.0"}}, "updater.image"),
        ({"updater": {"tolerationSeconds": -1}}, "tolerationSeconds"),
        ({"certManager": {"email": None}}, "certManager.email is required"),
        ({"certManager": {"email": "nobody"}}, "certManager.email"),
        ({"certManager": {"chartVersion": "v1.14.5"}}, "v1.15.0 or later"),
        ({"certManager": {"chartVersion": "1.16.3"}}, "certManager.chartVersion"),
        ({"longhorn": {"chartVersion": "latest"}}, "longhorn.chartVersion"),
        ({"app": {"image": "traefik/whoami"}}, "app.image"),
        ({"app": {"host": "www.example.com"}}, "does not resolve through"),
        ({"app": {"colour": "blue"}}, "colour"),
    ],
)
def test_invalid_settings_name_the_field(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(**overrides)


def test_cert_manager_email_not_needed_when_disabled() -> None:
    s = settings(certManager={"enabled": False, "email": None})
    assert s.cert_manager.email is None


# --- Kubernetes objects -----------------------------------------------------------------------


def test_every_builtin_object_validates_strictly_for_1_30() -> None:
    for with_tls in (True, False):
        s = settings(certManager={"enabled": with_tls})
        for manifest in all_manifests(s):
            kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_updater_deployment_is_pinned_hardened_and_quick_to_move() -> None:
    s = settings()
    spec = workloads.updater_deployment(s)["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["nodeSelector"] == {PUBLIC_INGRESS_LABEL: "true"}
    assert {t["key"] for t in pod["tolerations"]} == {
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    }
    assert all(t["effect"] == "NoExecute" for t in pod["tolerations"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert set(container["resources"]) == {"requests", "limits"}
    env = {e["name"]: e for e in container["env"]}
    assert env["CLOUDFLARE_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": workloads.UPDATER_SECRET,
        "key": workloads.UPDATER_SECRET_KEY,
    }
    assert env["DOMAINS"]["value"] == "*.k8s.example.com"
    assert env["IP6_PROVIDER"]["value"] == "none"
    assert env["DELETE_ON_STOP"]["value"] == "false"
    assert env["PROXIED"]["value"] == "false"


def test_secret_carries_the_given_token() -> None:
    secret = workloads.updater_secret("tok")
    assert secret["stringData"] == {workloads.UPDATER_SECRET_KEY: "tok"}
    assert secret["metadata"]["namespace"] == workloads.UPDATER_NAMESPACE


def test_app_ingress_tls_and_issuer() -> None:
    s = settings(certManager={"issuer": "staging"})
    deployment, service, ingress = workloads.app_manifests(s)
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"] == {
        "cert-manager.io/cluster-issuer": "letsencrypt-staging"
    }
    assert ingress["spec"]["tls"] == [
        {"hosts": ["app.k8s.example.com"], "secretName": workloads.APP_TLS_SECRET}
    ]
    assert ingress["spec"]["rules"][0]["host"] == "app.k8s.example.com"
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
    assert spread["topologyKey"] == ZONE_LABEL
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert workloads.app_url(s) == "https://app.k8s.example.com/"

    plain = workloads.app_manifests(settings(certManager={"enabled": False}))[2]
    assert "tls" not in plain["spec"] and "annotations" not in plain["metadata"]


def test_cluster_issuers_shape() -> None:
    """kubernetes-validate has no cert-manager CRD schemas: check the ClusterIssuer by hand."""
    issuers = workloads.cluster_issuers("ops@example.com")
    assert [i["metadata"]["name"] for i in issuers] == [
        "letsencrypt-staging",
        "letsencrypt-production",
    ]
    servers = set()
    for issuer in issuers:
        assert set(issuer) == {"apiVersion", "kind", "metadata", "spec"}
        assert issuer["apiVersion"] == "cert-manager.io/v1"
        assert issuer["kind"] == "ClusterIssuer"
        assert "namespace" not in issuer["metadata"]  # cluster-scoped
        assert set(issuer["spec"]) == {"acme"}
        acme = issuer["spec"]["acme"]
        assert set(acme) == {"server", "email", "privateKeySecretRef", "solvers"}
        assert acme["email"] == "ops@example.com"
        assert acme["server"].startswith("https://acme-") and acme["server"].endswith(
            ".api.letsencrypt.org/directory"
        )
        assert acme["privateKeySecretRef"]["name"].startswith(issuer["metadata"]["name"])
        assert acme["solvers"] == [{"http01": {"ingress": {"ingressClassName": "nginx"}}}]
        servers.add(acme["server"])
    assert len(servers) == 2
    # The metadata part is plain ObjectMeta: validate it through a built-in kind.
    for issuer in issuers:
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": issuer["metadata"]}
        kubernetes_validate.validate(cm, K8S_VERSION, strict=True)


def test_chart_values() -> None:
    assert workloads.cert_manager_values() == {"crds": {"enabled": True, "keep": True}}
    three = workloads.longhorn_values(settings(), zone_count=3)
    assert three["persistence"] == {"defaultClass": True, "defaultClassReplicaCount": 3}
    assert three["defaultSettings"] == {
        "defaultReplicaCount": 3,
        "replicaZoneSoftAntiAffinity": False,
        "replicaAutoBalance": "best-effort",
    }
    home = workloads.longhorn_values(settings(), zone_count=1)
    assert home["defaultSettings"]["defaultReplicaCount"] == 1
    more = workloads.longhorn_values(settings(longhorn={"replicas": 3}), zone_count=2)
    assert more["defaultSettings"]["replicaZoneSoftAntiAffinity"] is True


# --- failover bound ---------------------------------------------------------------------------


def test_failover_bound_matches_the_updater_manifest() -> None:
    s = settings(
        cloudflare={"ttl": 120},
        updater={"tolerationSeconds": 25, "updateIntervalSeconds": 45},
    )
    pod = workloads.updater_deployment(s)["spec"]["template"]["spec"]
    assert [t["tolerationSeconds"] for t in pod["tolerations"]] == [25, 25]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["UPDATE_CRON"] == "@every 45s"
    assert env["TTL"] == "120"
    assert NODE_MONITOR_GRACE_SECONDS == 40
    assert failover_bound_seconds(s) == 40 + 25 + 45 + 120 == 230

    default = settings()
    assert failover_bound_seconds(default) == 40 + 30 + 60 + 60
    proxied = settings(cloudflare={"proxied": True})
    assert failover_bound_seconds(proxied) == 40 + 30 + 60


EXAMPLE_STACK_YAML = """
config:
  multicloud:entrypoint:
    cloudflare:
      zoneId: "0123456789abcdef0123456789abcdef"
      zone: example.com
      recordName: "*.k8s.example.com"
      ttl: 60
      proxied: false
    updater:
      enabled: true
      image: favonia/cloudflare-ddns:1.15.1
      updateIntervalSeconds: 60
      tolerationSeconds: 30
    certManager:
      enabled: true
      chartVersion: v1.16.3
      email: ops@example.com
      issuer: production
    longhorn:
      enabled: true
      chartVersion: 1.8.1
    app:
      enabled: true
      image: traefik/whoami:v1.10.3
"""


def test_example_stack_block_validates() -> None:
    value = yaml.safe_load(EXAMPLE_STACK_YAML)["config"]["multicloud:entrypoint"]
    s = EntrypointSettings.model_validate(json.loads(json.dumps(value)))
    assert s == settings()
    assert failover_bound_seconds(s) == 190

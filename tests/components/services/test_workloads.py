"""Pure tests: entrypoint settings, manifests (kubernetes-validate 1.30), the failover budget."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from components.config import ConfigError, raw_values, stack_failover_budget
from components.config.cluster import (
    HTTP2_DEFAULT_DETECTION_SECONDS,
    KUBELET_HEARTBEAT_SECONDS,
    KUBELET_HTTP2_ENV,
    RkeSettings,
)
from components.config.entrypoint import EntrypointSettings
from components.config.failover import (
    CONTROLLER_TAKEOVER_SECONDS,
    NODE_MONITOR_PASSES,
    NODE_MONITOR_PERIOD_SECONDS,
    STAGGER_SECONDS,
    IngressSite,
    failover_budget,
)
from components.nodes import PUBLIC_INGRESS_LABEL, ZONE_LABEL
from components.services import workloads
from engines import check_stack
from tests.support.program_runs import edited

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
        workloads.cert_manager_token_secret("not-a-real-token"),
        workloads.updater_deployment(s),
        *workloads.app_manifests(s),
    ]


# --- settings ---------------------------------------------------------------------------------


def test_defaults_and_derived_host() -> None:
    s = EntrypointSettings.model_validate({"cloudflare": raw()["cloudflare"]})
    assert s.cloudflare is not None
    assert s.cloudflare.record_ttl == 60 and s.cloudflare.proxied is False
    assert s.failover_bound_seconds == 90 and s.cert_manager.solver == "http01"
    assert s.updater.image == "favonia/cloudflare-ddns:1.17.0"
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
        ({"cloudflare": {"ttl": 5}}, "cloudflare.ttl"),
        ({"cloudflare": {"ttl": 1}}, "write 300"),
        ({"cloudflare": {"proxied": True, "ttl": 60}}, "a proxied record's TTL is Cloudflare's"),
        ({"cloudflare": {"edgePropagationSeconds": -1}}, "cloudflare.edgePropagationSeconds"),
        ({"updater": {"startupSeconds": 0}}, "updater.startupSeconds"),
        ({"updater": {"updateIntervalSeconds": 5}}, "updater.updateIntervalSeconds"),
        ({"certManager": {"solver": "tls-alpn-01"}}, "certManager.solver"),
        ({"updater": {"image": "favonia/cloudflare-ddns:latest"}}, "updater.image"),
        ({"updater": {"image": "favonia/cloudflare-ddns"}}, "updater.image"),
        ({"updater": {"image": "timothyjmiller/cloudflare-ddns:2.0.0"}}, "updater.image"),
        # 1.14 ignores CLOUDFLARE_API_TOKEN (README "All Settings": CLOUDFLARE_* since 1.15.0)
        ({"updater": {"image": "favonia/cloudflare-ddns:1.14.2"}}, "1.15.0 or a later 1.x"),
        ({"updater": {"image": "favonia/cloudflare-ddns:2.0.0"}}, "1.15.0 or a later 1.x"),
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


@pytest.mark.parametrize(
    "image",
    [
        "favonia/cloudflare-ddns:1.15.0",
        "favonia/cloudflare-ddns:1.17.0",
        "ghcr.io/favonia/cloudflare-ddns:v1.18.2",
        "favonia/cloudflare-ddns:1.17.0@sha256:" + "0" * 64,
    ],
)
def test_updater_images_of_the_checked_line_are_accepted(image: str) -> None:
    assert settings(updater={"image": image}).updater.image == image


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
    # resolves api.cloudflare.com without the cluster DNS, which may have died with the node
    assert pod["dnsPolicy"] == "None"
    assert pod["dnsConfig"] == {"nameservers": ["1.1.1.1", "1.0.0.1"]}
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
    for issuer in workloads.cluster_issuers("ops@example.com", "dns01"):
        assert issuer["spec"]["acme"]["solvers"] == [
            {
                "dns01": {
                    "cloudflare": {
                        "apiTokenSecretRef": {"name": "cloudflare-api-token", "key": "api-token"}
                    }
                }
            }
        ]
    secret = workloads.cert_manager_token_secret("tok")
    assert secret["metadata"]["namespace"] == workloads.CERT_MANAGER_NAMESPACE == "cert-manager"
    assert secret["stringData"] == {"api-token": "tok"}
    # The metadata part is plain ObjectMeta: validate it through a built-in kind.
    for issuer in issuers:
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": issuer["metadata"]}
        kubernetes_validate.validate(cm, K8S_VERSION, strict=True)


def test_chart_values() -> None:
    assert workloads.cert_manager_values() == {"crds": {"enabled": True, "keep": True}}
    assert "extraArgs" in workloads.cert_manager_values(dns01=True)  # test_cluster_services_values
    three = workloads.longhorn_values(settings(), zone_count=3, policy_type="rke1")
    assert three["persistence"]["defaultClass"] is True
    assert three["persistence"]["defaultClassReplicaCount"] == 3
    assert three["defaultSettings"]["defaultReplicaCount"] == 3
    assert three["defaultSettings"]["replicaZoneSoftAntiAffinity"] is False
    home = workloads.longhorn_values(settings(), zone_count=1, policy_type="rke1")
    assert home["defaultSettings"]["defaultReplicaCount"] == 1
    more = workloads.longhorn_values(
        settings(longhorn={"replicas": 3}), zone_count=2, policy_type="rke1"
    )
    assert more["defaultSettings"]["replicaZoneSoftAntiAffinity"] is True


# --- the failover budget ----------------------------------------------------------------------

TWO_SITES = (IngressSite("ramnode", 2, True), IngressSite("digitalocean", 3, False))


def test_failover_budget_terms_follow_the_config_and_the_manifest() -> None:
    s = settings(
        cloudflare={"ttl": 120},
        updater={"tolerationSeconds": 25, "updateIntervalSeconds": 45, "startupSeconds": 15},
    )
    pod = workloads.updater_deployment(s)["spec"]["template"]["spec"]
    assert [t["tolerationSeconds"] for t in pod["tolerations"]] == [25, 25]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert (env["UPDATE_CRON"], env["UPDATE_ON_START"], env["TTL"]) == ("@every 45s", "true", "120")

    ramnode = failover_budget(s, grace_seconds=40, eviction_rate=0.1, sites=TWO_SITES[:1] * 2)
    assert [t.seconds for t in ramnode.terms] == [17, 40, 10, 10, 25, 15, 120]
    assert CONTROLLER_TAKEOVER_SECONDS == 15 + 2
    assert NODE_MONITOR_PASSES * NODE_MONITOR_PERIOD_SECONDS == 10
    assert ramnode.total == 237 and ramnode.retry_seconds == 45
    sources = [t.source for t in ramnode.terms]
    assert sources[1:] == [
        "rke.nodeMonitorGracePeriodSeconds",
        "kube-controller-manager --node-monitor-period 5 s",
        "rke.nodeEvictionRate",
        "entrypoint.updater.tolerationSeconds",
        "entrypoint.updater.startupSeconds",
        "entrypoint.cloudflare.ttl",
    ]
    # no control plane at the site: no leader to lose; three nodes: two wait in the taint queue
    do = failover_budget(s, grace_seconds=40, eviction_rate=0.1, sites=TWO_SITES[1:] * 2)
    assert [t.seconds for t in do.terms] == [40, 10, 20, 25, 15, 120]
    # the worst site is the budget
    both = failover_budget(s, grace_seconds=40, eviction_rate=0.1, sites=TWO_SITES)
    assert (both.site, both.total) == ("ramnode", 237)
    assert (
        failover_budget(s, grace_seconds=40, eviction_rate=0.3, sites=TWO_SITES).terms[3].seconds
        == 4
    )
    slow = [IngressSite("x", 10, True)] * 2  # 9 / 0.009 is 1000.0000000000001 in floats
    assert (
        failover_budget(s, grace_seconds=40, eviction_rate=0.009, sites=slow).terms[3].seconds
        == 1000
    )


def test_a_big_site_without_a_master_waits_for_its_last_node() -> None:
    """Four nodes or more without a control plane: the zone passes through "partially
    disrupted", where tainting stops, until the last node's grace ran out."""
    assert STAGGER_SECONDS == KUBELET_HEARTBEAT_SECONDS + NODE_MONITOR_PERIOD_SECONDS
    s = settings()
    sites = [IngressSite("a", 4, False), IngressSite("b", 3, False)]
    big = failover_budget(s, grace_seconds=30, eviction_rate=1, sites=sites)
    assert big.site == "a"
    assert [t.seconds for t in big.terms] == [15, 30, 10, 3, 30, 20, 60]
    small = failover_budget(s, grace_seconds=30, eviction_rate=1, sites=sites[1:] * 2)
    assert [t.seconds for t in small.terms] == [30, 10, 2, 30, 20, 60]
    # with a master the leader takeover (17 s, grace restarted for all nodes) is the worst case
    master = failover_budget(
        s, grace_seconds=30, eviction_rate=1, sites=[IngressSite("c", 4, True)] * 2
    )
    assert [t.seconds for t in master.terms][:1] == [CONTROLLER_TAKEOVER_SECONDS]


def test_proxied_budget_waits_for_the_edge_not_for_resolver_caches() -> None:
    proxied = settings(cloudflare={"proxied": True, "edgePropagationSeconds": 7})
    budget = failover_budget(proxied, grace_seconds=30, eviction_rate=1, sites=TWO_SITES)
    last = budget.terms[-1]
    assert (last.seconds, last.source) == (7, "entrypoint.cloudflare.edgePropagationSeconds")
    assert budget.total == 17 + 30 + 10 + 1 + 30 + 20 + 7
    text = "\n".join(budget.lines())
    assert text.startswith("worst case if site 'ramnode' goes dark: 115 s")
    assert "each failed updater attempt adds 60 s" in text


def test_no_budget_without_somewhere_to_move() -> None:
    with pytest.raises(ValueError, match="only one site has public-ingress nodes \\('ramnode'\\)"):
        failover_budget(settings(), grace_seconds=40, eviction_rate=0.1, sites=TWO_SITES[:1])
    off = settings(updater={"enabled": False})
    with pytest.raises(ValueError, match="nothing moves"):
        failover_budget(off, grace_seconds=40, eviction_rate=0.1, sites=TWO_SITES)


def _parse(stack: str, edit: Any = lambda values: None) -> Any:
    config, _ = edited(stack, edit)
    return check_stack(raw_values(config))[0]


def test_committed_stacks_and_the_bound() -> None:
    prod = _parse("prod")
    budget = stack_failover_budget(prod)
    entry = prod.settings.entrypoint
    assert entry is not None and entry.failover_bound_seconds == 90
    assert budget.total <= entry.failover_bound_seconds
    # sites in name order, as the CLI passes them (scripts/stack_yaml.py); README quotes 88
    assert budget.total == 88 and budget.site == "digitalocean"
    home = _parse("home")
    assert home.settings.entrypoint is not None and home.settings.entrypoint.cloudflare is None
    with pytest.raises(ValueError, match="nothing moves"):
        stack_failover_budget(home)


DELETE = object()


def _set(path: str, value: Any) -> Any:
    """An edit of the parsed stack values: ``path`` (dotted, top key first) set to ``value``,
    or removed when ``value`` is DELETE."""

    def edit(values: dict[str, Any]) -> None:
        key, *rest = path.split(".")
        node = values[f"multicloud:{key}"]
        for part in rest[:-1]:
            node = node.setdefault(part, {})
        if value is DELETE:
            node.pop(rest[-1], None)
        else:
            node[rest[-1]] = value

    return edit


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        # over the bound: the message names the bound and every key that feeds it
        (
            [_set("entrypoint.updater.tolerationSeconds", 30)],
            [
                "multicloud:entrypoint.failoverBoundSeconds: the worst case for traffic to "
                "leave site 'digitalocean' is 118 s, over the bound of 90 s",
                "(entrypoint.updater.tolerationSeconds)",
                "(rke.nodeMonitorGracePeriodSeconds)",
                "(rke.nodeEvictionRate)",
                "(entrypoint.updater.startupSeconds)",
                "(entrypoint.cloudflare.edgePropagationSeconds)",
            ],
        ),
        (
            [_set("entrypoint.cloudflare.proxied", False)],
            ["is 138 s, over the bound of 90 s", "60 s  resolvers' cached answers expire"],
        ),
        (
            [_set("entrypoint.cloudflare.proxied", False), _set("entrypoint.cloudflare.ttl", 3600)],
            ["is 3678 s", "(entrypoint.cloudflare.ttl)"],
        ),
        ([_set("entrypoint.failoverBoundSeconds", 60)], ["over the bound of 60 s"]),
        (
            [_set("sites.digitalocean.ingress", "none")],
            [
                "multicloud:entrypoint.failoverBoundSeconds: only one site has "
                "public-ingress nodes ('ramnode')",
                "set entrypoint.failoverBoundSeconds: null",
            ],
        ),
        (
            [_set("entrypoint.cloudflare.ttl", 60)],
            ["multicloud:entrypoint.cloudflare.ttl: a proxied record's TTL is Cloudflare's"],
        ),
        (
            [_set("rke.nodeMonitorGracePeriodSeconds", 20)],
            ["multicloud:rke.nodeMonitorGracePeriodSeconds: nodeMonitorGracePeriodSeconds: 20"],
        ),
        ([_set("rke.nodeEvictionRate", 0)], ["multicloud:rke.nodeEvictionRate"]),
        (
            [_set("entrypoint.cloudflare", DELETE), _set("entrypoint.updater.enabled", False)],
            ["multicloud:entrypoint: certManager.solver: dns01 needs cloudflare"],
        ),
    ],
)
def test_bad_entrypoint_configs_name_their_keys(edits: list[Any], expected: list[str]) -> None:
    def edit(values: dict[str, Any]) -> None:
        for one in edits:
            one(values)

    with pytest.raises(ConfigError) as err:
        _parse("prod", edit)
    for text in expected:
        assert text in str(err.value)


def test_the_bound_can_be_lifted_and_a_scaled_site_waits_longer_in_the_taint_queue() -> None:
    lifted = _parse("prod", _set("entrypoint.failoverBoundSeconds", None))
    assert lifted.settings.entrypoint is not None
    assert lifted.settings.entrypoint.failover_bound_seconds is None
    assert stack_failover_budget(_parse("prod", _set("sites.ramnode.workers", 3))).total == 90
    with pytest.raises(ConfigError, match="is 91 s, over the bound of 90 s"):
        _parse("prod", _set("sites.ramnode.workers", 4))


def test_grace_period_renders_into_cluster_yml_args_and_kubelet_env() -> None:
    from rke.cluster_yml import _controller_args, _kubelet

    short = RkeSettings.model_validate({"nodeMonitorGracePeriodSeconds": 30, "nodeEvictionRate": 1})
    assert _controller_args(short) == {
        "node-monitor-grace-period": "30s",
        "node-eviction-rate": "1",
    }
    assert _kubelet(short)["extra_env"] == [
        "HTTP2_PING_TIMEOUT_SECONDS=5",
        "HTTP2_READ_IDLE_TIMEOUT_SECONDS=10",
    ]
    default = RkeSettings()
    assert _controller_args(default) == {
        "node-monitor-grace-period": "40s",
        "node-eviction-rate": "0.1",
    }
    assert "extra_env" in _kubelet(default)  # 40 s is not above client-go's 45 s either
    assert "extra_env" not in _kubelet(
        RkeSettings.model_validate({"nodeMonitorGracePeriodSeconds": 50})
    )
    # the tightened check plus one heartbeat still fits in the shortest grace accepted
    assert sum(KUBELET_HTTP2_ENV.values()) + 10 < 30 < HTTP2_DEFAULT_DETECTION_SECONDS


EXAMPLE_STACK_YAML = """
config:
  multicloud:entrypoint:
    failoverBoundSeconds: 90
    cloudflare:
      zoneId: "0123456789abcdef0123456789abcdef"
      zone: example.com
      recordName: "*.k8s.example.com"
      proxied: false
      ttl: 60
    updater:
      enabled: true
      image: favonia/cloudflare-ddns:1.17.0
      updateIntervalSeconds: 60
      tolerationSeconds: 30
      startupSeconds: 20
    certManager:
      enabled: true
      email: ops@example.com
      issuer: production
      solver: http01
    longhorn:
      enabled: true
    app:
      enabled: true
      image: traefik/whoami:v1.10.3
"""


def test_example_stack_block_validates() -> None:
    value = yaml.safe_load(EXAMPLE_STACK_YAML)["config"]["multicloud:entrypoint"]
    s = EntrypointSettings.model_validate(json.loads(json.dumps(value)))
    assert s.model_dump(exclude={"cloudflare"}) == settings().model_dump(exclude={"cloudflare"})
    assert s.cloudflare is not None and s.cloudflare.record_ttl == 60

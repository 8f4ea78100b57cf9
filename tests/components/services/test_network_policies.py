"""NetworkPolicies: valid for Kubernetes 1.30 (kubernetes-validate), and, evaluated with the
NetworkPolicy semantics of the Kubernetes docs, they allow exactly the flows each workload
needs: a table of flows, each allowed or denied."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

import kubernetes_validate
import pytest

from components.services import network_policies as np
from components.services import workloads
from engines import RULES
from tests.components.services.test_workloads import K8S_VERSION, settings
from tests.support import reference

RKE, RKE2 = RULES["rke"].facts, RULES["rke2"].facts
RANGES = np.ClusterRanges("10.147.0.0/16", "10.42.0.0/16", "10.43.0.0/16")
POLICIES = [p for ps in np.namespace_policies(RANGES, RKE).values() for p in ps]


def test_every_policy_validates_strictly_for_1_30() -> None:
    assert len(POLICIES) == 15
    for policy in POLICIES:
        kubernetes_validate.validate(policy, K8S_VERSION, strict=True)
    names = [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in POLICIES]
    assert len(set(names)) == len(names)


def test_every_namespace_of_the_program_is_covered_and_denies_by_default() -> None:
    by_ns = np.namespace_policies(RANGES, RKE)
    assert set(by_ns) == {
        workloads.UPDATER_NAMESPACE,
        workloads.APP_NAMESPACE,
        workloads.CERT_MANAGER_NAMESPACE,
        workloads.LONGHORN_NAMESPACE,
    }
    for ns, policies in by_ns.items():
        deny = next(p for p in policies if p["metadata"]["name"] == "default-deny")
        assert deny["spec"]["podSelector"] == {} and "ingress" not in deny["spec"], ns
        assert "Ingress" in deny["spec"]["policyTypes"], ns


def _updater_cidrs(policies: list[dict[str, Any]]) -> list[str]:
    api = next(p for p in policies if p["metadata"]["name"] == "allow-cloudflare-api")
    return [peer["ipBlock"]["cidr"] for rule in api["spec"]["egress"] for peer in rule["to"]]


def test_the_updater_policy_allows_exactly_the_reference_ranges() -> None:
    ref = reference.load("cloudflare-ips.json")
    policies = np.namespace_policies(RANGES, RKE)[workloads.UPDATER_NAMESPACE]
    assert _updater_cidrs(policies) == ref["ipv4"] + ref["trace_endpoints"]["ipv4"]


def test_the_ranges_come_from_the_reference_file(tmp_path: Any, monkeypatch: Any) -> None:
    # one source of truth: a range added to (or removed from) the file reaches the policy
    ref = reference.load("cloudflare-ips.json")
    changed = {**ref, "ipv4": [*ref["ipv4"][1:], "203.0.113.0/24"]}
    path = tmp_path / "cloudflare-ips.json"
    path.write_text(json.dumps(changed))
    monkeypatch.setattr(np, "CLOUDFLARE_IPS_FILE", path)
    cidrs = _updater_cidrs(np.updater_policies())
    assert "203.0.113.0/24" in cidrs and ref["ipv4"][0] not in cidrs
    path.write_text(json.dumps({**ref, "ipv4": ["203.0.113.1/24"]}))
    with pytest.raises(ValueError, match=r"cloudflare-ips\.json.*203\.0\.113\.1/24"):
        np.updater_policies()


def test_longhorn_chart_policies_are_on() -> None:
    values = workloads.longhorn_values(settings(), zone_count=3, policy_type="rke1")
    assert values["networkPolicies"] == {"enabled": True, "type": "rke1"}


# --- a small NetworkPolicy evaluator ---------------------------------------------------------

NAMESPACE_LABELS = {
    ns: {np.NAMESPACE_NAME: ns}
    for ns in (
        "kube-system", "ingress-nginx", "default", workloads.UPDATER_NAMESPACE,
        workloads.APP_NAMESPACE, workloads.CERT_MANAGER_NAMESPACE, workloads.LONGHORN_NAMESPACE,
    )
}  # fmt: skip


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    ip: str = "10.42.1.7"


@dataclass(frozen=True)
class Host:
    """Anything that is not a pod: an address on a node, the internet."""

    ip: str


Peer = Pod | Host


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, selector  # all our policies need
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _peer_matches(rule_peer: dict[str, Any], peer: Peer, policy_ns: str) -> bool:
    if "ipBlock" in rule_peer:
        block = rule_peer["ipBlock"]
        ip = ipaddress.ip_address(peer.ip)
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except", [])
        )
    if not isinstance(peer, Pod):
        return False
    if "namespaceSelector" in rule_peer:
        if not _selects(rule_peer["namespaceSelector"], NAMESPACE_LABELS[peer.namespace]):
            return False
    elif peer.namespace != policy_ns:
        return False
    return _selects(rule_peer.get("podSelector", {}), peer.labels)


def _port_matches(ports: list[dict[str, Any]] | None, protocol: str, port: int) -> bool:
    return not ports or any(p["protocol"] == protocol and p["port"] == port for p in ports)


def allowed(
    policies: list[dict[str, Any]], src: Peer, dst: Peer, port: int, proto: str = "TCP"
) -> bool:
    """Whether ``src`` may open ``proto``/``port`` to ``dst``: egress of ``src`` (if a pod)
    and ingress of ``dst`` (if a pod) must both allow it."""

    def side(pod: Pod, direction: str, other: Peer) -> bool:
        key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        selecting = [
            p for p in policies
            if p["metadata"]["namespace"] == pod.namespace
            and direction in p["spec"]["policyTypes"]
            and _selects(p["spec"]["podSelector"], pod.labels)
        ]  # fmt: skip
        if not selecting:
            return True  # not isolated in this direction
        for policy in selecting:
            for rule in policy["spec"].get(key, []):
                peers = rule.get(peers_key)
                peer_ok = not peers or any(
                    _peer_matches(r, other, policy["metadata"]["namespace"]) for r in peers
                )
                if peer_ok and _port_matches(rule.get("ports"), proto, port):
                    return True
        return False

    out = side(src, "Egress", dst) if isinstance(src, Pod) else True
    into = side(dst, "Ingress", src) if isinstance(dst, Pod) else True
    return out and into


UPDATER = Pod(workloads.UPDATER_NAMESPACE, {"app.kubernetes.io/name": workloads.UPDATER_NAME})
APP = Pod(workloads.APP_NAMESPACE, {"app.kubernetes.io/name": workloads.APP_NAME}, "10.42.2.9")
SOLVER = Pod(workloads.APP_NAMESPACE, {np.ACME_SOLVER_LABEL: "true"}, "10.42.2.10")
NGINX = Pod("ingress-nginx", {"app": "ingress-nginx"}, "10.42.3.4")
COREDNS = Pod("kube-system", {"k8s-app": "kube-dns"}, "10.42.0.3")
OTHER = Pod("default", {"app": "anything"}, "10.42.5.5")
CM = workloads.CERT_MANAGER_NAMESPACE
CONTROLLER = Pod(CM, {"app.kubernetes.io/component": "controller"}, "10.42.1.20")
WEBHOOK = Pod(CM, {"app.kubernetes.io/component": "webhook"}, "10.42.1.21")
CAINJECTOR = Pod(CM, {"app.kubernetes.io/component": "cainjector"}, "10.42.1.22")
LH = workloads.LONGHORN_NAMESPACE
UI = Pod(LH, {"app": "longhorn-ui"}, "10.42.4.1")
MANAGER = Pod(LH, {"app": "longhorn-manager"}, "10.42.4.2")
INSTANCE_MANAGER = Pod(LH, {"longhorn.io/component": "instance-manager"}, "10.42.4.3")
SHARE_MANAGER = Pod(LH, {"longhorn.io/component": "share-manager"}, "10.42.4.4")
API_SERVER = Host("10.147.1.10")  # a control-plane node's overlay address
KUBERNETES_SVC = Host("10.43.0.1")
CLOUDFLARE_API = Host("104.19.192.7")
ACME = Host("172.65.32.248")
ELSEWHERE = Host("8.8.8.8")
METADATA = Host("169.254.169.254")
NODE_TUNNEL = Host("10.42.7.0")  # a remote node's flannel.1 address

FLOWS = [
    ("updater asks CoreDNS, which it does not use", UPDATER, COREDNS, 53, "UDP", False),
    ("updater asks another public resolver", UPDATER, Host("8.8.8.8"), 53, "UDP", False),
    ("updater calls the Cloudflare API", UPDATER, CLOUDFLARE_API, 443, "TCP", True),
    ("updater trace via 1.1.1.1", UPDATER, Host("1.1.1.1"), 443, "TCP", True),
    ("updater plain HTTP to Cloudflare", UPDATER, CLOUDFLARE_API, 80, "TCP", False),
    ("updater to elsewhere", UPDATER, ELSEWHERE, 443, "TCP", False),
    ("updater to the API server", UPDATER, API_SERVER, 6443, "TCP", False),
    ("updater to the metadata service", UPDATER, METADATA, 80, "TCP", False),
    ("anyone into the updater", OTHER, UPDATER, 8080, "TCP", False),
    ("ingress-nginx to the app", NGINX, APP, workloads.APP_PORT, "TCP", True),
    ("ingress-nginx to the HTTP-01 solver", NGINX, SOLVER, np.ACME_SOLVER_PORT, "TCP", True),
    ("ingress-nginx to the app, other port", NGINX, APP, 9090, "TCP", False),
    ("another namespace to the app", OTHER, APP, workloads.APP_PORT, "TCP", False),
    ("the app resolves names", APP, COREDNS, 53, "UDP", False),
    ("the app calls out", APP, ELSEWHERE, 443, "TCP", False),
    ("the app to Longhorn's UI", APP, UI, 8000, "TCP", False),
    ("the app to Longhorn's manager", APP, MANAGER, 9500, "TCP", False),
    ("the app to the metadata service", APP, METADATA, 80, "TCP", False),
    ("cert-manager to ACME", CONTROLLER, ACME, 443, "TCP", True),
    ("cert-manager HTTP-01 self-check", CONTROLLER, ELSEWHERE, 80, "TCP", True),
    ("cert-manager to the API server", CONTROLLER, API_SERVER, 6443, "TCP", True),
    ("cert-manager to the kubernetes Service", CAINJECTOR, KUBERNETES_SVC, 443, "TCP", True),
    ("cert-manager resolves names", CONTROLLER, COREDNS, 53, "UDP", True),
    ("cert-manager to a kubelet", CONTROLLER, API_SERVER, 10250, "TCP", False),
    ("cert-manager to a pod on 443", CONTROLLER, OTHER, 443, "TCP", False),
    ("cert-manager to the metadata service", CONTROLLER, METADATA, 80, "TCP", False),
    ("cainjector to the internet", CAINJECTOR, ACME, 443, "TCP", False),
    ("API server to the cert-manager webhook", API_SERVER, WEBHOOK, 10250, "TCP", True),
    ("anyone to the webhook's metrics", OTHER, WEBHOOK, 9402, "TCP", False),
    ("another namespace to the controller", OTHER, CONTROLLER, 9402, "TCP", False),
    ("another namespace to Longhorn's UI", OTHER, UI, 8000, "TCP", False),
    ("another namespace to Longhorn's manager", OTHER, MANAGER, 9500, "TCP", False),
    ("another namespace to an instance-manager", OTHER, INSTANCE_MANAGER, 8500, "TCP", False),
    ("a node's tunnel address to Longhorn's manager", NODE_TUNNEL, MANAGER, 9500, "TCP", False),
    ("API server to Longhorn's admission webhook", API_SERVER, MANAGER, 9502, "TCP", True),
    ("API server to Longhorn's conversion webhook", API_SERVER, MANAGER, 9501, "TCP", True),
    ("a node mounting an RWX volume", NODE_TUNNEL, SHARE_MANAGER, 2049, "TCP", True),
    ("Longhorn's UI to its manager", UI, MANAGER, 9500, "TCP", True),
    ("manager to an instance-manager", MANAGER, INSTANCE_MANAGER, 8500, "TCP", True),
    ("Longhorn to a backup target", MANAGER, ELSEWHERE, 443, "TCP", True),
]


@pytest.mark.parametrize(
    ("src", "dst", "port", "proto", "expected"),
    [f[1:] for f in FLOWS],
    ids=[f[0] for f in FLOWS],
)
def test_flows(src: Peer, dst: Peer, port: int, proto: str, expected: bool) -> None:
    assert allowed(POLICIES, src, dst, port, proto) is expected


def test_the_updater_may_ask_the_resolvers_its_pod_spec_names() -> None:
    # The resolvers come from the pod spec the program renders (dnsPolicy None, so only
    # dnsConfig.nameservers are asked), not from the policy: the two must agree.
    pod = workloads.updater_deployment(settings())["spec"]["template"]["spec"]
    assert pod["dnsPolicy"] == "None"
    nameservers = pod["dnsConfig"]["nameservers"]
    assert nameservers
    for ip in nameservers:
        for proto in ("UDP", "TCP"):
            assert allowed(POLICIES, UPDATER, Host(ip), 53, proto), (ip, proto)
        assert not allowed(POLICIES, UPDATER, Host(ip), 80, "TCP"), ip
        assert not allowed(POLICIES, APP, Host(ip), 53, "UDP"), ip


def test_dns01_lets_the_controller_ask_its_public_resolvers_and_nothing_more() -> None:
    # --dns01-recursive-nameservers-only: the self-check asks these resolvers and no other
    # (split-horizon resolvers on the LAN, the zone's own nameservers).
    dns01 = [p for ps in np.namespace_policies(RANGES, RKE, dns01=True).values() for p in ps]
    for server in workloads.CERT_MANAGER_DNS01_RESOLVERS:
        resolver = Host(server.rsplit(":", 1)[0])
        assert allowed(dns01, CONTROLLER, resolver, 53, "UDP")
        assert allowed(dns01, CONTROLLER, resolver, 53, "TCP")
        assert not allowed(POLICIES, CONTROLLER, resolver, 53, "UDP")  # HTTP-01: not needed
        assert not allowed(dns01, CAINJECTOR, resolver, 53, "UDP")
    assert not allowed(dns01, CONTROLLER, Host("173.245.58.51"), 53, "UDP")
    assert not allowed(dns01, CONTROLLER, Host("192.168.50.1"), 53, "UDP")
    assert not allowed(dns01, CONTROLLER, METADATA, 53, "UDP")
    for policy in dns01:
        kubernetes_validate.validate(policy, K8S_VERSION, strict=True)


def test_with_rke2_the_app_is_reached_from_rke2s_ingress_controller_only() -> None:
    rke2 = [p for ps in np.namespace_policies(RANGES, RKE2).values() for p in ps]
    controller = Pod("kube-system", dict(RKE2.ingress_pod_labels), "10.42.3.9")
    assert allowed(rke2, controller, APP, workloads.APP_PORT)
    assert allowed(rke2, controller, SOLVER, np.ACME_SOLVER_PORT)
    assert not allowed(rke2, NGINX, APP, workloads.APP_PORT)  # RKE's namespace: nothing there
    assert not allowed(rke2, COREDNS, APP, workloads.APP_PORT)  # kube-system, not the controller
    values = workloads.longhorn_values(
        settings(), zone_count=3, policy_type=RKE2.longhorn_network_policy
    )
    assert values["networkPolicies"] == {"enabled": True, "type": "rke2"}
    for policy in rke2:
        kubernetes_validate.validate(policy, K8S_VERSION, strict=True)


def test_the_evaluator_sees_an_open_cluster_without_policies() -> None:
    # Proof the table measures the policies: with none, every flow above is allowed.
    assert all(allowed([], f[1], f[2], f[3], f[4]) for f in FLOWS)


def test_the_program_gives_each_engine_its_ingress_controller() -> None:
    from scripts.offline import reveal
    from tests.support.program_runs import committed, committed_rke2

    for run, peer in (
        (committed("prod"), np.ingress_controller(RKE)),
        (committed_rke2("prod"), np.ingress_controller(RKE2)),
    ):
        [policy] = [
            r for r in run.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
            if r.name.endswith("app-netpol-allow-from-ingress-nginx")
        ]  # fmt: skip
        assert reveal(policy.inputs)["spec"]["ingress"][0]["from"] == [peer]

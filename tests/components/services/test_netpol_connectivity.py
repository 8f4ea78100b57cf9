"""What the rendered cluster lets through, as a NetworkPolicy evaluator nobody here wrote sees
it: np-guard's netpol-analyzer (github.com/np-guard/netpol-analyzer, cmd/netpolicy, built by
`make netpol-analyzer` at the version tools/netpol-analyzer/go.mod pins).

For each engine (rke, rke2) the committed prod stack is rendered by the program itself
(``tests.support.program_runs``); its Namespaces, workloads and NetworkPolicies go into one
directory,
next to minimal stand-ins for the pods the program installs through Helm charts or the
engine runs (cert-manager, Longhorn, CoreDNS, the ingress controller), labelled as their
sources label them. ``netpolicy list --dirpath DIR -o json`` (pkg/cli/list.go) reports every
allowed connection once: ``[{"src", "dst", "conn"}]`` (pkg/netpol/connlist/
conns_formatter_json.go), a workload as ``namespace/name[Kind]``, an address outside the
cluster as IP ranges ``a.b.c.d-e.f.g.h`` joined by commas (np-guard/models
pkg/netset/ipblock.go ``ToIPRanges``), the ranges cut at every ipBlock edge of the policies,
and ``conn`` as ``All Connections`` or ``PROTO ports`` joined by commas (pkg/netpol/internal/
common/connectionset.go ``ConnStrFromConnProperties``). A table of flows, each allowed or
denied, is then checked against that list.

The analyzer never reports a workload's traffic to itself (pkg/netpol/connlist/connlist.go
``includePairOfWorkloads``), so manager-to-manager uses two Longhorn manager pods; it reads
bare Pods only with a node and an address (pkg/netpol/eval/internal/k8s/pod.go
``PodFromCoreObject``), which the stand-in pods therefore carry.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.config.cluster import RkeSettings
from components.services import workloads
from scripts.offline import Run, reveal, stack_config
from tests.support.program_runs import committed, committed_rke2, rke2_config
from tests.support.tools import IN_CI, ROOT

Manifest = dict[str, Any]

GO_MOD = ROOT / "tools" / "netpol-analyzer" / "go.mod"
ENGINES = ("rke", "rke2")
# Rendered kinds the analyzer reads as namespaces and workloads (pkg/manifests/parser/
# k8sobj.go), NetworkPolicy added where wanted. Not the Service and Ingress: from those the
# analyzer adds its own "{ingress-controller}" pod in a namespace of its own, which the
# policies rightly do not admit; the engine's real controller is a stand-in below.
ANALYZED_KINDS = {"Namespace", "Pod", "Deployment", "DaemonSet", "StatefulSet", "Job"}

CLOUDFLARE_API = "104.16.132.229"  # api.cloudflare.com, in Cloudflare's 104.16.0.0/13
CLOUDFLARE_NAMESERVER = "173.245.58.51"  # a zone's *.ns.cloudflare.com, in 173.245.48.0/20
ACME = "172.65.32.248"  # acme-v02.api.letsencrypt.org
ELSEWHERE = "8.8.8.8"  # anywhere on the internet (also a resolver nobody here uses)
METADATA = "169.254.169.254"  # the clouds' metadata service
UT = ("UDP", "TCP")


def analyzer() -> Path:
    """The netpolicy binary `make netpol-analyzer` built for go.mod's version; missing, the
    test fails under CI=true and is skipped elsewhere."""
    match = re.search(r"^\s*github\.com/np-guard/netpol-analyzer (v\S+)", GO_MOD.read_text(), re.M)
    assert match, f"{GO_MOD} does not require github.com/np-guard/netpol-analyzer"
    binary = ROOT / ".tools" / "bin" / f"netpolicy-{match.group(1)}"
    if not binary.is_file():
        message = f"{binary} is missing: run `make netpol-analyzer` (needs Go 1.24 or later)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return binary


# --- the cluster: rendered objects and stand-ins ----------------------------------------


@dataclass(frozen=True)
class Cluster:
    engine: str
    run: Run
    overlay: ipaddress.IPv4Network
    pods: ipaddress.IPv4Network
    services: ipaddress.IPv4Network

    def rendered(self, kinds: Iterable[str] = ANALYZED_KINDS) -> list[Manifest]:
        """The program's registered Kubernetes objects of ``kinds`` (no Secrets)."""
        wanted = set(kinds) - {"Secret"}
        kube = [r for r in self.run.registrations if r.type.startswith("kubernetes:")]
        objects = [reveal(r.inputs) for r in kube]
        return [o for o in objects if isinstance(o, dict) and o.get("kind") in wanted]

    def helm_values(self, chart: str) -> Manifest:
        [release] = [
            reveal(r.inputs)
            for r in self.run.of_type("kubernetes:helm.sh/v3:Release")
            if reveal(r.inputs).get("chart") == chart
        ]
        values: Manifest = release.get("values") or {}
        return values


@functools.cache
def cluster(engine: str) -> Cluster:
    """The committed prod stack rendered with ``engine``, and its address ranges as the
    program reads them (``multicloud:overlayCidr``, ``rke.podCidr``/``serviceCidr``)."""
    config, _ = rke2_config("prod") if engine == "rke2" else stack_config("prod")
    run = committed_rke2("prod") if engine == "rke2" else committed("prod")
    assert config.get("multicloud:engine", "rke") == engine
    rke = RkeSettings.model_validate(json.loads(config.get("multicloud:rke", "{}")))
    return Cluster(
        engine,
        run,
        ipaddress.IPv4Network(config["multicloud:overlayCidr"]),
        ipaddress.IPv4Network(rke.pod_cidr),
        ipaddress.IPv4Network(rke.service_cidr),
    )


def _workload(kind: str, namespace: str, name: str, labels: dict[str, str]) -> Manifest:
    meta = {"name": name, "namespace": namespace, "labels": labels}
    pod_spec = {"containers": [{"name": name, "image": f"stand-in/{name}"}]}
    api = {"Job": "batch/v1"}.get(kind, "apps/v1")
    spec: Manifest = {"template": {"metadata": {"labels": labels}, "spec": pod_spec}}
    if kind != "Job":
        spec["selector"] = {"matchLabels": labels}
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}


def _pod(namespace: str, name: str, labels: dict[str, str], node: str, ip: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": name, "image": f"stand-in/{name}"}]},
        "status": {"hostIP": node, "podIP": ip, "podIPs": [{"ip": ip}]},
    }


CM = workloads.CERT_MANAGER_NAMESPACE
LH = workloads.LONGHORN_NAMESPACE


def _cert_manager_labels(name: str, component: str) -> dict[str, str]:
    # jetstack/cert-manager chart v1.18.6 and v1.21.1, templates/deployment.yaml,
    # webhook-deployment.yaml, cainjector-deployment.yaml, startupapicheck-job.yaml: pod
    # template labels
    return {
        "app": name,
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": "cert-manager",  # the Helm release (cluster_services.py)
        "app.kubernetes.io/component": component,
    }


# longhorn/longhorn chart 1.12.1: templates/_helpers.tpl "longhorn.labels" plus each
# template's `app` (daemonset-sa.yaml longhorn-manager, deployment-ui.yaml longhorn-ui).
LONGHORN_LABELS = {"app.kubernetes.io/name": "longhorn", "app.kubernetes.io/instance": "longhorn"}


def stand_ins(c: Cluster) -> list[Manifest]:
    """Minimal workloads for the pods the render does not contain, labelled as their sources
    label them."""
    node_a, node_b = str(c.overlay[11]), str(c.overlay[12])

    def pod_ip(n: int) -> str:
        return str(c.pods[256 * 3 + n])

    def component(name: str) -> dict[str, str]:
        return {"longhorn.io/component": name}

    manager = {**LONGHORN_LABELS, "app": "longhorn-manager"}
    objects = [
        # Both engines run CoreDNS in kube-system (network_policies.allow_dns); the label is
        # upstream's (`k8s-app: kube-dns`), and the policies select it by namespace only.
        _workload("Deployment", "kube-system", "coredns", {"k8s-app": "kube-dns"}),
        _workload("Deployment", "default", "anything", {"app": "anything"}),  # any other pod
        *(
            _workload(kind, CM, name, _cert_manager_labels(app, component))
            for kind, name, app, component in (
                ("Deployment", "cert-manager", "cert-manager", "controller"),
                ("Deployment", "cert-manager-webhook", "webhook", "webhook"),
                ("Deployment", "cert-manager-cainjector", "cainjector", "cainjector"),
                ("Job", "cert-manager-startupapicheck", "startupapicheck", "startupapicheck"),
            )
        ),
        # cert-manager v1.21.1 pkg/issuer/acme/http/pod.go podLabels: the HTTP-01 solver pod
        _pod(
            workloads.APP_NAMESPACE,
            "cm-acme-http-solver",
            {"acme.cert-manager.io/http01-solver": "true"},
            node_a,
            pod_ip(1),
        ),
        # one longhorn-manager pod per node (DaemonSet); it also serves the webhooks
        _pod(LH, "longhorn-manager-a", manager, node_a, pod_ip(2)),
        _pod(LH, "longhorn-manager-b", manager, node_b, pod_ip(3)),
        _workload("Deployment", LH, "longhorn-ui", {**LONGHORN_LABELS, "app": "longhorn-ui"}),
        # longhorn-manager v1.12.1 types/types.go GetInstanceManagerComponentLabel,
        # GetShareManagerComponentLabel: pods it creates itself
        _pod(LH, "instance-manager", component("instance-manager"), node_a, pod_ip(4)),
        _pod(LH, "share-manager-pvc", component("share-manager"), node_b, pod_ip(5)),
    ]
    if c.engine == "rke2":
        # rke2-ingress-nginx in kube-system: kubernetes/ingress-nginx chart
        # templates/_helpers.tpl "ingress-nginx.selectorLabels" (name, instance) and
        # controller-daemonset.yaml (component), with rancher/rke2-charts' name
        # rke2-ingress-nginx and the Helm release of the same name (rke/ingress.py)
        labels = {
            "app.kubernetes.io/name": "rke2-ingress-nginx",
            "app.kubernetes.io/instance": "rke2-ingress-nginx",
            "app.kubernetes.io/component": "controller",
        }
        name = "rke2-ingress-nginx-controller"
        objects.append(_workload("DaemonSet", "kube-system", name, labels))
    else:
        # RKE v1's addon: DaemonSet nginx-ingress-controller in ingress-nginx, pod labels of
        # rancher/kontainer-driver-metadata pkg/rke/templates/nginx-v1.11.2-rancher2.go
        labels = {
            "app": "ingress-nginx",
            "app.kubernetes.io/name": "ingress-nginx",
            "app.kubernetes.io/instance": "ingress-nginx",
            "app.kubernetes.io/component": "controller",
            "app.kubernetes.io/part-of": "ingress-nginx",
        }
        objects.append(_workload("DaemonSet", "ingress-nginx", "nginx-ingress-controller", labels))
    return objects


# --- running the analyzer and reading its answer -------------------------------------------


@dataclass(frozen=True)
class Connection:
    src: str
    dst: str
    conn: str


def run_analyzer(objects: Sequence[Manifest], workdir: Path) -> list[Connection]:
    """``netpolicy list --dirpath`` over ``objects``, written as one multi-document YAML."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "cluster.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
    done = subprocess.run(
        [str(analyzer()), "list", "--dirpath", str(workdir), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # (not --fail: v1.4.4 then stops with "Error getting resourceInfos from dir path: <nil>"
    # on valid input; an object it cannot read is logged as an error on stderr instead)
    assert done.returncode == 0, f"netpolicy failed ({done.returncode}): {done.stderr[-3000:]}"
    assert "error" not in done.stderr.lower(), done.stderr[-3000:]
    return [Connection(**entry) for entry in json.loads(done.stdout or "[]")]


IP_RANGES = re.compile(r"[0-9.]+-[0-9.]+(,[0-9.]+-[0-9.]+)*")


def _ranges(peer: str) -> list[tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]] | None:
    """An IP peer's ranges (``a-b,c-d``), or None for a workload (``ns/name[Kind]``)."""
    if not IP_RANGES.fullmatch(peer):
        return None
    pairs = [part.split("-") for part in peer.split(",")]
    return [(ipaddress.IPv4Address(a), ipaddress.IPv4Address(b)) for a, b in pairs]


def _matches(peer: str, endpoint: str) -> bool:
    """Whether an analyzer peer is ``endpoint``: a workload's name, or ranges holding an IP."""
    ranges = _ranges(peer)
    if ranges is None:
        return peer == endpoint
    if "/" in endpoint:
        return False
    ip = ipaddress.IPv4Address(endpoint)
    return any(low <= ip <= high for low, high in ranges)


def conn_allows(conn: str, protocol: str, port: int) -> bool:
    """Whether an analyzer ``conn`` string (``All Connections``, ``TCP 80,443,UDP 53``,
    ``TCP 1-65535``) includes ``protocol``/``port``."""
    if conn == "All Connections":
        return True
    current = None
    for token in conn.split(","):
        words = token.split(" ")
        if len(words) == 2:
            current, token = words
        if current != protocol:
            continue
        low, _, high = token.partition("-")
        if int(low) <= port <= int(high or low):
            return True
    return False


@dataclass(frozen=True)
class Flow:
    what: str
    src: str  # a workload as the analyzer names it, or an IPv4 address
    dst: str
    protocol: str
    port: int
    allowed: bool

    def __str__(self) -> str:
        return f"{self.what} ({self.src} -> {self.dst} {self.protocol}/{self.port})"


def allows(conns: Sequence[Connection], flow: Flow) -> bool:
    """Whether the analyzer listed ``flow`` among the allowed connections."""
    return any(
        _matches(c.src, flow.src)
        and _matches(c.dst, flow.dst)
        and conn_allows(c.conn, flow.protocol, flow.port)
        for c in conns
    )


# --- the table ---------------------------------------------------------------------------


def _name(manifest: Manifest) -> str:
    meta = manifest["metadata"]
    return f"{meta['namespace']}/{meta['name']}[{manifest['kind']}]"


COREDNS = "kube-system/coredns[Deployment]"
HOME_LAN_HOST = "192.168.50.1"  # the home router, in prod's sites.home.lanCidr
OTHER = "default/anything[Deployment]"
CONTROLLER = f"{CM}/cert-manager[Deployment]"
WEBHOOK = f"{CM}/cert-manager-webhook[Deployment]"
CAINJECTOR = f"{CM}/cert-manager-cainjector[Deployment]"
STARTUPAPICHECK = f"{CM}/cert-manager-startupapicheck[Job]"
SOLVER = f"{workloads.APP_NAMESPACE}/cm-acme-http-solver[Pod]"
MANAGER_A = f"{LH}/longhorn-manager-a[Pod]"
MANAGER_B = f"{LH}/longhorn-manager-b[Pod]"
UI = f"{LH}/longhorn-ui[Deployment]"
INSTANCE_MANAGER = f"{LH}/instance-manager[Pod]"
SHARE_MANAGER = f"{LH}/share-manager-pvc[Pod]"


def ingress_controller(engine: str) -> str:
    if engine == "rke2":
        return "kube-system/rke2-ingress-nginx-controller[DaemonSet]"
    return "ingress-nginx/nginx-ingress-controller[DaemonSet]"


def resolvers(pod_spec: Manifest) -> tuple[list[str], list[str]]:
    """(the resolvers a pod asks, by its dnsPolicy/dnsConfig; resolvers it never asks)."""
    policy = pod_spec.get("dnsPolicy", "ClusterFirst")
    if policy == "None":
        used = list(pod_spec["dnsConfig"]["nameservers"])
        return used, [COREDNS, ELSEWHERE]
    assert policy == "ClusterFirst", f"dnsPolicy {policy}: which resolver is that?"
    return [COREDNS], [ELSEWHERE, "1.1.1.1"]


def _deployment(c: Cluster, namespace: str) -> Manifest:
    [found] = [o for o in c.rendered({"Deployment"}) if o["metadata"].get("namespace") == namespace]
    return found


def flows(c: Cluster) -> list[Flow]:
    """Every flow that must be allowed or denied in ``c``, from its rendered objects."""
    api = str(c.overlay[10])  # a control-plane node's overlay address: the API server (host)
    kubernetes_svc = str(c.services[1])
    tunnel = str(c.pods[7 * 256])  # a remote node's flannel.1 address (host traffic to a pod)
    ingress = ingress_controller(c.engine)
    updater_deployment = _deployment(c, workloads.UPDATER_NAMESPACE)
    updater = _name(updater_deployment)
    used, unused = resolvers(updater_deployment["spec"]["template"]["spec"])
    app = _name(_deployment(c, workloads.APP_NAMESPACE))
    app_port = workloads.APP_PORT
    cf_api, cf_ns = CLOUDFLARE_API, CLOUDFLARE_NAMESERVER

    rows = [
        *((f"updater asks its resolver {r}", updater, r, p, 53, True) for r in used for p in UT),
        *((f"updater asks {r}, not its resolver", updater, r, "UDP", 53, False) for r in unused),
        ("updater calls the Cloudflare API", updater, cf_api, "TCP", 443, True),
        ("updater's trace via 1.1.1.1", updater, "1.1.1.1", "TCP", 443, True),
        ("updater plain HTTP to Cloudflare", updater, cf_api, "TCP", 80, False),
        ("updater to elsewhere", updater, ELSEWHERE, "TCP", 443, False),
        ("updater to the metadata service", updater, METADATA, "TCP", 80, False),
        ("updater to the API server", updater, api, "TCP", 6443, False),
        ("updater to another namespace", updater, OTHER, "TCP", 80, False),
        ("updater to Longhorn's manager", updater, MANAGER_A, "TCP", 9500, False),
        ("updater to the cert-manager webhook", updater, WEBHOOK, "TCP", 10250, False),
        ("any pod into the updater", OTHER, updater, "TCP", 8080, False),
        ("the internet into the updater", ELSEWHERE, updater, "TCP", 8080, False),
        # the example app, and cert-manager's HTTP-01 solver pods beside it
        ("ingress controller to the app", ingress, app, "TCP", app_port, True),
        ("ingress controller to the HTTP-01 solver", ingress, SOLVER, "TCP", 8089, True),
        ("ingress controller to the app, other port", ingress, app, "TCP", 9090, False),
        ("another namespace to the app", OTHER, app, "TCP", app_port, False),
        ("another namespace to the solver", OTHER, SOLVER, "TCP", 8089, False),
        ("kube-system, not the controller, to the app", COREDNS, app, "TCP", app_port, False),
        ("the app to the internet", app, ELSEWHERE, "TCP", 443, False),
        ("the app resolves names", app, COREDNS, "UDP", 53, False),
        ("the app to the metadata service", app, METADATA, "TCP", 80, False),
        ("the app to Longhorn's manager", app, MANAGER_A, "TCP", 9500, False),
        ("the app to Longhorn's UI", app, UI, "TCP", 8000, False),
        # cert-manager
        ("cert-manager to ACME", CONTROLLER, ACME, "TCP", 443, True),
        ("cert-manager's HTTP-01 self-check", CONTROLLER, ELSEWHERE, "TCP", 80, True),
        ("cert-manager resolves names", CONTROLLER, COREDNS, "UDP", 53, True),
        ("cert-manager to the API server", CONTROLLER, api, "TCP", 6443, True),
        ("cainjector to the kubernetes Service", CAINJECTOR, kubernetes_svc, "TCP", 443, True),
        ("webhook to the API server", WEBHOOK, api, "TCP", 6443, True),
        ("startupapicheck to the API server", STARTUPAPICHECK, api, "TCP", 6443, True),
        ("API server to cert-manager's webhook", api, WEBHOOK, "TCP", 10250, True),
        ("API server, via a tunnel, to the webhook", tunnel, WEBHOOK, "TCP", 10250, True),
        ("cert-manager to the metadata service", CONTROLLER, METADATA, "TCP", 80, False),
        ("cert-manager to a kubelet", CONTROLLER, api, "TCP", 10250, False),
        ("cert-manager to a pod on 443", CONTROLLER, OTHER, "TCP", 443, False),
        ("cert-manager to the home LAN on 443", CONTROLLER, HOME_LAN_HOST, "TCP", 443, False),
        ("cert-manager to a private network", CONTROLLER, "172.16.5.5", "TCP", 443, False),
        # split-horizon DNS at home: the HTTP-01 self-check may fetch a LAN address
        ("HTTP-01 self-check to a LAN address", CONTROLLER, HOME_LAN_HOST, "TCP", 80, True),
        ("cainjector to the internet", CAINJECTOR, ACME, "TCP", 443, False),
        ("any pod to the webhook's metrics", OTHER, WEBHOOK, "TCP", 9402, False),
        ("any pod to the controller", OTHER, CONTROLLER, "TCP", 9402, False),
        # Longhorn
        ("manager to manager (another node)", MANAGER_A, MANAGER_B, "TCP", 9500, True),
        ("manager to an instance-manager", MANAGER_B, INSTANCE_MANAGER, "TCP", 8500, True),
        ("Longhorn's UI to its manager", UI, MANAGER_A, "TCP", 9500, True),
        ("API server to the conversion webhook", api, MANAGER_A, "TCP", 9501, True),
        ("API server to the admission webhook", api, MANAGER_B, "TCP", 9502, True),
        ("a node mounting an RWX volume", tunnel, SHARE_MANAGER, "TCP", 2049, True),
        ("Longhorn to a backup target", MANAGER_A, ELSEWHERE, "TCP", 443, True),
        ("any pod to Longhorn's UI", OTHER, UI, "TCP", 8000, False),
        ("any pod to Longhorn's manager", OTHER, MANAGER_A, "TCP", 9500, False),
        ("any pod to an instance-manager", OTHER, INSTANCE_MANAGER, "TCP", 8500, False),
        ("a node's tunnel address to the manager's API", tunnel, MANAGER_A, "TCP", 9500, False),
    ]
    issuers = c.rendered({"ClusterIssuer"})
    if any("dns01" in s for i in issuers for s in i["spec"]["acme"]["solvers"]):
        # DNS-01: the Cloudflare API, the zone's authoritative nameservers, and the
        # recursive resolvers the controller is told to use (--dns01-recursive-nameservers)
        args = c.helm_values("cert-manager").get("extraArgs", [])
        recursive = [
            server.rsplit(":", 1)[0]
            for arg in args
            if arg.startswith("--dns01-recursive-nameservers=")
            for server in arg.split("=", 1)[1].split(",")
        ]
        rows += [
            ("cert-manager to the Cloudflare API", CONTROLLER, cf_api, "TCP", 443, True),
            *((f"DNS-01 asks {n}", CONTROLLER, n, p, 53, True) for n in recursive for p in UT),
            # --dns01-recursive-nameservers-only: nothing else on 53, split-horizon LAN
            # resolvers and the zone's own nameservers included
            ("DNS-01 asks the zone's nameserver", CONTROLLER, cf_ns, "UDP", 53, False),
            ("DNS-01 asks a LAN resolver", CONTROLLER, HOME_LAN_HOST, "UDP", 53, False),
            ("cainjector asks a nameserver", CAINJECTOR, cf_ns, "UDP", 53, False),
            ("DNS-01 to the metadata service", CONTROLLER, METADATA, "UDP", 53, False),
        ]
    return [Flow(*row) for row in rows]


# --- the tests -------------------------------------------------------------------------


@functools.cache
def _connections(engine: str, with_policies: bool, workdir: str) -> list[Connection]:
    """The analyzer's answer for ``engine``'s render (once per session)."""
    c = cluster(engine)
    objects = [*c.rendered(), *stand_ins(c)]
    if with_policies:
        objects += c.rendered({"NetworkPolicy"})
    return run_analyzer(
        objects, Path(workdir) / f"{engine}-{'policies' if with_policies else 'open'}"
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("netpol"))


@pytest.mark.parametrize("engine", ENGINES)
def test_every_flow_is_allowed_or_denied_as_the_table_says(engine: str, workdir: str) -> None:
    c = cluster(engine)
    conns = _connections(engine, True, workdir)
    wrong = [
        f"{'denied' if f.allowed else 'allowed'}: {f}"
        for f in flows(c)
        if allows(conns, f) is not f.allowed
    ]
    assert not wrong, f"{engine}: " + "; ".join(wrong)


@pytest.mark.parametrize("engine", ENGINES)
def test_without_policies_the_analyzer_sees_every_flow_open(engine: str, workdir: str) -> None:
    # Proof that the table measures the policies (and that its peers are the analyzer's):
    # with the rendered NetworkPolicies left out, every flow of the table is allowed.
    conns = _connections(engine, False, workdir)
    closed = [f.what for f in flows(cluster(engine)) if not allows(conns, f)]
    assert not closed


def test_every_rendered_workload_reaches_the_analyzer(workdir: str) -> None:
    # The analyzer read the program's own Deployments (not only the stand-ins): each one is
    # an end of some allowed connection.
    for engine in ENGINES:
        conns = _connections(engine, True, workdir)
        peers = {p for conn in conns for p in (conn.src, conn.dst)}
        rendered = {_name(w) for w in cluster(engine).rendered({"Deployment"})}
        assert rendered and rendered <= peers, rendered - peers


@pytest.mark.parametrize(
    ("conn", "protocol", "port", "expected"),
    [
        ("All Connections", "UDP", 53, True),
        ("TCP 443", "TCP", 443, True),
        ("TCP 443", "UDP", 443, False),
        ("TCP 80,443,UDP 53", "UDP", 53, True),
        ("TCP 80,443,UDP 53", "TCP", 443, True),
        ("TCP 80,443,UDP 53", "TCP", 53, False),
        ("SCTP 1-65535,TCP 1-52,54-65535", "TCP", 53, False),
        ("SCTP 1-65535,TCP 1-52,54-65535", "TCP", 54, True),
        ("No Connections", "TCP", 1, False),
    ],
)
def test_reading_the_analyzers_connection_strings(
    conn: str, protocol: str, port: int, expected: bool
) -> None:
    assert conn_allows(conn, protocol, port) is expected

"""What the rendered charts make Longhorn and cert-manager do, judged by their own rules.

The Helm releases are read from the whole program under mocks, with both engines, and
checked against upstream's definitions (``reference/longhorn-settings.json``, derived from
longhorn-manager v1.12.1), not against the text of the program's values:

- a site that goes dark frees the pods that held Longhorn volumes there, and every site with
  schedulable nodes can hold a replica, at most one per site;
- cert-manager's DNS-01 self-check asks public resolvers only (never the split-horizon
  resolver a home LAN has), and its NetworkPolicy lets it reach them.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from components.config import raw_values
from engines import check_stack
from rke2 import config_yaml
from scripts.offline import Run, reveal, stack_config
from tests.support.program_runs import RKE_COMMAND, committed, committed_rke2, run_edited, vms
from tests.support.reference import load
from tests.support.tools import load_yaml

LONGHORN = load("longhorn-settings.json")
RELEASE = "kubernetes:helm.sh/v3:Release"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
# Longhorn's zone is this node label (longhorn-manager v1.12.1 types/setting.go, the
# description of replica-zone-soft-anti-affinity); nodes without it share one zone.
LONGHORN_ZONE_LABEL = "topology.kubernetes.io/zone"

RUNS: dict[str, Callable[[], Run]] = {
    "rke prod": lambda: committed("prod"),
    "rke home": lambda: committed("home"),
    "rke2 prod": lambda: committed_rke2("prod"),
    "rke2 home": lambda: committed_rke2("home"),
}


def release_values(run: Run, chart: str) -> dict[str, Any]:
    [release] = [r for r in run.of_type(RELEASE) if reveal(r.inputs)["chart"] == chart]
    values: dict[str, Any] = reveal(release.inputs)["values"]
    return values


def setting(values: dict[str, Any], key: str) -> str:
    """The value Longhorn's manager ends up with for chart key ``defaultSettings.<key>``: the
    chart writes what is set into the default-setting ConfigMap, else the manager's default."""
    name = LONGHORN["chart_default_settings"][key]
    given = values.get("defaultSettings", {}).get(key)
    if given is None:
        return str(LONGHORN["settings"][name]["default"])
    return str(given).lower() if isinstance(given, bool) else str(given)


# --- Longhorn: the values are ones longhorn-manager v1.12.1 accepts -----------------------


def _check_setting(name: str, value: Any) -> str | None:
    """Why longhorn-manager would refuse ``value`` for setting ``name`` (None: accepted), as
    its ``types.ValidateSetting`` does: ``validateBool`` (true/false), ``validateInt``
    (a number within the range), ``validateString`` (one of the choices)."""
    definition = LONGHORN["settings"].get(name)
    if definition is None:
        return f"{name}: no such setting"
    kind = definition["type"]
    if isinstance(value, float) and value.is_integer():
        # Pulumi's wire format carries every number as a double; Helm's template prints a
        # whole float64 as an integer ("30")
        value = int(value)
    if kind == "bool" and not isinstance(value, bool):
        return f"{name}: expected a boolean, got {value!r}"
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{name}: expected an integer, got {value!r}"
        low, high = definition.get("minimum"), definition.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high):
            return f"{name}: {value} outside [{low}, {high}]"
    if "choices" in definition and value not in definition["choices"]:
        return f"{name}: {value!r} not one of {definition['choices']}"
    return None


@pytest.mark.parametrize("which", RUNS)
def test_longhorn_values_are_settings_longhorn_accepts(which: str) -> None:
    values = release_values(RUNS[which](), "longhorn")
    problems: list[str | None] = []
    for key, value in values["defaultSettings"].items():
        name = LONGHORN["chart_default_settings"].get(key)
        if name is None:
            problems.append(f"defaultSettings.{key}: the chart has no such key")
            continue
        problems.append(_check_setting(name, value))
    # the default StorageClass's parameters, checked as the manager checks a volume's
    # (types.ValidateDataLocality: the choices of default-data-locality; the replica count
    # within default-replica-count's range)
    persistence = values["persistence"]
    locality = persistence.get("defaultDataLocality", "disabled")  # the chart's default
    problems.append(_check_setting("default-data-locality", locality))
    problems.append(
        _check_setting("default-replica-count", persistence["defaultClassReplicaCount"])
    )
    assert [p for p in problems if p] == []


def test_a_setting_outside_longhorns_definition_is_refused() -> None:
    """The check above can fail: the values it refuses are the ones the manager refuses."""
    assert _check_setting("engine-replica-timeout", 31) is not None  # 8 to 30 s
    assert _check_setting("engine-replica-timeout", 7) is not None
    assert _check_setting("node-down-pod-deletion-policy", "delete-all") is not None
    assert _check_setting("replica-zone-soft-anti-affinity", "false") is not None
    assert _check_setting("default-replica-count", True) is not None
    assert _check_setting("replica-zone-anti-affinity", False) is not None


# --- Longhorn: a dark site frees its pods ------------------------------------------------


@pytest.mark.parametrize("which", RUNS)
def test_pods_on_a_dead_node_are_freed_for_statefulsets_and_deployments(which: str) -> None:
    """Kubernetes never force-deletes the Terminating pods of a node that is down, and their
    Longhorn volumes stay attached there; longhorn-manager force-deletes them for the owner
    kinds its node-down-pod-deletion-policy names (handlePodDeletionIfNodeDown)."""
    values = release_values(RUNS[which](), "longhorn")
    policy = setting(values, "nodeDownPodDeletionPolicy")
    freed = set(LONGHORN["node_down_pod_deletion_frees"][policy])
    assert {"StatefulSet", "Deployment"} <= freed, f"{policy} frees only {sorted(freed)}"


# --- Longhorn: replicas over the sites ---------------------------------------------------


def _rke_nodes(run: Run) -> list[tuple[dict[str, str], bool]]:
    """(labels, can run Longhorn) per node of the rendered cluster.yml: RKE taints a node
    without the worker role (controlplane NoSchedule, etcd NoExecute), and Longhorn's
    DaemonSets tolerate no taint unless `taint-toleration` is set."""
    [command] = [c for c in run.of_type(RKE_COMMAND) if "stdin" in c.inputs]  # `rke up`
    document = yaml.safe_load(reveal(command.inputs["stdin"]))
    return [(n.get("labels", {}), "worker" in n["role"]) for n in document["nodes"]]


def _rke2_nodes(run: Run) -> list[tuple[dict[str, str], bool]]:
    """(labels, can run Longhorn) per node of the rendered RKE2 config.yaml files: a node
    with a NoSchedule/NoExecute `node-taint` runs no Longhorn pods."""
    nodes = []
    for vm in vms(run):
        written = load_yaml(reveal(vm.inputs["userData"]))["write_files"]
        [text] = [f["content"] for f in written if f["path"] == config_yaml.CONFIG_PATH]
        config = yaml.safe_load(text)
        labels = dict(label.split("=", 1) for label in config.get("node-label", []))
        taints = config.get("node-taint", [])
        tainted = any(t.endswith((":NoSchedule", ":NoExecute")) for t in taints)
        nodes.append((labels, not tainted))
    return nodes


def _placement(run: Run, rke2: bool) -> tuple[int, bool, bool, list[str]]:
    """(replicas of the default StorageClass, zone soft, node soft, the zone of each node
    that can hold a replica)."""
    values = release_values(run, "longhorn")
    replicas = int(values["persistence"]["defaultClassReplicaCount"])
    zone_soft = setting(values, "replicaZoneSoftAntiAffinity") == "true"
    node_soft = setting(values, "replicaSoftAntiAffinity") == "true"
    nodes = _rke2_nodes(run) if rke2 else _rke_nodes(run)
    hosts = [labels.get(LONGHORN_ZONE_LABEL, "") for labels, ok in nodes if ok]
    return replicas, zone_soft, node_soft, hosts


def _assert_schedulable_and_spread(run: Run, rke2: bool, sites: set[str]) -> int:
    replicas, zone_soft, node_soft, hosts = _placement(run, rke2)
    zones = set(hosts)
    # every site with schedulable nodes is a zone of its own, so it can hold a replica
    assert zones == sites, (zones, sites)
    if not node_soft:
        assert replicas <= len(hosts), "more replicas than nodes that can hold one"
    if not zone_soft:
        assert replicas <= len(zones), "hard zone anti-affinity with more replicas than zones"
    return replicas


def _sites_with_workers(stack: str) -> set[str]:
    """From the stack file itself (masters are not schedulable in the committed stacks)."""
    sites = json.loads(stack_config(stack)[0]["multicloud:sites"])
    return {name for name, site in sites.items() if site.get("workers", 0) > 0}


@pytest.mark.parametrize("which", RUNS)
def test_every_site_with_workers_can_hold_a_replica(which: str) -> None:
    engine, stack = which.split()
    _assert_schedulable_and_spread(RUNS[which](), engine == "rke2", _sites_with_workers(stack))


def test_prod_survives_a_dark_site_with_a_replica_elsewhere() -> None:
    """prod: with hard zone anti-affinity no site holds two replicas of a volume, so any one
    site going dark leaves replicas - 1 >= 1 healthy copies on the others."""
    for run, rke2 in ((committed("prod"), False), (committed_rke2("prod"), True)):
        replicas, zone_soft, _, hosts = _placement(run, rke2)
        assert not zone_soft and replicas >= 2
        assert len(set(hosts)) >= replicas


def test_fewer_sites_with_workers_lower_the_default_replica_count() -> None:
    """prod with DigitalOcean's workers at 0 and no replica count set: two zones remain."""

    def edit(values: dict[str, Any]) -> None:
        values["multicloud:sites"]["digitalocean"]["workers"] = 0
        values["multicloud:entrypoint"]["longhorn"].pop("replicas", None)
        values["multicloud:entrypoint"]["failoverBoundSeconds"] = None

    run = run_edited("prod", edit)
    assert run.error is None, run.error
    assert _assert_schedulable_and_spread(run, False, {"ramnode", "home"}) == 2


# --- cert-manager: DNS-01 asks public resolvers only --------------------------------------


def _controller_flags(values: dict[str, Any]) -> dict[str, str]:
    """The controller's command-line flags from the chart's ``extraArgs`` (the chart's
    templates/deployment.yaml appends them verbatim), as pflag reads them: ``--name=value``,
    or ``--name`` alone for a boolean."""
    flags = {}
    for arg in values.get("extraArgs", []):
        name, _, value = arg.removeprefix("--").partition("=")
        flags[name] = value if "=" in arg else "true"
    return flags


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _resolvers(values: dict[str, Any]) -> list[tuple[Address, int]]:
    flags = _controller_flags(values)
    assert flags.get("dns01-recursive-nameservers-only") == "true", (
        "the DNS-01 self-check follows the cluster's resolver to the zone's nameservers"
    )
    servers = [s for s in flags.get("dns01-recursive-nameservers", "").split(",") if s]
    assert servers, "no --dns01-recursive-nameservers: cert-manager uses /etc/resolv.conf"
    out = []
    for server in servers:  # <ip>:<port> (validation.go: net.SplitHostPort)
        host, _, port = server.rpartition(":")
        out.append((ipaddress.ip_address(host.strip("[]")), int(port)))
    return out


def _egress_allows(
    policies: list[dict[str, Any]], labels: dict[str, str], ip: Address, port: int, protocol: str
) -> bool:
    """Whether the NetworkPolicies of cert-manager's namespace let a pod with ``labels``
    reach ``ip``:``port`` (an ipBlock peer; a policy selecting the pod for Egress isolates
    it)."""
    selecting = [
        p
        for p in policies
        if "Egress" in p["spec"]["policyTypes"]
        and p["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()
    ]
    for policy in selecting:
        for rule in policy["spec"].get("egress", []):
            ports = rule.get("ports") or [{"protocol": protocol, "port": port}]
            if not any(p["protocol"] == protocol and p["port"] == port for p in ports):
                continue
            for peer in rule.get("to") or [{"ipBlock": {"cidr": "0.0.0.0/0"}}]:
                block = peer.get("ipBlock")
                if (
                    block
                    and ip in ipaddress.ip_network(block["cidr"])
                    and not any(ip in ipaddress.ip_network(e) for e in block.get("except", []))
                ):
                    return True
    return not selecting


@pytest.mark.parametrize("which", ["rke prod", "rke2 prod"])
def test_dns01_self_check_asks_public_resolvers_only(which: str) -> None:
    run = RUNS[which]()
    config = check_stack(raw_values(stack_config("prod")[0]))[0]
    entry = config.settings.entrypoint
    assert entry is not None and entry.cert_manager.solver == "dns01"
    resolvers = _resolvers(release_values(run, "cert-manager"))
    # never a private, loopback, link-local or shared address (a LAN's split-horizon
    # resolver, CoreDNS, a node's stub resolver), nor one in the stack's own ranges
    rke = config.settings.rke
    lans = [site.lan_cidr for site in config.settings.sites.values() if site.lan_cidr]
    own = [
        ipaddress.ip_network(c)
        for c in (config.settings.overlay_cidr, rke.pod_cidr, rke.service_cidr, *lans)
    ]
    for ip, port in resolvers:
        assert ip.is_global, f"{ip} is not a public address"
        assert not any(ip in net for net in own), f"{ip} is in the stack's own ranges"
        assert port == 53
    policies = [
        reveal(r.inputs)
        for r in run.of_type(NETWORK_POLICY)
        if reveal(r.inputs)["metadata"]["namespace"] == "cert-manager"
    ]
    controller = {"app.kubernetes.io/component": "controller"}
    for ip, port in resolvers:
        for protocol in ("UDP", "TCP"):  # DNS falls back to TCP for long answers
            assert _egress_allows(policies, controller, ip, port, protocol), (ip, protocol)


def test_http01_passes_no_dns01_flags() -> None:
    """With HTTP-01 the controller makes no DNS-01 check, and its NetworkPolicy opens no port
    53 to the internet: no resolver flags either."""

    def edit(values: dict[str, Any]) -> None:
        values["multicloud:entrypoint"]["certManager"]["solver"] = "http01"

    run = run_edited("prod", edit)
    assert run.error is None, run.error
    assert _controller_flags(release_values(run, "cert-manager")) == {}

"""The reachability preflight: both committed stacks path by path, and what it catches."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from components.config import ClusterConfig, ClusterSettings, ConfigError, raw_values
from components.config.checks import node_specs
from components.config.deployer import Deployer
from components.preflight import NetworkPath, plan_network, preflight, require_reachable
from components.services import workloads
from components.sites.firewall import Rule, SitePolicy
from engines import RULES, check_stack
from scripts.offline import stack_config
from tests.components.config.test_config import CLOUDFLARE_ENTRYPOINT, base, with_
from tests.support.program_runs import edited

PUBLIC = "deployer from 198.51.100.0/24, 203.0.113.7/32"
HOME_LAN = "deployer on LAN of home (192.168.50.0/24)"
LAN = "LAN of home (192.168.50.0/24)"
FROM_SOURCES = "firewall: from deployer sources"
FROM_LAN = "firewall: from LAN 192.168.50.0/24"
KUBECONFIG = "; kubeconfig server: rke and pulumi-kubernetes use it"
CONTROLLER = "RKE ingress-nginx DaemonSet + admission Jobs"
SELECTOR = "multicloud.io/ingress-controller=true + node-role.kubernetes.io/worker"
HOSTPORT = "ingress-nginx hostPort"
CENTRAL = (
    "zerotier-central",
    "deployer (the program)",
    "api.zerotier.com (zerotierCentralUrl)",
    "443/tcp",
    "ok",
    "ZeroTier Central: the zerotierToken goes only to ZeroTier",
)
RECORD_TARGET = HOSTPORT + "; DNS record target (multicloud.io/public-ingress=true)"
PROXIED = "Cloudflare (proxied)"  # prod's record is proxied: the origin takes Cloudflare only
FROM_CLOUDFLARE = RECORD_TARGET + "; from Cloudflare's 15 ranges only (proxied)"


def table(stack: str) -> list[tuple[str, ...]]:
    network = check_stack(raw_values(stack_config(stack)[0]))[1]
    return [path.row() for path in network.paths]


def row(path: str, source: str, target: str, port: str, note: str) -> tuple[str, ...]:
    return (path, source, target, port, "ok", note)


def prod_node(name: str, address: str) -> str:
    return f"mc-prod-{name} {address} address"


def test_committed_prod_passes_with_home_ssh_over_the_lan() -> None:
    # Sites come in name order: the CLI hands the program `sites` as Go's encoding/json
    # writes it, keys sorted (scripts/stack_yaml.py), whatever order the file lists them in.
    direct = "direct: {} accepts 9993/udp from anywhere"
    same = "same site network: direct"
    assert table("prod") == [
        *(
            row("ssh", PUBLIC, prod_node(n, "public"), "22/tcp", FROM_SOURCES)
            for n in ("digitalocean-master-0", "digitalocean-worker-0")
        ),
        *(
            row("ssh", HOME_LAN, prod_node(n, "LAN"), "22/tcp", FROM_LAN)
            for n in ("home-master-0", "home-worker-0", "home-worker-1")
        ),
        *(
            row("ssh", PUBLIC, prod_node(n, "public"), "22/tcp", FROM_SOURCES)
            for n in ("ramnode-master-0", "ramnode-worker-0")
        ),
        # cluster.yml lists nodes by name: RKE's kubeconfig names digitalocean's master
        row(
            "kube-api",
            PUBLIC,
            prod_node("digitalocean-master-0", "public"),
            "6443/tcp",
            FROM_SOURCES + KUBECONFIG,
        ),
        row("kube-api", HOME_LAN, prod_node("home-master-0", "LAN"), "6443/tcp", FROM_LAN),
        row("kube-api", PUBLIC, prod_node("ramnode-master-0", "public"), "6443/tcp", FROM_SOURCES),
        CENTRAL,
        row("overlay", "digitalocean nodes", "digitalocean nodes", "9993/udp", same),
        row(
            "overlay", "digitalocean nodes", "home nodes", "9993/udp", direct.format("digitalocean")
        ),
        row(
            "overlay",
            "digitalocean nodes",
            "ramnode nodes",
            "9993/udp",
            direct.format("digitalocean"),
        ),
        row("overlay", "home nodes", "home nodes", "9993/udp", same),
        row("overlay", "home nodes", "ramnode nodes", "9993/udp", direct.format("ramnode")),
        row("overlay", "ramnode nodes", "ramnode nodes", "9993/udp", same),
        row(
            "ingress",
            PROXIED,
            prod_node("digitalocean-worker-0", "public"),
            "80,443/tcp",
            FROM_CLOUDFLARE,
        ),
        row("lan-ingress", LAN, prod_node("home-worker-0", "LAN"), "80,443/tcp", HOSTPORT),
        row("lan-ingress", LAN, prod_node("home-worker-1", "LAN"), "80,443/tcp", HOSTPORT),
        row(
            "ingress",
            PROXIED,
            prod_node("ramnode-worker-0", "public"),
            "80,443/tcp",
            FROM_CLOUDFLARE,
        ),
        row(
            "dns-record",
            "Cloudflare *.k8s.example.com",
            "2 public-ingress nodes",
            "-",
            "first target mc-prod-digitalocean-worker-0; the DNS updater "
            "(multicloud.io/public-ingress=true) keeps it on a live node",
        ),
        row(  # prod's certManager.solver is dns01: no HTTP-01 row
            "acme-dns01",
            "cert-manager controller (in the cluster)",
            "Cloudflare API (api.cloudflare.com), zone example.com; DNS 1.1.1.1, 1.0.0.1",
            "443/tcp, 53",
            "TXT _acme-challenge.app.k8s.example.com with a token the program creates "
            "(DNS Write + Zone Read on example.com only, a secret in the cert-manager "
            "namespace); independent of the proxy and port 80",
        ),
        row(
            "ingress-controller", CONTROLLER, SELECTOR, "-", "4 nodes (digitalocean, home, ramnode)"
        ),
        row(
            "longhorn",
            "Longhorn, 3 replicas",
            "zones with schedulable nodes: digitalocean, home, ramnode",
            "-",
            "zone anti-affinity hard",
        ),
    ]


def test_committed_home_table() -> None:
    node = "mc-home-home-{} LAN address"
    assert table("home") == [
        ("ssh", HOME_LAN, node.format("master-0"), "22/tcp", "ok", FROM_LAN),
        ("ssh", HOME_LAN, node.format("worker-0"), "22/tcp", "ok", FROM_LAN),
        ("ssh", HOME_LAN, node.format("worker-1"), "22/tcp", "ok", FROM_LAN),
        ("kube-api", HOME_LAN, node.format("master-0"), "6443/tcp", "ok", FROM_LAN + KUBECONFIG),
        CENTRAL,
        ("overlay", "home nodes", "home nodes", "9993/udp", "ok", "same site network: direct"),
        ("lan-ingress", LAN, node.format("worker-0"), "80,443/tcp", "ok", HOSTPORT),
        ("lan-ingress", LAN, node.format("worker-1"), "80,443/tcp", "ok", HOSTPORT),
        ("ingress-controller", CONTROLLER, SELECTOR, "-", "ok", "2 nodes (home)"),
        (
            "longhorn",
            "Longhorn, 2 replicas",
            "zones with schedulable nodes: home",
            "-",
            "ok",
            "zone anti-affinity soft (one zone)",
        ),
    ]


def test_the_old_admin_only_firewall_is_caught() -> None:
    """Issue 10's first fault: home's SSH opened to adminCidrs only. The preflight over that
    policy (not the one the sites render now) reports every home node broken."""
    config, network = check_stack(raw_values(stack_config("prod")[0]))
    settings = config.settings
    admins = tuple(settings.admin_cidrs)
    old = dict(network.firewall)
    old["home"] = SitePolicy(
        "home",
        {
            **old["home"].groups,
            "node": (Rule("tcp", 22, admins, "SSH from admins"),),
            "api": (Rule("tcp", 6443, admins, "Kubernetes API from admins"),),
        },
    )
    paths = preflight(config, old)
    broken = [(p.path, p.target) for p in paths if p.verdict == "broken"]
    assert broken == [
        ("ssh", "mc-prod-home-master-0 LAN address"),
        ("ssh", "mc-prod-home-worker-0 LAN address"),
        ("ssh", "mc-prod-home-worker-1 LAN address"),
        ("kube-api", "mc-prod-home-master-0 LAN address"),
    ]
    with pytest.raises(ConfigError) as err:
        require_reachable(paths)
    assert (
        str(err.value).count("multicloud:sites.home.lanCidr: deployer -> nodes of site home") == 2
    )


def test_a_proxied_origin_open_to_anyone_is_caught() -> None:
    """prod's record is proxied: the old ingress group (80/443 from anywhere) would let
    clients bypass Cloudflare; the preflight over that policy reports it."""
    config, network = check_stack(raw_values(stack_config("prod")[0]))
    old = dict(network.firewall)
    anywhere = ("0.0.0.0/0", "::/0")
    old["ramnode"] = SitePolicy(
        "ramnode",
        {
            **old["ramnode"].groups,
            "ingress": tuple(Rule("tcp", p, anywhere, "to the ingress") for p in (80, 443)),
        },
    )
    paths = preflight(config, old)
    [broken] = [p for p in paths if p.verdict == "broken"]
    assert (broken.path, broken.target, broken.key) == (
        "ingress", "mc-prod-ramnode-worker-0 public address", "entrypoint.cloudflare.proxied",
    )  # fmt: skip
    assert "bypass Cloudflare" in broken.note


def test_a_deployer_off_the_lan_is_refused_for_ssh_and_the_api() -> None:
    with pytest.raises(ConfigError) as err:
        check_stack(with_("deployer", {"lan": None, "overlay": True}))
    message = str(err.value)
    assert "found 2 broken paths" in message
    assert "on 22/tcp (SSH for the readiness gates and rke up)" in message
    assert "on 6443/tcp (the Kubernetes API for rke and pulumi-kubernetes)" in message
    assert "set multicloud:deployer.lan: home" in message


def _unchecked(raw: dict[str, Any]) -> tuple[ClusterSettings, tuple[Any, ...]]:
    """Settings and nodes without the whole-stack checks: the preflight alone, as another
    engine (one that allows sshVia: overlay) would run it."""
    settings = ClusterSettings.model_validate(raw)
    return settings, node_specs(settings)


def _nat_pair() -> dict[str, Any]:
    raw = with_("sites.home.sshVia", "overlay")
    raw["sites"]["office"] = copy.deepcopy(raw["sites"]["home"]) | {
        "siteId": 4,
        "lanCidr": "192.168.60.0/24",
        "masters": 0,
        "workers": 1,
    }
    return raw


def test_two_sites_behind_nat_are_a_warning_and_overlay_ssh_needs_the_deployer_there() -> None:
    settings, nodes = _unchecked(_nat_pair())
    on_overlay = Deployer(None, None, True, ("198.51.100.0/24",), True)
    plan = plan_network(ClusterConfig(settings, nodes, on_overlay, RULES["rke"].facts))
    pair = next(p for p in plan.paths if (p.source, p.target) == ("home nodes", "office nodes"))
    assert (pair.verdict, pair.key) == ("warn", "sites.office")
    assert "both behind NAT" in pair.note
    ssh = [p for p in plan.paths if p.path == "ssh" and "overlay" in p.target]
    assert len(ssh) == 4 and all(p.verdict == "ok" for p in ssh)
    require_reachable(plan.paths)  # a warning does not stop the run
    off = replace(on_overlay, overlay=False)
    off_plan = plan_network(ClusterConfig(settings, nodes, off, RULES["rke"].facts))
    broken = {p.key for p in off_plan.paths if p.verdict == "broken"}
    assert broken == {"deployer.overlay"}


def test_the_kubeconfig_server_is_the_first_control_plane_by_name() -> None:
    raw = with_("sites.ramnode.masters", 2)
    raw["sites"]["aardvark"] = copy.deepcopy(raw["sites"]["digitalocean"]) | {"siteId": 9}
    api = [p for p in check_stack(raw)[1].paths if p.path == "kube-api"]
    assert api[0].target == "mc-aardvark-master-0 public address"
    assert api[0].note.endswith("kubeconfig server: rke and pulumi-kubernetes use it")
    assert [p for p in api if "kubeconfig" in p.note] == api[:1]


@pytest.mark.parametrize(
    ("replicas", "expected", "soft", "verdict"),
    [(None, 2, False, "ok"), (2, 2, False, "ok"), (3, 3, True, "warn")],
)
def test_longhorn_follows_the_zones_with_schedulable_nodes(
    replicas: int | None, expected: int, soft: bool, verdict: str
) -> None:
    """digitalocean has a master only: two zones can hold replicas, not three."""
    entry = {"updater": {"enabled": False}, "app": {"host": "app.home.lan"}, "longhorn": {}}
    if replicas:
        entry["longhorn"] = {"replicas": replicas}
    raw = with_("entrypoint", entry, with_("sites.digitalocean.workers", 0))
    config, network = check_stack(raw)
    [row] = [p for p in network.paths if p.path == "longhorn"]
    assert (row.source, row.target, row.verdict) == (
        f"Longhorn, {expected} replicas",
        "zones with schedulable nodes: ramnode, home",
        verdict,
    )
    assert config.settings.entrypoint is not None
    values = workloads.longhorn_values(config.settings.entrypoint, zone_count=2, policy_type="rke1")
    assert values["defaultSettings"]["defaultReplicaCount"] == expected
    assert values["defaultSettings"]["replicaZoneSoftAntiAffinity"] is soft


def test_a_site_with_ingress_but_no_workers_is_a_warning() -> None:
    network = check_stack(with_("sites.digitalocean.workers", 0))[1]
    [row] = [p for p in network.paths if p.target == "site digitalocean"]
    assert (row.verdict, row.key) == ("warn", "sites.digitalocean.ingress")


def test_three_sites_of_a_hundred_nodes() -> None:
    raw = base()
    for site in raw["sites"].values():
        site["workers"] = 99
    config, network = check_stack(raw)
    rows = network.paths
    assert len(config.nodes) == 300
    assert sum(p.path == "ssh" for p in rows) == 300
    assert all(p.verdict == "ok" for p in rows)


def test_markdown_escapes_pipes_and_lists_every_path() -> None:
    network = check_stack(raw_values(stack_config("home")[0]))[1]
    odd = NetworkPath("x", "a|b", "c", "-", "ok", "n")
    plan = replace(network, paths=(*network.paths, odd))
    text = plan.markdown()
    assert text.startswith("Deployer: deployer on the LAN of site home (192.168.50.0/24)")
    assert "| x | a\\|b | c | - | ok | n |" in text
    assert text.count("\n| ") == len(plan.paths) + 1  # header + one line per path


def _prod_acme(solver: str, proxied: bool) -> list[NetworkPath]:
    def edit(values: dict[str, Any]) -> None:
        entry = values["multicloud:entrypoint"]
        entry["certManager"]["solver"] = solver
        entry["cloudflare"]["proxied"] = proxied
        if not proxied:  # unproxied, the DNS TTL counts against the failover bound
            entry["cloudflare"].pop("edgePropagationSeconds", None)
            entry["cloudflare"]["ttl"] = 60
            entry["failoverBoundSeconds"] = 300

    network = check_stack(raw_values(edited("prod", edit)[0]))[1]
    return [p for p in network.paths if p.path.startswith("acme")]


def test_the_acme_row_follows_the_configured_solver() -> None:
    [http01] = _prod_acme("http01", proxied=False)
    assert (http01.path, http01.port, http01.verdict) == ("acme-http01", "80/tcp", "ok")
    assert http01.target == "http://app.k8s.example.com/.well-known/acme-challenge/"
    [dns01] = _prod_acme("dns01", proxied=False)
    assert (dns01.path, dns01.port, dns01.verdict) == ("acme-dns01", "443/tcp, 53", "ok")
    assert "Cloudflare API" in dns01.target and "Zone Read on example.com only" in dns01.note


def test_http01_behind_the_proxy_is_a_warning_naming_the_solver_key() -> None:
    [path] = _prod_acme("http01", proxied=True)
    assert (path.path, path.verdict, path.key) == (
        "acme-http01", "warn", "entrypoint.certManager.solver",
    )  # fmt: skip
    assert "proxied" in path.note and "Always Use HTTPS" in path.note


def test_dns01_is_broken_when_cert_managers_policy_blocks_the_cloudflare_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from components.preflight import record as module
    from components.services import network_policies

    def https_only(ranges: Any, dns01: bool = False) -> list[dict[str, Any]]:
        policies = network_policies.cert_manager_policies(ranges, dns01=False)
        return policies  # 80/443 to the internet, but no DNS to the public resolvers

    monkeypatch.setattr(module, "cert_manager_policies", https_only)
    blocked = (
        r"certManager\.solver: cert-manager's NetworkPolicy does not allow "
        r"53/udp to 2 of 2 DNS-01 resolvers \(first 1\.1\.1\.1/32\)"
    )
    with pytest.raises(ConfigError, match=blocked):
        _prod_acme("dns01", proxied=True)


def test_a_central_url_off_zerotier_is_a_warning_naming_the_host() -> None:
    # The Central token goes wherever zerotierCentralUrl points: a reviewer must see it.
    _, network = check_stack(
        raw_values(
            edited(
                "prod",
                lambda v: v.__setitem__(
                    "multicloud:zerotierCentralUrl", "https://api.zerotier.com.evil.example.net/"
                ),
            )[0]
        )
    )
    (central,) = (p for p in network.paths if p.path == "zerotier-central")
    assert central.verdict == "warn" and central.key == "zerotierCentralUrl"
    assert "goes to api.zerotier.com.evil.example.net" in central.note


def test_unproxied_the_ingress_rows_open_to_the_internet() -> None:
    def edit(values: dict[str, Any]) -> None:
        cloudflare = values["multicloud:entrypoint"]["cloudflare"]
        cloudflare["proxied"] = False
        cloudflare.pop("edgePropagationSeconds", None)
        cloudflare["ttl"] = 60
        values["multicloud:entrypoint"]["failoverBoundSeconds"] = 300

    network = check_stack(raw_values(edited("prod", edit)[0]))[1]
    rows = [p.row() for p in network.paths if p.path == "ingress"]
    assert rows == [
        row("ingress", "internet", prod_node(n, "public"), "80,443/tcp", RECORD_TARGET)
        for n in ("digitalocean-worker-0", "ramnode-worker-0")
    ]


def test_an_undeclared_rule_quota_is_a_warning_above_neutrons_default() -> None:
    """40 admin ranges (SSH and the API: 80 rules), ZeroTier's 2 and Cloudflare's 30 ingress
    rules, plus Neutron's own (2 in each of 3 groups, 4 in the project's default group):
    122 on ramnode, over Neutron's default quota of 100. Unset, the cloud may allow
    more: a warning naming the key; declared, it is refused
    (tests/components/config/test_config_battery.py)."""
    raw = with_("entrypoint", copy.deepcopy(CLOUDFLARE_ENTRYPOINT))
    raw["entrypoint"]["cloudflare"]["proxied"] = True
    raw["entrypoint"]["failoverBoundSeconds"] = 300
    raw["adminCidrs"] = [f"203.0.113.{i}/32" for i in range(40)]
    [quota] = [p for p in check_stack(raw)[1].paths if p.path == "openstack-quota"]
    assert (quota.verdict, quota.key) == ("warn", "sites.ramnode.securityGroupRuleQuota")
    assert quota.source == "site ramnode's firewall, 122 security-group rules"
    assert "sites.ramnode.addressGroups: true" in quota.note

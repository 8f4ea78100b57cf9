"""The RKE2 engine's pure pieces: config.yaml, the join plan, manifests, node scripts."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from components.config import ConfigError
from components.config.cluster import EtcdS3Settings, EtcdSettings, IngressSettings, RkeSettings
from components.nodes import NodeSpec
from engines import check_stack
from rke2 import config_yaml, manifests, release, scripts, upgrade
from rke2.component import rewrite_kubeconfig
from rke2.join import ClusterRecord, JoinError, plan_join
from tests.components.config.test_config import base, with_
from tests.support.reference import REFERENCE

VERSION = release.pinned_version()
MINOR = release.kubernetes_minor(VERSION)


def spec(site: str, kind: str, index: int, site_id: int) -> NodeSpec:
    roles = ("controlplane", "etcd") if kind == "master" else ("worker",)
    host = 10 + index if kind == "master" else 50 + index
    return NodeSpec(
        name=f"mc-t-{site}-{kind}-{index}",
        site=site,
        kind=kind,  # type: ignore[arg-type]
        index=index,
        roles=roles,
        size="s",
        zerotier_ip=f"10.147.{site_id}.{host}",
        ingress="public" if kind == "worker" else "none",
    )


A0, B0, C0 = spec("a", "master", 0, 1), spec("b", "master", 0, 2), spec("c", "master", 0, 3)
W0, W1 = spec("a", "worker", 0, 1), spec("b", "worker", 0, 2)
NODES = [B0, W1, C0, A0, W0]  # config order need not be address order
CLUSTER = config_yaml.ConfigYamlSettings("mc-t", RkeSettings(), masters_schedulable=False)


def record(*servers: str, init: str | None = None, version: str = VERSION) -> ClusterRecord:
    return ClusterRecord(init or servers[0], tuple(servers), version)


# --- config.yaml ---------------------------------------------------------------------


def crd_schema(path: Path) -> dict[str, Any]:
    crd = yaml.safe_load(path.read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize(
    "rke",
    [
        RkeSettings(),
        RkeSettings(
            etcd=EtcdSettings(
                s3=EtcdS3Settings(bucket="mc-test-etcd", endpoint="e", region="r", folder="f")
            ),
            ingress=IngressSettings(enabled=False),
        ),
    ],
    ids=["defaults", "s3-no-ingress"],
)
@pytest.mark.parametrize("schedulable", [False, True])
def test_every_key_is_a_flag_of_the_pinned_release(rke: RkeSettings, schedulable: bool) -> None:
    cluster = config_yaml.ConfigYamlSettings("mc-t", rke, schedulable)
    s3 = config_yaml.S3Credentials("ak", "sk")
    for node, server in ((A0, None), (B0, "https://10.147.1.10:9345"), (W0, "https://x:9345")):
        document = config_yaml.node_config(
            node, cluster, token="t", agent_token="a", server_url=server, s3=s3
        )
        role = config_yaml.role(node)
        assert config_yaml.unknown_keys(document, role) == []
        assert document["node-ip"] == node.zerotier_ip
        assert document["node-name"] == node.name
        assert ("server" in document) == (server is not None)
        if role == "server":
            assert document["advertise-address"] == node.zerotier_ip
            assert document["cni"] == ["canal"]
            assert ("node-taint" in document) != schedulable
            assert document["etcd-arg"] == ["heartbeat-interval=500", "election-timeout=5000"]
            assert document["kube-controller-manager-arg"] == [
                f"node-monitor-grace-period={rke.node_monitor_grace_period_seconds}s",
                f"node-eviction-rate={rke.node_eviction_rate:g}",
            ]
            assert ("etcd-s3-secret-key" in document) == (rke.etcd.s3 is not None)
    for key in config_yaml.dropin_keys():
        assert key in release.cli_flags()["agent"] and key in release.cli_flags()["server"]


def test_keys_rke2_would_drop_are_refused() -> None:
    # RKE2 drops K3s's flannel-iface and cluster-init (pkg/cli/cmds/server.go): a config
    # carrying them would be silently ignored by the node, so they are errors here.
    for key in ("flannel-iface", "cluster-init", "docker", "advertise-adress"):
        with pytest.raises(ValueError, match=key):
            config_yaml.check_keys({"node-name": "x", key: "y"}, "server")
    with pytest.raises(ValueError, match="tls-san"):
        config_yaml.check_keys({"tls-san": ["x"]}, "agent")  # a server-only flag


def test_an_agent_must_join_and_s3_needs_credentials() -> None:
    with pytest.raises(ValueError, match="must join"):
        config_yaml.node_config(W0, CLUSTER, token="t", agent_token="a", server_url=None)
    s3 = RkeSettings(etcd=EtcdSettings(s3=EtcdS3Settings(bucket="mc-test-etcd", endpoint="e")))
    with pytest.raises(ValueError, match="S3 credentials"):
        config_yaml.node_config(
            A0,
            config_yaml.ConfigYamlSettings("c", s3, False),
            token="t",
            agent_token="a",
            server_url=None,
        )


def test_masked_hides_every_secret_key() -> None:
    s3 = RkeSettings(etcd=EtcdSettings(s3=EtcdS3Settings(bucket="mc-test-etcd", endpoint="e")))
    cluster = config_yaml.ConfigYamlSettings("c", s3, False)
    secrets = ("t0k3n-9f", "ag3nt-9f", "acc3ss-9f", "s3cr3t-9f")
    document = config_yaml.node_config(
        A0,
        cluster,
        token=secrets[0],
        agent_token=secrets[1],
        server_url=None,
        s3=config_yaml.S3Credentials(*secrets[2:]),
    )
    text = config_yaml.render(config_yaml.masked(document))
    assert not [s for s in secrets if s in text]
    assert text.count("[secret]") == 4


def test_external_ip_dropin_writes_the_default_routes_source(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ip").write_text(
        "#!/bin/sh\necho '1.1.1.1 via 203.0.113.1 dev eth0 src 203.0.113.7 uid 0'\n"
    )
    (fake / "ip").chmod(0o755)
    env = {"PATH": f"{fake}:/usr/bin:/bin", "MULTICLOUD_DROPIN_DIR": str(tmp_path / "d")}
    script = config_yaml.external_ip_dropin("default-route")
    subprocess.run(["sh", "-c", script], env=env, check=True, timeout=30)
    dropin = yaml.safe_load((tmp_path / "d" / "50-node-external-ip.yaml").read_text())
    assert dropin == {"node-external-ip": "203.0.113.7"}
    assert config_yaml.unknown_keys(dropin, "agent") == []
    assert "169.254" not in script  # never the metadata service (the guard closes it)
    for other in ("floating-ip", "guess"):  # a floating IP is on no interface to read
        with pytest.raises(ValueError):
            config_yaml.external_ip_dropin(other)


def test_a_floating_ip_is_written_into_config_yaml_by_the_program() -> None:
    """The metadata guard closes 169.254.169.254 after cloud-init, so a node cannot ask it
    for its floating IP on a later boot or re-run: the program allocates the floating IP
    before the VM and puts it into config.yaml (no boot-time lookup at all)."""
    from rke2.component import rke2_files

    floating = with_("sites.home.floatingIpPool", "public", with_("engine", "rke2"))
    config = check_stack(with_("sites.home.sshVia", "public", floating))[0]
    version = config.settings.kubernetes_version
    plan = plan_join(config.nodes, rebuild=(), previous=None, kubernetes_version=version)
    home = [n for n in config.nodes if n.site == "home"]
    for spec in home:
        files = rke2_files(
            spec, config, plan, token="t" * 64, agent_token="a" * 64, interface="ztabc",
            s3=None, public_address="203.0.113.77",
        )  # fmt: skip
        assert yaml.safe_load(files.config_yaml)["node-external-ip"] == "203.0.113.77"
        assert files.external_ip_script is None
    with pytest.raises(ValueError, match="floating IP"):
        rke2_files(
            home[0], config, plan, token="t" * 64, agent_token=None, interface="ztabc", s3=None
        )
    # a public network keeps the boot-time drop-in, read from the node's own route
    ramnode = next(n for n in config.nodes if n.site == "ramnode")
    files = rke2_files(
        ramnode, config, plan, token="t" * 64, agent_token=None, interface="ztabc", s3=None
    )
    assert "node-external-ip" not in yaml.safe_load(files.config_yaml)
    assert files.external_ip_script is not None and "169.254" not in files.external_ip_script


# --- the join plan ---------------------------------------------------------------------


def test_first_deployment_one_server_initializes_everyone_joins_it() -> None:
    plan = plan_join(NODES, rebuild=(), previous=None, kubernetes_version=VERSION)
    assert plan.initializing == [A0.name]  # the lowest overlay address
    specs = {n.name: n for n in NODES}
    for node in NODES:
        if node is not A0:
            assert plan.server_url(node.name, specs) == f"https://{A0.zerotier_ip}:9345"
    assert plan.record.servers == (A0.name, B0.name, C0.name)
    assert plan.record.init_server == A0.name


def test_an_existing_cluster_initializes_nothing_and_new_servers_join() -> None:
    nodes = [*NODES, spec("d", "master", 0, 4)]
    plan = plan_join(
        nodes, rebuild=(), previous=record(A0.name, B0.name, C0.name), kubernetes_version=VERSION
    )
    assert plan.targets["mc-t-d-master-0"] == A0.name
    assert plan.targets[A0.name] == B0.name  # the init server, if ever rebuilt, joins
    assert None not in plan.targets.values()


def test_a_rebuilt_server_joins_another_one() -> None:
    plan = plan_join(
        NODES,
        rebuild=[A0.name],
        previous=record(A0.name, B0.name, C0.name),
        kubernetes_version=VERSION,
    )
    assert plan.anchor == B0.name
    assert plan.targets[A0.name] == B0.name
    assert None not in plan.targets.values()


def test_scaling_workers_changes_no_existing_target() -> None:
    previous = record(A0.name, B0.name, C0.name)
    before = plan_join(NODES, rebuild=(), previous=previous, kubernetes_version=VERSION)
    after = plan_join(
        [*NODES, spec("b", "worker", 1, 2), spec("e", "worker", 0, 5)],
        rebuild=(),
        previous=previous,
        kubernetes_version=VERSION,
    )
    assert {k: after.targets[k] for k in before.targets} == before.targets


@pytest.mark.parametrize(
    ("nodes", "rebuild", "previous", "message"),
    [
        (NODES, [A0.name], None, "no record of an existing RKE2 cluster"),
        (NODES, [A0.name, B0.name], record(A0.name, B0.name, C0.name), "2 etcd members at once"),
        ([A0, W0], [], record(B0.name, C0.name), "3 etcd members at once"),
        ([A0, W0], [A0.name], record(A0.name), "no server of the existing cluster stays"),
        ([W0], [], None, "no server"),
        (NODES, [], record(A0.name, version="v1.36.1+rke2r1"), "RKE2 does not support downgrades"),
    ],
)
def test_unsafe_changes_are_refused(
    nodes: list[NodeSpec], rebuild: list[str], previous: ClusterRecord | None, message: str
) -> None:
    with pytest.raises(JoinError, match=message):
        plan_join(nodes, rebuild=rebuild, previous=previous, kubernetes_version=VERSION)


@pytest.mark.parametrize(
    ("rebuild", "previous_nodes", "message"),
    [
        ([B0.name, W0.name], [], f"server {B0.name} leaves .* \\({W0.name}\\)"),
        ([B0.name], ["mc-t-e-worker-0"], r"removed or rebuilt too \(mc-t-e-worker-0\)"),
    ],
)
def test_a_server_leaves_alone(rebuild: list[str], previous_nodes: list[str], message: str) -> None:
    """A rebuilt server with a rebuilt or removed worker in the same update is refused: the
    worker's drain runs against the server stored at the previous update."""
    previous = record(A0.name, B0.name, C0.name)
    with pytest.raises(JoinError, match=message):
        plan_join(
            NODES, rebuild=rebuild, previous=previous, kubernetes_version=VERSION,
            previous_nodes=[n.name for n in NODES] + previous_nodes,
        )  # fmt: skip
    # alone it works (quorum: two of three stay), and so do workers alone
    for alone in ([B0.name], [W0.name]):
        plan_join(
            NODES, rebuild=alone, previous=previous, kubernetes_version=VERSION,
            previous_nodes=[n.name for n in NODES],
        )  # fmt: skip


def _server_changes(nodes: list[NodeSpec]) -> list[tuple[list[NodeSpec], list[str]]]:
    """Every single-server change an update may make to ``nodes``: (its nodes, its
    rebuild list). Added servers take an address below, between and above the others."""
    servers = [n for n in nodes if "etcd" in n.roles]
    changes: list[tuple[list[NodeSpec], list[str]]] = []
    if len(servers) > 1:  # one server is neither rebuilt nor removed (plan_join refuses)
        changes += [(nodes, [s.name]) for s in servers]
        changes += [([n for n in nodes if n is not s], []) for s in servers]
    taken = {n.zerotier_ip for n in nodes}
    added = [spec(site, "master", 1, site_id) for site, site_id in (("a", 1), ("c", 3), ("z", 9))]
    changes += [([*nodes, a], []) for a in added if a.zerotier_ip not in taken]
    return changes


def test_drains_run_on_a_server_that_stays_and_no_choice_settles_late() -> None:
    """Over every sequence of three single-server changes (rebuilds, removals, additions,
    the anchor's too) after a first deployment:

    - a node that leaves (removed or rebuilt) is drained by the runner the update before
      stored (pulumi-command's Delete reads the old state): a server other than it that
      stays through this update;
    - every drain command points at a server that was in the cluster before the update
      and stays through it (one added in it may fail to join);
    - the quiet update after each plans the same anchor, runners and record, so
      `pulumi preview --expect-no-changes` passes after every step of `make roll`.
    """
    start = plan_join(NODES, rebuild=(), previous=None, kubernetes_version=VERSION)
    frontier = [(NODES, start)]
    steps = 0
    for _ in range(3):
        following = []
        for nodes, before in frontier:
            for after_nodes, rebuild in _server_changes(nodes):
                plan = plan_join(
                    after_nodes,
                    rebuild=rebuild,
                    previous=before.record,
                    kubernetes_version=VERSION,
                    previous_nodes=[n.name for n in nodes],
                )
                names = {n.name for n in after_nodes}
                leaving = [*rebuild, *({n.name for n in nodes} - names)]
                for node in leaving:
                    drainer = before.runner(node)
                    assert drainer != node and drainer in names and drainer not in rebuild
                # a drain is never pointed at a server that may still fail to join (unless
                # no other server stays), nor at the node itself
                staying = set(before.record.servers) & names - set(rebuild)
                runners = {n: plan.runner(n) for n in names}
                assert all(r != n for n, r in runners.items() if len(plan.record.servers) > 1)
                if staying - {plan.anchor}:
                    assert set(runners.values()) <= staying
                quiet = plan_join(
                    after_nodes,
                    rebuild=(),
                    previous=plan.record,
                    kubernetes_version=VERSION,
                    previous_nodes=sorted(names),
                )
                assert (quiet.anchor, quiet.record) == (plan.anchor, plan.record)
                assert {n: quiet.runner(n) for n in names} == {n: plan.runner(n) for n in names}
                following.append((after_nodes, plan))
                steps += 1
        frontier = following
    assert steps > 700  # 738 updates


def test_the_record_round_trips_and_refuses_foreign_values() -> None:
    plan = plan_join(NODES, rebuild=(), previous=None, kubernetes_version=VERSION)
    assert ClusterRecord.from_output(plan.record.to_output()) == plan.record
    assert ClusterRecord.from_output(None) is None
    with pytest.raises(JoinError, match="format"):
        ClusterRecord.from_output({"servers": []})


# --- stack config ----------------------------------------------------------------------


def test_engine_and_kubernetes_version_per_engine() -> None:
    assert check_stack(base())[0].settings.engine == "rke"
    rke2 = check_stack(with_("engine", "rke2"))[0].settings
    assert rke2.kubernetes_version == VERSION  # the engine's default
    with pytest.raises(ConfigError, match=r"multicloud:kubernetesVersion: v1\.30\.14-rancher1-1"):
        check_stack(with_("engine", "rke2", with_("kubernetesVersion", "v1.30.14-rancher1-1")))
    with pytest.raises(ConfigError, match=r"multicloud:kubernetesVersion: v1\.34\.1"):
        check_stack(with_("engine", "rke2", with_("kubernetesVersion", "v1.34.1+rke2r1")))
    with pytest.raises(ConfigError, match="multicloud:engine"):
        check_stack(with_("engine", "k3s"))


def test_versions_order_like_rke2_releases() -> None:
    assert release.version_key("v1.35.7+rke2r2") > release.version_key("v1.35.7+rke2r1")
    assert release.version_key("v1.36.0+rke2r1") > release.version_key("v1.35.10+rke2r3")
    with pytest.raises(ValueError):
        release.version_key("v1.35.7-rancher1-1")


# --- manifests and upgrades ------------------------------------------------------------


def test_helm_chart_configs_validate_against_the_crd() -> None:
    schema = crd_schema(REFERENCE / "helm.cattle.io_helmchartconfigs.yaml")
    files = manifests.server_manifests("ztabcdef12", ingress_enabled=True)
    for manifest in files.values():
        jsonschema.Draft202012Validator(schema).validate(manifest)
        kubernetes_validate.validate(  # its metadata, as a built-in object would have it
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": manifest["metadata"]},
            MINOR,
            strict=True,
        )
    canal = yaml.safe_load(files["multicloud-rke2-canal.yaml"]["spec"]["valuesContent"])
    assert canal == {"flannel": {"iface": "ztabcdef12"}}
    ingress = yaml.safe_load(files["multicloud-rke2-ingress-nginx.yaml"]["spec"]["valuesContent"])
    assert ingress["controller"]["nodeSelector"]["multicloud.io/ingress-controller"] == "true"
    assert set(manifests.server_manifests("zt0", ingress_enabled=False)) == {
        "multicloud-rke2-canal.yaml"
    }
    with pytest.raises(jsonschema.ValidationError):  # the schema really checks
        jsonschema.Draft202012Validator(schema).validate({"spec": {"failurePolicy": "sometimes"}})


def test_plans_validate_and_upgrade_servers_first_one_node_at_a_time() -> None:
    from components.config.cluster import UpgradeSettings

    schema = crd_schema(REFERENCE / "system-upgrade-controller" / "upgrade.cattle.io_plans.yaml")
    server, agent = upgrade.plans(VERSION, UpgradeSettings())
    for plan in (server, agent):
        jsonschema.Draft202012Validator(schema).validate(plan)
        assert plan["spec"]["concurrency"] == 1
        assert plan["spec"]["version"] == VERSION
    assert agent["spec"]["prepare"]["args"] == ["prepare", server["metadata"]["name"]]
    assert agent["spec"]["drain"]["timeout"] == "300s"  # a string: an int means nanoseconds
    bad = {**server, "spec": {**server["spec"], "concurrency": "one"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(bad)


def test_controller_objects_are_the_release_asset() -> None:
    # kubernetes-validate checks each of them as registered, in test_rke2_program.py.
    objects = upgrade.controller_objects()
    assert len(objects) == 10
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    images = [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]]
    assert images == [f"rancher/system-upgrade-controller:{upgrade.SUC_VERSION}"]
    for obj in objects:
        if obj["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == upgrade.SUC_NAMESPACE, obj["metadata"]
        for subject in obj.get("subjects", []):
            assert subject["namespace"] == upgrade.SUC_NAMESPACE


# --- scripts ---------------------------------------------------------------------------


# The install script's download and checksum checks: tests/scripts/test_checksums.py.


def test_the_pinned_checksum_is_recorded_or_null() -> None:
    value = release.release()["artifacts"]["tarball_sha256"]
    assert value is None or (len(value) == 64 and int(value, 16) >= 0)


def test_node_and_server_scripts_are_valid_sh_and_bounded() -> None:
    names = [A0.name, W0.name]
    ready = scripts.cluster_ready_script(names, 600)
    leave = scripts.remove_node_script(W0.name, 300, is_server=False)
    install = scripts.install_script(VERSION, "server", A0.zerotier_ip)
    for script in (ready, leave, install):
        subprocess.run(["sh", "-n"], input=script, text=True, check=True)
    assert "deadline" in ready and all(n in ready for n in names)
    assert "did not join" in ready and 'kubectl drain "$node"' in leave
    assert "--timeout=300s" in leave and "delete node" in leave
    with pytest.raises(ValueError):
        scripts.cluster_ready_script(["Bad Name"], 600)


def test_kubeconfig_points_at_the_deployer_reachable_address() -> None:
    text = (
        "apiVersion: v1\nkind: Config\nclusters:\n- name: default\n  cluster:\n"
        "    certificate-authority-data: Q0E=\n    server: https://127.0.0.1:6443\n"
    )
    rewritten = yaml.safe_load(rewrite_kubeconfig(text, "203.0.113.9"))
    cluster = rewritten["clusters"][0]["cluster"]
    assert cluster["server"] == "https://203.0.113.9:6443"
    assert cluster["tls-server-name"] == "kubernetes"
    assert cluster["certificate-authority-data"] == "Q0E="
    assert rewrite_kubeconfig("", "x") == ""
    with pytest.raises(ValueError):
        rewrite_kubeconfig("apiVersion: v1\n", "x")


def test_a_leaving_node_is_drained_from_another_server() -> None:
    plan = plan_join(NODES, rebuild=(), previous=None, kubernetes_version=VERSION)
    assert plan.runner(W0.name) == plan.anchor == A0.name
    assert plan.runner(A0.name) == B0.name
    alone = plan_join([A0, W0], rebuild=(), previous=None, kubernetes_version=VERSION)
    assert alone.runner(A0.name) == A0.name  # a single server: only itself is left


def test_an_rke_stack_is_not_taken_over_in_place() -> None:
    from rke2.join import check_not_rke

    with pytest.raises(JoinError, match="multicloud:engine: this stack's cluster was installed"):
        check_not_rke([{"name": "mc-t-a-master-0"}], None)
    check_not_rke(None, None)  # a new stack
    check_not_rke([{"name": "x"}], record(A0.name))  # an rke2 stack


def test_preflight_knows_rke2s_ports_and_that_they_stay_off_the_internet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = {p.path: p for p in check_stack(with_("engine", "rke2"))[1].paths}
    expected = {
        "rke2-supervisor": "9345/tcp",
        "rke2-kube-api": "6443/tcp",
        "rke2-etcd": "2379-2381/tcp",
        "rke2-kubelet": "10250/tcp",
        "rke2-vxlan": "8472/udp",
        "rke2-canal-health": "9099/tcp",
    }
    assert {k: rows[k].port for k in expected} == expected
    assert all(rows[k].verdict == "ok" for k in expected)
    assert not [p for p in check_stack(base())[1].paths if p.path.startswith("rke2-")]

    from components.sites.firewall import SitePolicy

    admits = SitePolicy.admits
    monkeypatch.setattr(
        SitePolicy,
        "admits",
        lambda self, node, protocol, port, source: (
            port == 10250 or admits(self, node, protocol, port, source)
        ),
    )
    with pytest.raises(ConfigError, match=r"opens 10250/tcp .* to the internet"):
        check_stack(with_("engine", "rke2"))


def test_rke2_takes_ssh_over_the_overlay_rke_does_not() -> None:
    deployer = {"lan": "home", "overlay": True}
    overlay = with_("sites.ramnode.sshVia", "overlay", with_("deployer", deployer))
    with pytest.raises(ConfigError, match="sshVia"):
        check_stack(overlay)
    assert check_stack(with_("engine", "rke2", overlay))[0].settings.engine == "rke2"


def test_kubelets_get_the_http2_environment_when_the_grace_is_short() -> None:
    """As the RKE path (rke/cluster_yml.py): only while the grace is not above 45 s."""
    short = RkeSettings(node_monitor_grace_period_seconds=30)
    assert short.kubelet_http2_env  # the RKE path passes it as kubelet extra_env
    path, text = config_yaml.service_environment(short, "agent") or ("", "")
    assert path == "/etc/default/rke2-agent"
    assert dict(line.split("=") for line in text.split()) == {
        k: str(v) for k, v in short.kubelet_http2_env.items()
    }
    long = RkeSettings(node_monitor_grace_period_seconds=60)
    assert config_yaml.service_environment(long, "server") is None


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("rke.dnsUpstreams", ["1.1.1.1"]),
        ("rke.sshAgentAuth", False),
        ("rke.upgrade.maxUnavailableWorker", 2),
    ],
)
def test_rke_only_keys_are_refused_with_rke2(path: str, value: Any) -> None:
    raw = with_("engine", "rke2")
    raw.setdefault("rke", {}).setdefault("upgrade", {})
    node = raw
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    if not raw["rke"]["upgrade"]:
        del raw["rke"]["upgrade"]
    with pytest.raises(ConfigError, match=f"multicloud:{path}: only the rke engine reads it"):
        check_stack(raw)
    raw["engine"] = "rke"
    check_stack(raw)  # fine for rke


# -- the ready script waits for rke2-ingress-nginx's admission webhook -----------------------

# `sudo` and RKE2's kubectl on a node, as the ready script calls them: every node Ready; the
# first READY_AFTER looks at the ingress DaemonSet find no available pod, no ready webhook
# endpoint and no CA bundle (the names in rke2.ingress.RKE2_INGRESS; anything else fails).
_FAKE_SUDO = """#!/bin/sh
case "$1" in
  test) exit 0 ;;
  cat) echo "apiVersion: v1 # the kubeconfig"; exit 0 ;;
  /var/lib/rancher/rke2/bin/kubectl) shift 3 ;;
  *) echo "fake sudo: $*" >&2; exit 99 ;;
esac
looks=@DIR@/looks
svc=kubernetes.io/service-name=rke2-ingress-nginx-controller-admission
case "$*" in "-n kube-system get daemonset "*) echo >> "$looks" ;; esac
n=$(wc -l < "$looks"); ready=false; [ "$n" -gt @READY_AFTER@ ] && ready=true
case "$*" in
  "get --raw /readyz") exit 0 ;;
  "get node "*) echo True ;;
  "-n kube-system get daemonset rke2-ingress-nginx-controller -o "*)
    $ready && echo "3/3/2/2/2" || echo "3/3/2/2/" ;;
  "-n kube-system get endpointslices -l $svc -o "*)
    $ready && echo "10.42.3.4" ;;
  "get validatingwebhookconfiguration rke2-ingress-nginx-admission -o "*)
    $ready && echo "Q0E=" ;;
  *) echo "fake kubectl: $*" >&2; exit 98 ;;
esac
"""


def _run_ready(tmp_path: Path, script: str, ready_after: int) -> subprocess.CompletedProcess[str]:
    (tmp_path / "looks").write_text("")
    sudo = tmp_path / "sudo"
    sudo.write_text(
        _FAKE_SUDO.replace("@DIR@", str(tmp_path)).replace("@READY_AFTER@", str(ready_after))
    )
    sudo.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=30)


def test_the_ready_script_waits_for_the_ingress_admission_webhook(tmp_path: Path) -> None:
    script = scripts.cluster_ready_script([A0.name], 60, ingress=True, poll_seconds=0.01)
    done = _run_ready(tmp_path, script, ready_after=3)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "apiVersion: v1 # the kubeconfig\n"  # only the kubeconfig
    assert len((tmp_path / "looks").read_text()) == 4  # three not ready, then ready
    assert "ingress-nginx is ready" in done.stderr


def test_the_ready_script_fails_naming_what_of_ingress_never_got_ready(tmp_path: Path) -> None:
    script = scripts.cluster_ready_script([A0.name], 1, ingress=True, poll_seconds=0.05)
    done = _run_ready(tmp_path, script, ready_after=10**6)
    assert done.returncode == 1 and done.stdout == ""  # no kubeconfig: the command fails
    assert "not ready after 1s" in done.stderr
    assert "DaemonSet kube-system/rke2-ingress-nginx-controller: 0 of 2 pods available" in (
        done.stderr
    )
    # without ingress there is nothing to wait for (and nothing is asked)
    plain = scripts.cluster_ready_script([A0.name], 1, ingress=False, poll_seconds=0.05)
    assert _run_ready(tmp_path, plain, ready_after=10**6).returncode == 0
    assert (tmp_path / "looks").read_text() == ""


# A stand-in sudo running RKE2's kubectl as kubectl answers (pkg/cmd/get/get.go: with
# --ignore-not-found a missing Node prints nothing and exits 0, without it NotFound fails;
# an unreachable API server fails "Unable to connect to the server" either way; a hung one
# answers only with a --request-timeout, kubectl's default 0 waits without bound; drain and
# delete print as pkg/cmd/drain and pkg/cmd/delete do). @STATE@: present, gone, down, hung,
# or left (this server's own Node was deleted: RKE2 removed its kube-apiserver manifest,
# pkg/rke2/spc.go cleanupStaticPods). Every kubectl call is logged.
_LEAVE_SUDO = """#!/bin/sh
if [ "$1 $2 $3" = "test -e /var/lib/rancher/rke2/agent/pod-manifests/kube-apiserver.yaml" ]; then
  [ @STATE@ != left ]; exit $?
fi
[ "$1" = /var/lib/rancher/rke2/bin/kubectl ] || { echo "fake sudo: $*" >&2; exit 99; }
shift 3
echo "$*" >> @DIR@/calls
case "$*" in *--request-timeout=*) bounded=yes ;; *) bounded=no ;; esac
case @STATE@ in
  down) echo "Unable to connect to the server: dial tcp 127.0.0.1:6443:" \
    "connect: connection refused" >&2; exit 1 ;;
  hung) [ $bounded = yes ] || sleep 60
    echo "Unable to connect to the server: net/http: request canceled" >&2; exit 1 ;;
esac
case "$1 $2 @STATE@" in
  "get node present") echo "node/$3" ;;
  "get node gone")
    case "$*" in *--ignore-not-found*) exit 0 ;; esac
    echo "Error from server (NotFound): nodes \\"$3\\" not found" >&2; exit 1 ;;
  "drain "*) echo "node/$2 cordoned"; echo "node/$2 drained" ;;
  "delete node present") echo "node \\"$3\\" deleted" ;;
  *) echo "fake kubectl: $*" >&2; exit 98 ;;
esac
"""


@pytest.mark.parametrize("state", ["down", "hung"])
def test_a_leave_fails_and_keeps_the_vm_when_the_api_server_does_not_answer(
    tmp_path: Path, state: str
) -> None:
    """Any kubectl failure but NotFound must fail the leave command: Pulumi then keeps the
    VM instead of deleting it undrained with its etcd member still in the cluster."""
    done = _run_leave(tmp_path, state)
    assert done.returncode != 0
    assert "Unable to connect to the server" in done.stderr
    assert f"node {A0.name} is in the cluster: kubectl on fake-server failed" in done.stderr
    assert "Its VM is kept" in done.stderr and "run pulumi up again" in done.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert [c.split()[0] for c in calls] == ["get"], "no drain or delete"


def test_a_leave_of_a_node_not_in_the_cluster_succeeds_and_one_present_is_drained_first(
    tmp_path: Path,
) -> None:
    gone = _run_leave(tmp_path, "gone")
    assert gone.returncode == 0, gone.stderr
    assert f"node {A0.name} is not in the cluster; nothing to drain" in gone.stderr
    assert len((tmp_path / "calls").read_text().splitlines()) == 1
    (tmp_path / "calls").unlink()
    present = _run_leave(tmp_path, "present")
    assert present.returncode == 0, present.stderr
    calls = [c.split()[:2] for c in (tmp_path / "calls").read_text().splitlines()]
    assert calls == [["get", "node"], ["drain", A0.name], ["delete", "node"]]


def test_a_leave_run_on_a_server_that_left_itself_has_nothing_to_drain(tmp_path: Path) -> None:
    """`pulumi destroy` drains every node, the last server from a runner whose own Node is
    already gone: its API is gone for good, so failing would keep the stack undestroyable."""
    left = _run_leave(tmp_path, "left")
    assert left.returncode == 0, left.stderr
    assert "fake-server has left the cluster itself" in left.stderr
    assert not (tmp_path / "calls").exists(), "no kubectl call"


def _run_leave(tmp_path: Path, state: str) -> subprocess.CompletedProcess[str]:
    sudo = tmp_path / "sudo"
    sudo.write_text(_LEAVE_SUDO.replace("@DIR@", str(tmp_path)).replace("@STATE@", state))
    sudo.chmod(0o755)
    hostname = tmp_path / "hostname"
    hostname.write_text("#!/bin/sh\necho fake-server\n")
    hostname.chmod(0o755)
    script = scripts.remove_node_script(A0.name, 300, is_server=True)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=20)

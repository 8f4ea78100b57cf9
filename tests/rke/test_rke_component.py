"""RkeCluster and the readiness gates under Pulumi mocks: wiring, secrets, no triggers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pulumi
import pytest
from google.protobuf import json_format

from components.cluster_node import ClusterNode
from components.config.cluster import RkeSettings
from components.nodes import NodeSpec
from rke.cluster_yml import ClusterYmlSettings
from rke.component import RkeCluster, runner_commands
from rke.etcd_leave import etcd_leave_script
from rke.readiness import (
    dial_error_limit,
    dial_wait_seconds,
    node_readiness,
    readiness_script,
)
from rke.runner.contract import CommandEnv, RestoreRequest, RunnerEnv
from rke.state import Result, encode_result
from tests.support.mocking import Recorder

SECRET_SIG = "4dabf18193072939515e22adb298388d"
PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAfakekeymaterial\n-----END OPENSSH PRIVATE KEY-----\n"
)
S3_SECRET = "s3-secret-value-xyz"
SETTINGS = ClusterYmlSettings(
    cluster_name="mc",
    ssh_user="debian",
    kubernetes_version="v1.30.14-rancher1-1",
    flannel_iface="ztks575eoa",
    overlay_cidr="10.147.0.0/16",
    rke=RkeSettings.model_validate(
        {"etcd": {"s3": {"bucket": "mc-etcd", "endpoint": "s3.example"}}}
    ),
)
RESTORE = "rke_etcd_snapshot_2026-11-29T06:00:00Z"
RESTORING = replace(
    SETTINGS,
    rke=RkeSettings.model_validate(
        {"etcd": {"s3": {"bucket": "mc-etcd", "endpoint": "s3.example"}},
         "restore": {"snapshot": RESTORE, "s3": True}}
    ),
)  # fmt: skip


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        outputs = dict(args.inputs)
        if args.typ == "command:remote:Command":
            outputs["stdout"] = f"machine-{args.name}"
        if args.typ == "command:local:Command":
            outputs["stdout"] = json.dumps({"kubeconfig": "KUBECONFIG-TEXT", "rkestate": "x"})
        if args.typ == "command:local:Command" and RESTORE in json.dumps(args.inputs):
            outputs["stdout"] = encode_result(Result("{}", "KUBECONFIG-V2", "", {}))
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        return {}, []


def spec(site: str, kind: str, index: int, roles: tuple[str, ...], octet: int) -> NodeSpec:
    return NodeSpec(
        name=f"mc-{site}-{kind}-{index}", site=site, kind=kind, index=index,  # type: ignore[arg-type]
        roles=roles, size="s", zerotier_ip=f"10.147.0.{octet}",
        ingress="public" if kind == "worker" else "none",
    )  # fmt: skip


def build(
    preview: bool, settings: ClusterYmlSettings = SETTINGS
) -> tuple[Recorder, dict[str, Any]]:
    pulumi.runtime.reset_options()
    mocks = Mocks()
    recorder = Recorder(mocks)
    pulumi.runtime.set_mocks(mocks, preview=preview, monitor=recorder)
    seen: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        specs = [
            spec("home", "master", 0, ("controlplane", "etcd"), 10),
            spec("ramnode", "master", 0, ("controlplane", "etcd"), 11),
            spec("do", "master", 0, ("controlplane", "etcd"), 12),
            spec("do", "worker", 0, ("worker",), 20),
        ]
        nodes = []
        for i, s in enumerate(specs):
            vm = pulumi.CustomResource("test:index:Vm", s.name, {})
            member = pulumi.CustomResource("test:index:Member", f"{s.name}-zt", {})
            address = pulumi.Output.from_input(f"203.0.113.{i + 1}")
            nodes.append(
                ClusterNode(spec=s, ssh_address=address, public_address=None, vm=vm, member=member)
            )
        gates = [
            node_readiness(n, "debian", pulumi.Output.secret(PRIVATE_KEY), "ztks575eoa")
            for n in nodes
        ]
        cluster = RkeCluster(
            "mc", nodes, settings, gates,
            ssh_private_key=pulumi.Output.secret(PRIVATE_KEY),
            s3_access_key=pulumi.Output.secret("AKIAFAKE0000"),
            s3_secret_key=pulumi.Output.secret(S3_SECRET),
        )  # fmt: skip

        def keep(values: list[Any]) -> None:
            seen["cluster_yml"], seen["kubeconfig"] = values
            seen["kubeconfig_secret"] = cluster.kubeconfig

        return pulumi.Output.all(cluster.cluster_yml, cluster.kubeconfig).apply(keep)

    program()
    return recorder, seen


@pytest.fixture(scope="module")
def recorded() -> tuple[Recorder, dict[str, Any]]:
    return build(preview=False)


def by_type(recorder: Recorder, typ: str) -> list[Any]:
    return [r for r in recorder.requests if r.type == typ]


def gates(recorder: Recorder) -> list[Any]:
    """The readiness gates (the other remote commands remove etcd members)."""
    return [r for r in by_type(recorder, "command:remote:Command") if r.name.endswith("-ready")]


def urn_of(recorder: Recorder, typ: str, name: str) -> str:
    return next(urn for urn in recorder.resources if urn.endswith(f"{typ}::{name}"))


def test_command_depends_on_every_gate_and_is_parented(
    recorded: tuple[Recorder, dict[str, Any]],
) -> None:
    recorder, _ = recorded
    [command] = by_type(recorder, "command:local:Command")
    names = {r.name for r in gates(recorder)}
    assert len(names) == 4
    gate_urns = {u for u in recorder.resources if u.split("::")[-1] in names}
    assert gate_urns <= set(command.dependencies)
    assert command.parent.endswith("multicloud:rke:RkeCluster::mc")


def test_each_gate_depends_on_its_vm_and_member(recorded: tuple[Recorder, dict[str, Any]]) -> None:
    recorder, _ = recorded
    for gate in gates(recorder):
        node = gate.name.removesuffix("-ready")
        deps = set(gate.dependencies)
        assert urn_of(recorder, "test:index:Vm", node) in deps
        assert urn_of(recorder, "test:index:Member", f"{node}-zt") in deps
        inputs = json_format.MessageToDict(gate.object)
        assert "cloud-init status --wait" in inputs["create"]
        assert inputs["triggers"] == [f"{node}-id"]  # a replaced VM re-runs the gate


def test_cluster_yml_on_stdin_not_in_triggers(recorded: tuple[Recorder, dict[str, Any]]) -> None:
    recorder, seen = recorded
    [command] = by_type(recorder, "command:local:Command")
    inputs = json_format.MessageToDict(command.object)
    assert "triggers" not in inputs
    assert inputs["stdin"] == seen["cluster_yml"]  # no 128 KiB limit, a readable diff
    assert "canal_iface: ztks575eoa" in inputs["stdin"]
    assert "address: 203.0.113.4" in inputs["stdin"]
    env = inputs["environment"]
    assert set(env) == {
        "RKE_STATE_KEY", "RKE_NODE_IDS", "RKE_SSH_PRIVATE_KEY", "RKE_S3_ACCESS_KEY",
        "RKE_S3_SECRET_KEY", "RKE_HOST_KEYS",
    }  # fmt: skip
    assert env["RKE_STATE_KEY"] == "project/stack"  # the mocks' project and stack
    node_ids = env["RKE_NODE_IDS"]  # secret when the gates' connections are
    ids = json.loads(node_ids["value"] if isinstance(node_ids, dict) else node_ids)
    assert ids["mc-do-worker-0"] == "machine-mc-do-worker-0-ready"
    up, delete = runner_commands()
    assert inputs["create"] == inputs["update"] == up and up.endswith("-m rke.runner up")
    assert inputs["delete"] == delete and "rke.runner delete" in delete
    assert inputs["logging"] == "stderr"
    assert command.protect  # no destroy, --replace or rename forgets the cluster's state


def test_the_readiness_gate_waits_its_bound_however_dials_fail(
    recorded: tuple[Recorder, dict[str, Any]],
) -> None:
    recorder, _ = recorded
    for gate in gates(recorder):
        connection = json_format.MessageToDict(gate.object)["connection"]
        connection = connection.get("value", connection)  # the provider marks it secret
        assert connection["dialErrorLimit"] == 188 and connection["perDialTimeout"] == 30
        assert gate.customTimeouts.create == gate.customTimeouts.update == "960s"


def test_dial_arithmetic_matches_pulumi_commands_backoff() -> None:
    # the k-th wait is min(0.1 * 1.5**k, 5) s; L errors allowed mean L waits
    assert dial_wait_seconds(1) == pytest.approx(0.1)
    assert dial_wait_seconds(10) == pytest.approx(11.333, abs=0.001)
    assert dial_wait_seconds(30) == pytest.approx(111.333, abs=0.001)  # the old limit: ~2 min
    assert dial_error_limit(15 * 60) == 188
    assert dial_wait_seconds(188) >= 900 > dial_wait_seconds(187)


def test_stdout_is_secret_and_secrets_are_wrapped(
    recorded: tuple[Recorder, dict[str, Any]],
) -> None:
    recorder, seen = recorded
    [command] = by_type(recorder, "command:local:Command")
    assert list(command.additionalSecretOutputs) == ["stdout", "stderr"]  # stderr: the log
    env = json_format.MessageToDict(command.object)["environment"]
    for key in ("RKE_SSH_PRIVATE_KEY", "RKE_S3_ACCESS_KEY", "RKE_S3_SECRET_KEY"):
        assert env[key][SECRET_SIG] == "1b47061264138c4ac30d75fd1eb44270"
    plain = json.dumps(
        {k: v for k, v in env.items() if not (isinstance(v, dict) and SECRET_SIG in v)}
    )
    assert S3_SECRET not in plain and "fakekeymaterial" not in plain
    assert S3_SECRET not in seen["cluster_yml"]
    assert seen["kubeconfig"] == "KUBECONFIG-TEXT"
    for gate in gates(recorder):
        connection = json_format.MessageToDict(gate.object)["connection"]
        assert SECRET_SIG in connection  # the provider marks the whole connection secret


def test_kubeconfig_output_is_secret(recorded: tuple[Recorder, dict[str, Any]]) -> None:
    _, seen = recorded
    out: pulumi.Output[str] = seen["kubeconfig_secret"]
    assert pulumi.runtime.sync_await._sync_await(out.is_secret())


def test_a_restore_reaches_the_runner_and_its_output_gives_the_kubeconfig() -> None:
    recorder, seen = build(preview=False, settings=RESTORING)
    [command] = by_type(recorder, "command:local:Command")
    env = json_format.MessageToDict(command.object)["environment"]
    assert json.loads(env["RKE_RESTORE"]) == {"snapshot": RESTORE, "s3": True}
    assert seen["kubeconfig"] == "KUBECONFIG-V2"  # read from the compressed payload


def test_the_runner_reads_what_the_component_writes() -> None:
    # one contract (rke.runner.contract): the registered environment, as the command's
    # process gets it (secrets unwrapped), decodes to the component's values
    recorder, _ = build(preview=False, settings=RESTORING)
    [command] = by_type(recorder, "command:local:Command")
    env = json_format.MessageToDict(command.object)["environment"]
    plain = {k: str(v["value"] if isinstance(v, dict) else v) for k, v in env.items()}
    given = RunnerEnv.from_env(plain)
    assert given.state_key == "project/stack"
    assert given.restore == RestoreRequest(RESTORE, True)
    assert given.ssh_private_key == PRIVATE_KEY and given.s3_secret_key == S3_SECRET
    assert given.node_ids["mc-do-worker-0"] == "machine-mc-do-worker-0-ready"
    assert CommandEnv.from_env(plain).to_env() == plain  # nothing the runner ignores


def test_preview_survives_unknown_outputs() -> None:
    recorder, _ = build(preview=True)
    assert by_type(recorder, "command:local:Command")


def test_missing_s3_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="S3"):
        RkeCluster("x", [], SETTINGS, [])


@pytest.mark.parametrize("shell", ["bash", "dash"])
def test_readiness_script_is_valid_shell(shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} not installed")
    script = readiness_script("mc-home-master-0", "10.147.0.10", "ztks575eoa", 60)
    subprocess.run([shell, "-n"], input=script, text=True, check=True)
    assert "timeout" in script and "' inet 10.147.0.10/'" in script


def test_readiness_script_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError):
        readiness_script("n", "10.147.0.10", "zt0; rm -rf /")
    with pytest.raises(ValueError):
        readiness_script("n", "not-an-ip", "zt0")


# --- the etcd member removal a rebuilt or removed master runs before its VM goes --------

# A stand-in `docker` for RKE's etcd container, answering as etcdctl v3 does: `member list`
# in the simple format (ctlv3/command/printer.go makeMemberListTable: hex ID, status, name,
# peer URLs, client URLs, is learner, joined with ", "), `endpoint health --cluster` one line
# per member (healthy on stdout, unhealthy on stderr and exit 1: ep_command.go), `member
# remove <hex ID>`.
FAKE_DOCKER = """#!{python}
import json, sys
world_path = {world!r}
world = json.load(open(world_path))
args = sys.argv[1:]
if args[:2] == ["inspect", "etcd"]:
    sys.exit(0 if world["container"] else 1)
if args[:3] != ["exec", "etcd", "etcdctl"] or not world.get("running", True):
    print("Error response from daemon: container etcd is not running", file=sys.stderr)
    sys.exit(1)
command = args[3:]
members = world["members"]
if command == ["member", "list"]:
    for m in members:
        url = "https://%s:2379" % m["ip"]
        print(", ".join(["%x" % m["id"], "started", m["name"], "https://%s:2380" % m["ip"],
                         url, "false"]))
elif command == ["endpoint", "health", "--cluster"]:
    bad = False
    for m in members:
        url = "https://%s:2379" % m["ip"]
        if m["healthy"]:
            print("%s is healthy: successfully committed proposal: took = 2ms" % url)
        else:
            print("%s is unhealthy: failed to commit proposal: context deadline exceeded" % url,
                  file=sys.stderr)
            bad = True
    sys.exit(1 if bad else 0)
elif command[:2] == ["member", "remove"]:
    target = int(command[2], 16)
    world["removed"].append(target)
    world["members"] = [m for m in members if m["id"] != target]
    json.dump(world, open(world_path, "w"))
    print("Member %x removed from cluster 7e1d" % target)
else:
    sys.exit(2)
"""


def _etcd_world(tmp_path: Path, healthy: dict[str, bool], container: bool = True,
                running: bool = True) -> Path:  # fmt: skip
    world = tmp_path / "world.json"
    members = [
        {"id": 0x8E9E05C52164694D + i, "name": f"etcd-mc-{n}", "ip": f"10.147.0.{10 + i}",
         "healthy": ok}
        for i, (n, ok) in enumerate(healthy.items())
    ]  # fmt: skip
    world.write_text(json.dumps(
        {"members": members, "removed": [], "container": container, "running": running}
    ))  # fmt: skip
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER.format(python=sys.executable, world=str(world)))
    docker.chmod(0o755)
    return world


def _leave(tmp_path: Path, node: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    result = subprocess.run(
        ["sh", "-c", etcd_leave_script(node)], env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    return result, json.loads((tmp_path / "world.json").read_text())


def test_a_leaving_master_is_removed_from_etcd_when_the_others_keep_quorum(
    tmp_path: Path,
) -> None:
    _etcd_world(tmp_path, {"a": True, "b": True, "c": True})
    result, world = _leave(tmp_path, "mc-b")
    assert result.returncode == 0, result.stderr
    assert [m["name"] for m in world["members"]] == ["etcd-mc-a", "etcd-mc-c"]
    assert world["removed"] == [0x8E9E05C52164694D + 1]  # the hex ID reached etcdctl


def test_a_dead_master_is_removed_too(tmp_path: Path) -> None:
    _etcd_world(tmp_path, {"a": True, "b": False, "c": True})  # b's machine already died
    result, world = _leave(tmp_path, "mc-b")
    assert result.returncode == 0, result.stderr
    assert "etcd-mc-b" not in [m["name"] for m in world["members"]]


def test_removal_that_would_lose_quorum_is_refused_and_keeps_the_machine(
    tmp_path: Path,
) -> None:
    _etcd_world(tmp_path, {"a": True, "b": True, "c": False})
    result, world = _leave(tmp_path, "mc-b")
    assert result.returncode != 0
    assert "1 of the 2 other members are healthy (quorum 2)" in result.stderr
    assert world["removed"] == [] and len(world["members"]) == 3


def test_a_member_already_gone_or_a_runner_without_etcd_is_nothing_to_do(
    tmp_path: Path,
) -> None:
    _etcd_world(tmp_path, {"a": True, "c": True})
    result, world = _leave(tmp_path, "mc-b")
    assert result.returncode == 0 and world["removed"] == []
    assert "not an etcd member" in result.stderr
    other = tmp_path / "other"
    other.mkdir()
    _etcd_world(other, {"a": True, "b": True, "c": True}, container=False)
    result, world = _leave(other, "mc-b")  # rke up removed this master from etcd
    assert result.returncode == 0 and world["removed"] == []


def test_an_etcd_that_does_not_answer_keeps_the_machine(tmp_path: Path) -> None:
    _etcd_world(tmp_path, {"a": True, "b": True, "c": True}, running=False)
    result, world = _leave(tmp_path, "mc-b")
    assert result.returncode != 0 and world["removed"] == []
    assert "its machine is kept" in result.stderr


def test_every_master_has_an_etcd_leave_command_on_another_master(
    recorded: tuple[Recorder, dict[str, Any]],
) -> None:
    recorder, _ = recorded
    leaves = [
        r for r in by_type(recorder, "command:remote:Command") if r.name.endswith("-etcd-leave")
    ]
    assert {r.name.removesuffix("-etcd-leave") for r in leaves} == {
        "mc-do-master-0", "mc-home-master-0", "mc-ramnode-master-0"
    }  # fmt: skip
    for leave in leaves:
        node = leave.name.removesuffix("-etcd-leave")
        inputs = json_format.MessageToDict(leave.object)
        assert inputs["triggers"] == [f"{node}-id"] and leave.deleteBeforeReplace
        assert f"member=etcd-{node}" in inputs["delete"]
        assert urn_of(recorder, "test:index:Vm", node) in set(leave.dependencies)


def test_the_only_master_refuses_to_leave(tmp_path: Path) -> None:
    """Rebuilding the only master would delete the cluster's data with its machine."""
    _etcd_world(tmp_path, {"a": True})
    result, world = _leave(tmp_path, "mc-a")
    assert result.returncode != 0 and world["removed"] == []
    assert "the only etcd member" in result.stderr

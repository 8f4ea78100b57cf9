"""rke.runner run as the Command runs it: a subprocess, against fake rke/kubectl on PATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from rke.cluster_yml import ClusterSettings, RkeNode, render_cluster_yml
from rke.runner import Redactor, check_etcd_quorum, decode_state, encode_state, plan_changes
from rke.runner import RunnerError as RunnerErr
from rke.settings import RkeSettings
from tests import fake_rke

ROOT = Path(__file__).resolve().parents[1]
SSH_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACDk1EXAMPLEONLYNOTAREALKEYk1EXAMPLEONLYNOTAREALKEYAAAAAA==\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
S3_ACCESS = "AKIAFAKEACCESSKEY123"
S3_SECRET = "s3cr3t/FAKE+secretkeyvalue0123456789"

SETTINGS = ClusterSettings(
    cluster_name="mc",
    ssh_user="debian",
    kubernetes_version="v1.30.14-rancher1-1",
    flannel_iface="ztks575eoa",
    overlay_cidr="10.147.0.0/16",
    rke=RkeSettings.model_validate({"etcd": {"s3": {"bucket": "snaps", "endpoint": "s3.example"}}}),
)


def master(site: str, i: int, address: str | None = None) -> RkeNode:
    ip = f"10.147.{i + 1}.10"
    return RkeNode(
        f"mc-{site}-master-0", address or f"203.0.113.{i + 1}", ip, ("controlplane", "etcd")
    )


def worker(site: str, i: int, n: int = 0) -> RkeNode:
    return RkeNode(
        f"mc-{site}-worker-{n}",
        f"198.51.100.{10 * i + n}",
        f"10.147.{i + 1}.{100 + n}",
        ("worker",),
    )


MASTERS = [master(s, i) for i, s in enumerate(("home", "ramnode", "do"))]
WORKERS = [worker(s, i) for i, s in enumerate(("home", "ramnode", "do"))]
CLUSTER = render_cluster_yml(MASTERS + WORKERS, SETTINGS)


@pytest.fixture
def sandbox(tmp_path: Path) -> dict[str, Path]:
    fake_rke.install(tmp_path / "bin")
    fake_rke.install(tmp_path / "bin-no-kubectl", kubectl=False)
    return {"tmp": tmp_path, "bin": tmp_path / "bin", "calls": tmp_path / "calls.jsonl"}


def run(
    sandbox: dict[str, Path],
    cluster_yml: str = CLUSTER,
    previous: str | None = None,
    mode: str = "up",
    cwd: Path = ROOT,
    bin_dir: Path | None = None,
    **extra: str,
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{bin_dir or sandbox['bin']}{os.pathsep}/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "HOME": str(sandbox["tmp"]),
        "FAKE_CALLS": str(sandbox["calls"]),
        "RKE_CLUSTER_YML": cluster_yml,
        "RKE_VERSION_REQUIRED": "v1.8.",
        "RKE_SSH_PRIVATE_KEY": SSH_KEY,
        "RKE_S3_ACCESS_KEY": S3_ACCESS,
        "RKE_S3_SECRET_KEY": S3_SECRET,
        **extra,
    }
    if previous is not None:
        env["PULUMI_COMMAND_STDOUT"] = previous
    return subprocess.run(
        [sys.executable, "-m", "rke.runner", mode],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def calls(sandbox: dict[str, Path]) -> list[dict[str, Any]]:
    path = sandbox["calls"]
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


def rke_ups(sandbox: dict[str, Path]) -> list[dict[str, Any]]:
    return [c for c in calls(sandbox) if c["tool"] == "rke"]


def assert_no_secrets(text: str, *extra: str) -> None:
    for secret in (S3_ACCESS, S3_SECRET, "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ", *extra):
        assert secret not in text


def first(sandbox: dict[str, Path], cluster_yml: str = CLUSTER) -> str:
    result = run(sandbox, cluster_yml)
    assert result.returncode == 0, result.stderr
    return result.stdout


# -- runs ------------------------------------------------------------------------------------


def test_first_run_prints_one_json_object_and_cleans_up(sandbox: dict[str, Path]) -> None:
    result = run(sandbox)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)  # exactly one JSON document, nothing else
    assert set(out) == {"clusterYml", "kubeconfig", "nodeIds", "rkestate", "version"}
    assert out["clusterYml"] == CLUSTER
    state = json.loads(decode_state(out["rkestate"]))
    assert state["generation"] == 1
    assert state["ca"] in out["kubeconfig"]
    [up] = rke_ups(sandbox)
    assert up["args"] == ["up", "--config", "cluster.yml"]
    assert up["previous_state"] is None
    assert up["cwd_mode"] == 0o700 and up["config_mode"] == 0o600
    assert not Path(up["cwd"]).exists()  # private temp dir removed afterwards
    assert up["key"] == SSH_KEY and up["key_mode"] == 0o600
    assert up["config"]["ssh_agent_auth"] is False
    s3 = up["config"]["services"]["etcd"]["backup_config"]["s3backupconfig"]
    assert (s3["access_key"], s3["secret_key"]) == (S3_ACCESS, S3_SECRET)
    for hidden in ("RKE_SSH_PRIVATE_KEY", "RKE_S3_SECRET_KEY", "PULUMI_COMMAND_STDOUT"):
        assert hidden not in up["env_keys"]
    assert_no_secrets(result.stderr, state["ca"])
    assert_no_secrets(out["clusterYml"])


def test_rerun_restores_previous_state_from_pulumi_stdout(sandbox: dict[str, Path]) -> None:
    previous = first(sandbox)
    expected = sandbox["tmp"] / "expected.rkestate"
    expected.write_text(decode_state(json.loads(previous)["rkestate"]))
    elsewhere = sandbox["tmp"] / "another-machine"  # lost working dir: nothing on disk
    elsewhere.mkdir()
    result = run(sandbox, previous=previous, cwd=elsewhere, FAKE_RKE_EXPECT_RKESTATE=str(expected))
    assert result.returncode == 0, result.stderr
    old = json.loads(decode_state(json.loads(previous)["rkestate"]))
    new = json.loads(decode_state(json.loads(result.stdout)["rkestate"]))
    assert new["ca"] == old["ca"] and new["generation"] == 2
    assert list(elsewhere.iterdir()) == []
    assert_no_secrets(result.stderr, old["ca"])


def test_plain_rkestate_in_previous_stdout_is_accepted(sandbox: dict[str, Path]) -> None:
    data = json.loads(first(sandbox))
    data["rkestate"] = decode_state(data["rkestate"])
    result = run(sandbox, previous=json.dumps(data))
    assert result.returncode == 0, result.stderr


def test_failed_up_exits_nonzero_prints_tail_and_no_stdout(sandbox: dict[str, Path]) -> None:
    previous = first(sandbox)
    ca = json.loads(decode_state(json.loads(previous)["rkestate"]))["ca"]
    result = run(sandbox, previous=previous, FAKE_RKE_FAIL="1")
    assert result.returncode != 0
    assert result.stdout == ""  # pulumi-command keeps the previous stdout in state
    message = result.stderr.split("ERROR:", 1)[1]
    assert "previous state is kept" in message
    assert "fake failure" in message and "progress line 59" in message
    assert "progress line 20" not in message  # only the tail
    assert_no_secrets(result.stderr, ca)


def test_missing_rke_binary(sandbox: dict[str, Path]) -> None:
    result = run(sandbox, bin_dir=sandbox["tmp"] / "empty")
    assert result.returncode == 1 and result.stdout == ""
    assert "`rke` is not on PATH" in result.stderr and "rancher/rke" in result.stderr


def test_wrong_rke_version(sandbox: dict[str, Path]) -> None:
    result = run(sandbox, FAKE_RKE_VERSION="v1.7.9")
    assert result.returncode == 1 and result.stdout == ""
    assert "v1.7.9" in result.stderr and "needs v1.8.x" in result.stderr
    assert rke_ups(sandbox) == []


def test_garbage_previous_stdout_is_refused(sandbox: dict[str, Path]) -> None:
    result = run(sandbox, previous="hello")
    assert result.returncode == 1 and "Refusing" in result.stderr
    assert rke_ups(sandbox) == []


def test_removed_worker_is_drained_before_rke_up(sandbox: dict[str, Path]) -> None:
    previous = first(sandbox)
    smaller = render_cluster_yml(MASTERS + WORKERS[1:], SETTINGS)
    result = run(sandbox, smaller, previous=previous)
    assert result.returncode == 0, result.stderr
    tools = [c["tool"] for c in calls(sandbox)]
    assert tools == ["rke", "kubectl", "rke"]
    drain = calls(sandbox)[1]["args"]
    assert drain[:2] == ["--kubeconfig", drain[1]] and drain[1].endswith("kube_config_cluster.yml")
    assert drain[2:] == [
        "drain", WORKERS[0].name, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=300s",
    ]  # fmt: skip


def test_worker_already_gone_is_not_an_error(sandbox: dict[str, Path]) -> None:
    previous = first(sandbox)
    smaller = render_cluster_yml(MASTERS + WORKERS[1:], SETTINGS)
    result = run(sandbox, smaller, previous=previous, FAKE_KUBECTL_NOTFOUND=WORKERS[0].name)
    assert result.returncode == 0, result.stderr


def test_missing_kubectl_fails_before_any_change(sandbox: dict[str, Path]) -> None:
    previous = first(sandbox)
    smaller = render_cluster_yml(MASTERS + WORKERS[1:], SETTINGS)
    result = run(sandbox, smaller, previous=previous, bin_dir=sandbox["tmp"] / "bin-no-kubectl")
    assert result.returncode == 1 and "kubectl" in result.stderr
    assert len(rke_ups(sandbox)) == 1  # only the first run


def test_removing_two_etcd_nodes_at_once_is_refused(sandbox: dict[str, Path]) -> None:
    previous = first(sandbox)
    result = run(sandbox, render_cluster_yml(MASTERS[:1] + WORKERS, SETTINGS), previous=previous)
    assert result.returncode == 1 and result.stdout == ""
    assert "one master at a time" in result.stderr
    assert len(rke_ups(sandbox)) == 1


def test_replacing_one_etcd_node_is_allowed(sandbox: dict[str, Path]) -> None:
    previous = first(sandbox)
    moved = [master("home", 0, address="192.0.2.77"), *MASTERS[1:]]
    result = run(sandbox, render_cluster_yml(moved + WORKERS, SETTINGS), previous=previous)
    assert result.returncode == 0, result.stderr


def test_delete_keeps_the_cluster_and_explains(sandbox: dict[str, Path]) -> None:
    previous = first(sandbox)
    result = run(sandbox, previous=previous, mode="delete")
    assert result.returncode == 0 and result.stdout == ""
    assert "NOT removed" in result.stderr and "rke remove" in result.stderr
    assert len(rke_ups(sandbox)) == 1


def test_extract_writes_state_files(sandbox: dict[str, Path]) -> None:
    previous = first(sandbox)
    target = sandbox["tmp"] / "teardown"
    result = subprocess.run(
        [sys.executable, "-m", "rke.runner", "extract", str(target)],
        cwd=ROOT, input=previous, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (target / "cluster.yml").read_text() == CLUSTER
    assert json.loads((target / "cluster.rkestate").read_text())["generation"] == 1
    assert oct((target / "cluster.rkestate").stat().st_mode & 0o777) == "0o600"


# -- pure helpers ----------------------------------------------------------------------------


def _yml(nodes: Sequence[RkeNode]) -> str:
    return render_cluster_yml(nodes, SETTINGS)


def test_plan_counts_replacement_by_address_and_machine_id() -> None:
    same = plan_changes(CLUSTER, CLUSTER)
    assert same.etcd_removed == () and same.workers_leaving == ()
    ids = {m.name: f"id-{m.name}" for m in MASTERS}
    swapped = {**ids, MASTERS[0].name: "new", MASTERS[1].name: "new"}
    plan = plan_changes(CLUSTER, CLUSTER, ids, swapped)
    assert plan.etcd_removed == tuple(sorted(m.name for m in MASTERS[:2]))
    with pytest.raises(RunnerErr, match="2 of 3 etcd"):
        check_etcd_quorum(plan)
    demoted = [
        RkeNode(MASTERS[2].name, MASTERS[2].address, MASTERS[2].internal_address, ("worker",))
    ]
    plan = plan_changes(CLUSTER, _yml([*MASTERS[:2], *demoted, *WORKERS]))
    assert plan.etcd_removed == (MASTERS[2].name,)
    check_etcd_quorum(plan)


def test_single_etcd_cluster_cannot_replace_its_only_member() -> None:
    one = _yml([MASTERS[0], *WORKERS])
    moved = _yml([master("home", 0, address="192.0.2.1"), *WORKERS])
    with pytest.raises(RunnerErr, match="1 of 1"):
        check_etcd_quorum(plan_changes(one, moved))


def test_redactor_hides_values_key_lines_and_pem() -> None:
    redact = Redactor.from_values([SSH_KEY, S3_SECRET, None, ""])
    assert S3_SECRET not in redact(f"x {S3_SECRET} y")
    assert "QyNTUxOQ" not in redact(
        "QyNTUxOQAAACDk1EXAMPLEONLYNOTAREALKEYk1EXAMPLEONLYNOTAREALKEYAAAAAA=="
    )
    assert "[redacted" in redact("-----BEGIN RSA PRIVATE KEY-----")
    assert redact("secret_key: abc") == "secret_key: [redacted]"
    assert redact("plain progress") == "plain progress"


def test_state_encoding_round_trips_and_shrinks_duplicated_state() -> None:
    cert = "MIIC" + "".join(f"{i:04x}" for i in range(3000))
    state = json.dumps({"desiredState": {"ca": cert}, "currentState": {"ca": cert}}, indent=2)
    encoded = encode_state(state)
    assert decode_state(encoded) == state and decode_state(state) == state
    assert len(encoded) < len(state) * 0.75

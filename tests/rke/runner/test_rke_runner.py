"""rke.runner against fake ``rke``, ``kubectl`` and ``ssh`` on PATH (``tests/support/fake_rke.py``).

The fakes share a *world* standing for the machines: the CA each node carries, the etcd
members, the full-cluster-state Secret. Most tests run the runner in this process
(``rke.runner.cli.main`` with its own environment and streams; the fakes are real child
processes); the ones about signals, ``exec`` and the environment run it as
pulumi-command does. Every wait is bounded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.config.cluster import RkeSettings
from rke.cluster_yml import ClusterYmlSettings, RkeNode, cluster_config, render_cluster_yml
from rke.runner import cli
from rke.runner.documents import load_yaml, render
from rke.state import (
    STDOUT_LIMIT,
    Result,
    StateStore,
    check_rkestate,
    encode_result,
    newest_certificate,
    parse_previous,
)
from tests.support import fake_rke

ROOT = Path(__file__).resolve().parents[3]
KEY = "multicloud/test"
SSH_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACDk1EXAMPLEONLYNOTAREALKEYk1EXAMPLEONLYNOTAREALKEYAAAAAA==\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
S3_ACCESS = "AKIAFAKEACCESSKEY123"
S3_SECRET = "s3cr3t/FAKE+secretkeyvalue0123456789"
LEAKS = {"PULUMI_CONFIG_PASSPHRASE": "do-not-leak", "AWS_SECRET_ACCESS_KEY": "aws-do-not-leak"}
S3 = {"bucket": "snaps", "endpoint": "s3.example", "region": "us-east-1", "folder": "etcd"}

SETTINGS = ClusterYmlSettings(
    cluster_name="mc",
    ssh_user="debian",
    kubernetes_version="v1.30.14-rancher1-1",
    flannel_iface="ztks575eoa",
    overlay_cidr="10.147.0.0/16",
    rke=RkeSettings.model_validate({"etcd": {"s3": S3}}),
)


def master(i: int, address: str | None = None, index: int = 0) -> RkeNode:
    return RkeNode(
        f"mc-site{i}-master-{index}",
        address or f"203.0.113.{i + 1}",
        f"10.147.{i + 1}.{10 + index}",
        ("controlplane", "etcd"),
    )


def worker(i: int, address: str | None = None) -> RkeNode:
    return RkeNode(
        f"mc-site{i}-worker-0", address or f"198.51.100.{i + 1}", f"10.147.{i + 1}.50", ("worker",)
    )


MASTERS = [master(i) for i in range(3)]
FIVE = [master(i) for i in range(5)]
WORKERS = [worker(i) for i in range(3)]


def yml(nodes: Sequence[RkeNode]) -> str:
    return render_cluster_yml(nodes, SETTINGS)


CLUSTER = yml(MASTERS + WORKERS)


@dataclass
class Box:
    """A sandbox: the fakes and their world, a tmpfs stand-in, a HOME for the local copy."""

    sb: fake_rke.Sandbox
    tmp: Path

    @property
    def shm(self) -> Path:
        return self.tmp / "shm"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": str(self.sb.bin),  # only the fakes: this machine may have real ones
            "PYTHONPATH": str(ROOT),
            "HOME": str(self.tmp / "home"),
            "RKE_STATE_KEY": KEY,
            "RKE_RUNNER_TMPDIR": str(self.shm),
            "RKE_SSH_PRIVATE_KEY": SSH_KEY,
            "RKE_S3_ACCESS_KEY": S3_ACCESS,
            "RKE_S3_SECRET_KEY": S3_SECRET,
            "RKE_LEFTOVER_WAIT": "5",
            **LEAKS,
            **extra,
        }

    def run(
        self,
        cluster_yml: str = CLUSTER,
        previous: str | None = None,
        mode: str = "up",
        **extra: str,
    ) -> subprocess.CompletedProcess[str]:
        """The runner in this process (its children are real processes)."""
        env = self.env(**extra)
        if previous is not None:
            env["PULUMI_COMMAND_STDOUT"] = previous
        out, err = io.StringIO(), io.StringIO()
        rc = cli.main([mode], env, io.StringIO(cluster_yml), out, err)
        return subprocess.CompletedProcess([mode], rc, out.getvalue(), err.getvalue())

    def ok(self, cluster_yml: str = CLUSTER, previous: str | None = None, **extra: str) -> str:
        result = self.run(cluster_yml, previous, **extra)
        assert result.returncode == 0, result.stderr
        assert_clean(result.stderr)
        return result.stdout

    def deployed(self, cluster_yml: str = CLUSTER, ids: dict[str, str] | None = None) -> str:
        """The previous stdout of a cluster deployed with ``cluster_yml`` (and its world)."""
        rkestate, kubeconfig = self.sb.deploy(load_yaml(cluster_yml))
        return encode_result(Result(rkestate, kubeconfig, cluster_yml, ids or {}))

    def store(self) -> StateStore:
        return StateStore(KEY, {"HOME": str(self.tmp / "home")})

    def run_dirs(self) -> list[Path]:
        return sorted(self.shm.glob("multicloud-rke-*/run-*"))


@pytest.fixture
def box(tmp_path: Path) -> Box:
    (tmp_path / "shm").mkdir()
    (tmp_path / "home").mkdir()
    return Box(fake_rke.Sandbox(tmp_path), tmp_path)


def assert_clean(text: str, *extra: str) -> None:
    for secret in (S3_ACCESS, S3_SECRET, "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ", *extra):
        assert secret not in text


def state_of(stdout: str) -> dict[str, Any]:
    result = parse_previous(stdout)
    assert result is not None
    return check_rkestate(result.rkestate)


def ca_of(state: dict[str, Any]) -> str:
    pem = state["desiredState"]["certificatesBundle"]["kube-ca"]["certificatePEM"]
    return fake_rke.fingerprint(pem)


def etcd_of(stdout: str) -> list[str]:
    nodes = state_of(stdout)["currentState"]["rkeConfig"]["nodes"]
    return sorted(f"etcd-{n['hostnameOverride']}" for n in nodes if "etcd" in n["role"])


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has exited


# -- ordinary runs ---------------------------------------------------------------------------


def test_a_first_run_as_a_process_prints_the_state_and_leaves_nothing(box: Box) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rke.runner", "up"],
        input=CLUSTER, cwd=ROOT, env=box.env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert_clean(result.stderr)
    assert set(json.loads(result.stdout)) == {"payload", "version"}  # one JSON document
    stored = parse_previous(result.stdout)
    assert stored is not None and stored.cluster_yml == CLUSTER
    assert check_rkestate(stored.rkestate)["currentState"]["rkeConfig"]["clusterName"] == "mc"
    assert "certificate-authority-data" in stored.kubeconfig
    [up] = box.sb.ups()
    assert up["args"] == ["up", "--config", "cluster.yml"] and not up["state_given"]
    assert up["cwd_mode"] == 0o700 and up["config_mode"] == 0o600
    assert up["key"] == SSH_KEY and up["key_mode"] == 0o600
    assert Path(up["cwd"]).is_relative_to(box.shm) and not Path(up["cwd"]).exists()
    assert up["config"]["ssh_agent_auth"] is False and "ignore_docker_version" not in up["config"]
    s3 = up["config"]["services"]["etcd"]["backup_config"]["s3backupconfig"]
    assert (s3["access_key"], s3["secret_key"]) == (S3_ACCESS, S3_SECRET)
    assert not any("--ignore-docker-version" in c["args"] for c in box.sb.calls())
    probes = box.sb.calls("ssh")
    assert len(probes) == 6  # no state: every node was asked for RKE certificates first
    for call in box.sb.calls():  # rke, kubectl and ssh get an allowlisted environment
        assert not set(call["env_keys"]) & {*LEAKS, "PULUMI_COMMAND_STDOUT", "PYTHONPATH"}
        assert not [k for k in call["env_keys"] if k.startswith("RKE_")], call["tool"]
    assert box.run_dirs() == [] and box.store().load() is None  # the state went to Pulumi


def test_a_rerun_starts_rke_with_the_previous_state(box: Box) -> None:
    previous = box.deployed()
    out = box.ok(previous=previous)
    [up] = box.sb.ups()
    assert up["ca_given"] == ca_of(state_of(previous)) == ca_of(state_of(out))
    assert up["kubeconfig_given"]
    # no local copy (a fresh machine): the cluster's Secret is read once and matches
    assert [c["command"] for c in box.sb.calls("ssh")] == ["secret"]


def test_a_failed_first_run_leaves_its_state_for_the_next(box: Box) -> None:
    box.sb.set(fail_at="certs")  # the state is written and the certificates reached the nodes
    failed = box.run()
    assert failed.returncode == 1 and failed.stdout == ""  # pulumi-command stores nothing
    assert "FATA" in failed.stderr and "kept in" in failed.stderr
    kept = box.store().load()
    assert kept is not None and box.run_dirs() == []
    box.sb.set()
    out = box.ok(previous="")  # a first create that failed: Pulumi has no stdout
    minted, used = box.sb.ups()
    assert minted["ca_given"] is None
    assert used["ca_given"] == ca_of(check_rkestate(kept.rkestate)) == ca_of(state_of(out))
    assert box.store().load() is None


def test_a_failed_update_keeps_the_newer_state_over_pulumis(box: Box) -> None:
    previous = box.deployed()
    box.sb.set(fail_at="workers")  # after the control plane: RKE wrote a new current state
    smaller = yml(MASTERS + WORKERS[1:])
    assert box.run(smaller, previous=previous).returncode == 1
    box.sb.set()
    box.ok(smaller, previous=previous)  # Pulumi still holds the older output
    assert box.sb.ups()[-1]["ca_given"] == ca_of(state_of(previous))
    # planned from the applied state: the worker was already gone, no second drain
    assert len(box.sb.calls("kubectl")) == 1


def fail_after_rke_up(box: Box, cluster_yml: str, previous: str) -> None:
    """A run whose `rke up` succeeded (the Secret is written) and whose ingress wait timed
    out, on a runner that is then thrown away (its local copy is gone)."""
    box.sb.set(ingress_ready_after=-1)
    failed = box.run(cluster_yml, previous, RKE_INGRESS_TIMEOUT="0.05", RKE_INGRESS_POLL="0.01")
    assert failed.returncode == 1 and failed.stdout == "" and "RKE_INGRESS_TIMEOUT" in failed.stderr
    box.store().remove()
    box.sb.set()


def test_a_new_runner_starts_from_the_clusters_newer_secret(box: Box) -> None:
    previous = box.deployed()
    smaller = yml(MASTERS + WORKERS[1:])
    fail_after_rke_up(box, smaller, previous)
    secret = (box.sb.world / "full-cluster-state").read_text()
    assert digest(secret) != digest(parse_previous(previous).rkestate)  # type: ignore[union-attr]
    result = box.run(smaller, previous=previous)  # Pulumi still holds the older output
    assert result.returncode == 0, result.stderr
    assert "full-cluster-state Secret differs from Pulumi's state" in result.stderr
    assert "state from: the cluster's full-cluster-state Secret" in result.stderr
    assert box.sb.ups()[-1]["state_digest"] == digest(secret)
    # planned from the state the cluster runs: the worker is gone already, no second drain
    assert len(box.sb.calls("kubectl")) == 1
    assert box.store().load() is None and state_of(result.stdout)


def test_an_unreachable_cluster_falls_back_to_pulumis_state(box: Box) -> None:
    previous = box.deployed()
    smaller = yml(MASTERS + WORKERS[1:])
    # what a failed run after `rke up` leaves (tested end to end above), set up directly
    newer, _ = fake_rke.applied_state(load_yaml(smaller), state_of(previous))
    fake_rke.write_secret(box.sb.world, json.loads(newer))
    box.sb.set(ssh_unreachable=[m.address for m in MASTERS])
    result = box.run(smaller, previous=previous)
    assert result.returncode == 0, result.stderr
    assert "could not read kube-system/full-cluster-state from the cluster" in result.stderr
    assert "203.0.113.1: exit 255" in result.stderr
    assert box.sb.ups()[-1]["state_digest"] == digest(parse_previous(previous).rkestate)  # type: ignore[union-attr]


def test_a_secret_with_another_ca_is_refused(box: Box) -> None:
    previous = box.deployed()
    other = fake_rke.build_state(load_yaml(CLUSTER), None)  # a second, new CA
    fake_rke.write_secret(box.sb.world, other)
    result = box.run(previous=previous)
    assert result.returncode == 1 and result.stdout == ""
    assert "full-cluster-state Secret hold two different cluster CAs" in result.stderr
    assert box.sb.ups() == [] and box.store().load() is None


# -- interrupts ------------------------------------------------------------------------------


def reissued(state: dict[str, Any], name: str, hours: float) -> dict[str, Any]:
    """``state`` with certificate ``name`` signed again ``hours`` after its newest one (as
    a later ``rke up`` re-signs kube-apiserver for a new control-plane address)."""
    state = json.loads(json.dumps(state))
    bundle = state["desiredState"]["certificatesBundle"]
    newest = newest_certificate(state)
    assert newest is not None
    issued = newest - dt.timedelta(days=3650) + dt.timedelta(hours=hours)
    pem = fake_rke.x509_pem(name, fake_rke.ca_not_before(bundle), issued=issued)
    for part in ("desiredState", "currentState"):
        state[part]["certificatesBundle"][name]["certificatePEM"] = pem
    return state


def test_a_secret_with_a_newer_certificate_is_started_from(box: Box) -> None:
    previous = box.deployed()
    smaller = yml(MASTERS + WORKERS[1:])
    applied, _ = fake_rke.applied_state(load_yaml(smaller), state_of(previous))
    newer = reissued(json.loads(applied), "kube-apiserver", 1)
    fake_rke.write_secret(box.sb.world, newer)
    # this run puts the worker back: only the certificate says the Secret is newer
    result = box.run(previous=previous)
    assert result.returncode == 0, result.stderr
    assert "its newest certificate was issued at" in result.stderr
    assert "state from: the cluster's full-cluster-state Secret" in result.stderr
    assert box.sb.ups()[-1]["state_digest"] == digest(json.dumps(newer))


def test_an_older_secret_is_refused(box: Box) -> None:
    deployed = box.deployed()  # the Secret holds this state: a restore went back to it
    pulumis = reissued(state_of(deployed), "kube-apiserver", 2)
    previous = encode_result(Result(json.dumps(pulumis), "", CLUSTER, {}))
    result = box.run(previous=previous)
    assert result.returncode == 1 and result.stdout == ""
    assert "full-cluster-state Secret differs from Pulumi's RKE state" in result.stderr
    assert "is OLDER: its newest certificate was issued at" in result.stderr
    assert "snapshot restore" in result.stderr and "import-state" in result.stderr
    assert "'Restore etcd from a snapshot'" in result.stderr
    assert box.sb.ups() == [] and box.store().load() is None


def test_a_secret_of_the_same_age_for_other_nodes_is_refused_as_ambiguous(box: Box) -> None:
    previous = box.deployed()
    smaller = yml(MASTERS + WORKERS[1:])
    applied, _ = fake_rke.applied_state(load_yaml(smaller), state_of(previous))
    fake_rke.write_secret(box.sb.world, json.loads(applied))
    # same certificates, and its nodes are not this run's: a later run, or an older one?
    result = box.run(previous=previous)
    assert result.returncode == 1 and result.stdout == ""
    assert "nothing tells which is newer" in result.stderr
    assert "import-state" in result.stderr
    assert box.sb.ups() == [] and box.store().load() is None


def start(box: Box, previous: str) -> subprocess.Popen[str]:
    """The runner as a process, stopped in the middle of a slow ``rke up``."""
    (box.tmp / "cluster.yml").write_text(CLUSTER)
    with (box.tmp / "cluster.yml").open() as stdin:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rke.runner", "up"], cwd=ROOT, text=True, stdin=stdin,
            env=box.env(PULUMI_COMMAND_STDOUT=previous), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
    try:
        wait_for(lambda: box.store().load() is not None, "the runner to keep RKE's first write")
    except AssertionError:
        proc.kill()
        raise
    return proc


def digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_stops_rke_and_removes_the_run_directory(box: Box, signum: int) -> None:
    previous = box.deployed()
    box.sb.set(slow=20)
    proc = start(box, previous)
    [up] = box.sb.ups()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 128 + signum and out == ""
    assert f"interrupted by {signal.Signals(signum).name}" in err
    wait_for(lambda: gone(up["pid"]), "the fake rke to be gone", 5)
    assert box.run_dirs() == []  # no SSH key, cluster.yml or state left in the tmpfs
    kept = box.store().load()
    assert kept is not None and kept.base_hash == digest(parse_previous(previous).rkestate)  # type: ignore[union-attr]
    if signum == signal.SIGTERM:
        box.sb.set()
        box.ok(previous=previous)  # Pulumi still has the state from before
        assert box.sb.ups()[-1]["state_digest"] == digest(kept.rkestate)


def test_a_sigkilled_runner_leaves_state_the_next_run_keeps(box: Box) -> None:
    previous = box.deployed()
    box.sb.set(slow=20)
    proc = start(box, previous)
    [up] = box.sb.ups()
    written = Path(up["cwd"], "cluster.rkestate").read_text()
    proc.kill()  # what pulumi-command does on cancel
    proc.communicate(timeout=10)
    wait_for(lambda: gone(up["pid"]), "PR_SET_PDEATHSIG to stop the fake rke", 5)
    [left] = box.run_dirs()
    assert (left / "ssh_key").exists() and (left / "cluster.yml").exists()
    box.store().remove()  # as if the runner died before it copied RKE's write
    box.sb.set()
    box.ok(previous=previous)
    nxt = box.sb.ups()[-1]
    assert nxt["state_digest"] == digest(written) != digest(parse_previous(previous).rkestate)  # type: ignore[union-attr]
    assert nxt["run_dirs"] == [Path(nxt["cwd"]).name]  # the leftover went before rke started
    assert box.run_dirs() == []


# -- no state, or a bad one ------------------------------------------------------------------


def test_no_state_while_nodes_carry_certificates_is_refused(box: Box) -> None:
    box.sb.set(fail_at="certs")  # certificates reached the nodes; no Secret in the cluster yet
    assert box.run().returncode == 1
    box.store().remove()  # another machine, or the local copy is lost
    box.sb.set()
    result = box.run(previous="")
    assert result.returncode == 1 and result.stdout == ""
    message = result.stderr.split("ERROR:", 1)[1]
    assert "already carry RKE certificates" in message and "203.0.113.1" in message
    assert "docs/recovery.md" in message and "import-state multicloud/test" in message
    assert len(box.sb.ups()) == 1  # rke up never ran again
    assert box.sb.calls("rke")[-1]["args"][:2] == ["util", "get-state-file"]


def test_no_state_is_recovered_from_the_clusters_secret(box: Box) -> None:
    previous = box.deployed()  # the command was replaced: Pulumi has no previous stdout
    result = box.run(previous="")
    assert result.returncode == 0, result.stderr
    assert "recovered the RKE state from the cluster" in result.stderr
    assert box.sb.ups()[-1]["ca_given"] == ca_of(state_of(previous))
    assert len(box.sb.calls("ssh")) == 3 + 1  # the masters answered; one Secret read


def test_an_unreachable_node_makes_a_stateless_run_refuse(box: Box) -> None:
    box.sb.set(ssh_unreachable=["203.0.113.2"])
    result = box.run()
    assert result.returncode == 1 and "could not be asked" in result.stderr
    assert box.sb.ups() == []


@pytest.mark.parametrize("previous", ["null", "{}", "[]", "hello", '{"rkestate": "{}"}'])
def test_a_previous_output_without_a_state_is_refused(box: Box, previous: str) -> None:
    result = box.run(previous=previous)
    assert result.returncode == 1 and "holds no RKE state" in result.stderr
    assert box.sb.ups() == []


def test_import_state_feeds_the_next_run(box: Box) -> None:
    previous = box.deployed()
    saved = box.tmp / "cluster.rkestate"
    saved.write_text(json.dumps(state_of(previous)))
    result = box.run(mode="import-state", previous=None)
    assert result.returncode == 2  # usage: it needs KEY and FILE
    assert cli.main(["import-state", KEY, str(saved)], box.env(), stderr=io.StringIO()) == 0
    box.ok(previous="")
    assert box.sb.ups()[-1]["ca_given"] == ca_of(state_of(previous))


# -- size ------------------------------------------------------------------------------------


def big_cluster(workers: int = 200, sites: int = 3) -> tuple[str, dict[str, str]]:
    """One master and ``workers`` workers per site: 3 x 200 is the largest the config takes."""
    nodes: list[RkeNode] = []
    names = ("home", "ramnode", "digitalocean", "s4", "s5", "s6", "s7", "s8")
    for i, site in enumerate(names[:sites]):
        zone = {"topology.kubernetes.io/zone": site}
        nodes.append(
            RkeNode(f"mc-prod-{site}-master-0", f"203.0.{113 + i}.10", f"10.147.{i + 1}.10",
                    ("controlplane", "etcd"), zone)
        )  # fmt: skip
        labels = {**zone, "multicloud.io/ingress": "true"}
        nodes += [
            RkeNode(f"mc-prod-{site}-worker-{w}", f"198.{51 + i}.{w // 200}.{w % 200 + 10}",
                    f"10.147.{i + 1}.{50 + w}", ("worker",), labels)
            for w in range(workers)
        ]  # fmt: skip
    ids = {n.name: os.urandom(16).hex() for n in nodes}
    return render(cluster_config(nodes, SETTINGS)), ids  # libyaml: fast


def test_a_600_worker_cluster_round_trips_through_the_environment(box: Box) -> None:
    """As pulumi-command runs it: /bin/sh -c, cluster.yml on stdin, the previous stdout
    and stderr each in ONE environment variable (an oversize one fails exec: E2BIG)."""
    cluster, ids = big_cluster()
    assert len(cluster.encode()) > 131_072  # would not fit in one environment variable
    previous = box.deployed(cluster, ids)
    box.sb.set(chatty=700)  # ~90 KB of rke output: more than stderr may carry
    env = box.env(RKE_NODE_IDS=json.dumps(ids), PULUMI_COMMAND_STDOUT=previous,
                  PULUMI_COMMAND_STDERR="x" * 60_000)  # fmt: skip
    result = subprocess.run(
        ["/bin/sh", "-c", f"exec {sys.executable} -m rke.runner up"],
        input=cluster, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    stdout, stderr = result.stdout.rstrip("\n"), result.stderr.rstrip("\n")
    assert len(previous) < 0.6 * STDOUT_LIMIT and len(stdout) < 0.6 * STDOUT_LIMIT
    assert len(stderr.encode()) <= 64 * 1024 and "more output only in" in stderr
    log = sorted((box.store().root / "logs").glob("*.log"))[-1]
    assert "fake rke progress line 699" in log.read_text()
    # the next update starts with both in its environment: exec must not fail (E2BIG)
    env.update(PULUMI_COMMAND_STDOUT=stdout, PULUMI_COMMAND_STDERR=stderr)
    nxt = subprocess.run(["/bin/sh", "-c", "exec /bin/sh -c 'exit 0'"], env=env, timeout=10)
    assert nxt.returncode == 0
    assert ca_of(state_of(stdout)) == ca_of(state_of(previous))


def test_a_result_too_big_for_the_environment_is_a_failure(box: Box) -> None:
    # 45 etcd members (the config allows 7): their certificates alone pass the limit
    many = yml([master(i % 3, f"203.0.{113 + i // 3}.{i % 3 + 1}", index=i // 3) for i in range(45)]
               + WORKERS)  # fmt: skip
    result = box.run(many, previous=box.deployed(many))
    assert result.returncode == 1 and result.stdout == ""
    assert "holds at most" in result.stderr
    assert box.store().load() is not None  # the cluster changed: its state is kept


# -- nodes, drains, etcd steps ---------------------------------------------------------------


def test_workers_leaving_by_address_are_drained_by_name_before_rke_up(box: Box) -> None:
    # worker 0 leaves; worker 1 keeps its name at a new address: RKE deletes its Node too
    changed = yml([*MASTERS, worker(1, "198.51.100.99"), WORKERS[2]])
    result = box.run(changed, previous=box.deployed())
    assert result.returncode == 0, result.stderr
    assert (
        "drained by the runner first: mc-site0-worker-0 (198.51.100.1), "
        "mc-site1-worker-0 (198.51.100.2)" in result.stderr
    )
    assert "Nodes RKE cordons and deletes: mc-site0-worker-0 (198.51.100.1), " in result.stderr
    # the Secret read (no local copy), both drains, then rke up
    assert [c["tool"] for c in box.sb.calls()] == ["ssh", "kubectl", "kubectl", "rke"]
    drains = [c["args"] for c in box.sb.calls("kubectl")]
    assert drains[0][1].endswith("kube_config_cluster.yml")
    assert drains[0][2:] == [
        "drain", WORKERS[0].name, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=300s",
    ]  # fmt: skip
    assert drains[1][3] == WORKERS[1].name


def test_a_worker_already_gone_and_skip_drain(box: Box) -> None:
    previous = box.deployed()
    smaller = yml(MASTERS + WORKERS[1:])
    box.sb.set(kubectl_notfound=WORKERS[0].name)
    assert box.run(smaller, previous=previous).returncode == 0
    assert box.run(smaller, previous=previous, RKE_SKIP_DRAIN="1").returncode == 0
    assert len(box.sb.calls("kubectl")) == 1


def test_missing_kubectl_fails_before_any_change(box: Box) -> None:
    (box.sb.bin / "kubectl").unlink()
    result = box.run(yml(MASTERS + WORKERS[1:]), previous=box.deployed())
    assert result.returncode == 1 and "`kubectl` is not on PATH" in result.stderr
    assert box.sb.ups() == []


def test_five_to_three_masters_runs_one_member_at_a_time(box: Box) -> None:
    result = box.run(yml(FIVE[:3] + WORKERS), previous=box.deployed(yml(FIVE + WORKERS)))
    assert result.returncode == 0, result.stderr
    runs = [u["etcd"] for u in box.sb.ups()]
    assert [len(r) for r in runs] == [4, 3] and set(runs[1]) < set(runs[0])
    assert sorted(box.sb.members()) == runs[1] == etcd_of(result.stdout)
    health = [c for c in box.sb.calls("ssh") if c["command"] == "etcd"]
    assert len(health) == 4  # before and after each removal
    assert "etcd members leaving: etcd-mc-site3-master-0 (203.0.113.4)" in result.stderr


def test_replacing_every_master_goes_one_by_one(box: Box) -> None:
    previous = box.deployed()
    renamed = [master(i, f"192.0.2.{i + 1}", index=1) for i in range(3)]
    result = box.run(yml(renamed + WORKERS), previous=previous)
    assert result.returncode == 0, result.stderr
    before = {f"etcd-{m.name}" for m in MASTERS}
    runs = [set(u["etcd"]) for u in box.sb.ups()]
    for run in runs:
        assert len(run) == 3 and len(run - before) == 1 and len(before - run) == 1, runs
        before = run
    assert len(runs) == 3 and before == {f"etcd-mc-site{i}-master-1" for i in range(3)}
    assert all(u["ca_given"] == ca_of(state_of(previous)) for u in box.sb.ups())


def test_a_master_replaced_in_place_is_removed_then_added(box: Box) -> None:
    ids = {m.name: f"{i}" * 32 for i, m in enumerate(MASTERS)}
    previous = box.deployed(ids=ids)
    rebuilt = {**ids, MASTERS[1].name: "f" * 32}  # same name and address, a new machine
    result = box.run(previous=previous, RKE_NODE_IDS=json.dumps(rebuilt))
    assert result.returncode == 0, result.stderr
    runs = [u["etcd"] for u in box.sb.ups()]
    assert f"etcd-{MASTERS[1].name}" not in runs[0] and len(runs[0]) == 2
    assert runs[1] == sorted(f"etcd-{m.name}" for m in MASTERS)
    again = box.run(previous=result.stdout, RKE_NODE_IDS=json.dumps(rebuilt))
    assert again.returncode == 0 and len(box.sb.ups()) == 3  # the ids were stored


@pytest.mark.parametrize("point", ["start", "controlplane"])
def test_a_failing_middle_step_keeps_the_last_good_step(box: Box, point: str) -> None:
    previous = box.deployed(yml(FIVE + WORKERS))
    box.sb.set(fail_at=point, fail_on_up=2)  # the second step fails
    failed = box.run(yml(FIVE[:3] + WORKERS), previous=previous)
    assert failed.returncode == 1 and "1 of 2 steps completed" in failed.stderr
    kept = box.store().load()
    assert kept is not None
    applied = check_rkestate(kept.rkestate)["currentState"]["rkeConfig"]["nodes"]
    assert sum("etcd" in n["role"] for n in applied) == 4  # the first step's result
    box.sb.set()
    result = box.run(yml(FIVE[:3] + WORKERS), previous=previous)  # Pulumi still has 5
    assert result.returncode == 0, result.stderr
    assert [len(u["etcd"]) for u in box.sb.ups()[2:]] == [3]  # only the remaining step
    assert box.sb.ups()[-1]["ca_given"] == ca_of(state_of(previous))


def test_a_removal_that_would_lose_quorum_is_refused(box: Box) -> None:
    previous = box.deployed(yml(FIVE + WORKERS))
    box.sb.set(etcd_unhealthy=["etcd-mc-site0-master-0", "etcd-mc-site1-master-0"])
    result = box.run(yml(FIVE[:3] + WORKERS), previous=previous)
    assert result.returncode == 1 and "would lose etcd quorum" in result.stderr
    assert box.sb.ups() == []


def test_a_member_rke_failed_to_remove_stops_the_steps(box: Box) -> None:
    previous = box.deployed(yml(FIVE + WORKERS))
    box.sb.set(etcd_keep=["etcd-mc-site3-master-0", "etcd-mc-site4-master-0"])
    result = box.run(yml(FIVE[:3] + WORKERS), previous=previous, RKE_ETCD_HEALTH_TIMEOUT="0.2")
    assert result.returncode == 1 and "did not become healthy" in result.stderr
    assert len(box.sb.ups()) == 1  # stopped after the first step
    assert box.store().load() is not None


def test_the_only_master_replaced_in_place_is_refused(box: Box) -> None:
    one = yml([MASTERS[0], *WORKERS])
    previous = box.deployed(one, ids={MASTERS[0].name: "a" * 32})
    result = box.run(one, previous=previous, RKE_NODE_IDS=json.dumps({MASTERS[0].name: "b" * 32}))
    assert result.returncode == 1 and "only etcd member" in result.stderr
    assert box.sb.ups() == []


# -- version, restore, other modes -----------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("v1.8.4", "RKE v1.8.4 does not ship v1.30.14-rancher1-1"),
        ("v1.8.7", "not recorded"),
        ("v1.7.9", "not in reference/rke-releases.json"),
    ],
)
def test_an_rke_without_the_kubernetes_version_is_refused(
    box: Box, version: str, message: str
) -> None:
    box.sb.set(version=version)
    result = box.run()
    assert result.returncode == 1 and message in result.stderr
    assert "v1.8.10, v1.8.11, v1.8.12, v1.8.13, v1.8.14" in result.stderr
    assert box.sb.calls() == []  # refused before anything ran


def test_missing_rke_binary(box: Box) -> None:
    (box.sb.bin / "rke").unlink()
    result = box.run()
    assert result.returncode == 1 and "`rke` is not on PATH" in result.stderr


def test_an_s3_restore_keeps_the_keys_off_every_command_line(
    box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any local user reads every process's argv (/proc/<pid>/cmdline): the S3 keys reach
    rke only through the 0600 cluster.yml in the private run directory, and the snapshot
    still comes from the bucket (the fake reads the keys where real RKE does)."""
    previous = box.deployed()
    (box.sb.world / "s3").mkdir()  # the snapshot is only in the bucket
    (box.sb.world / "s3" / "snap1.json").write_text(
        json.dumps({"state": state_of(previous), "members": box.sb.members()})
    )
    (box.sb.world / "s3.json").write_text(json.dumps({
        "endpoint": S3["endpoint"], "bucket": S3["bucket"], "access_key": S3_ACCESS,
        "secret_key": S3_SECRET, "region": S3["region"], "folder": S3["folder"],
    }))  # fmt: skip
    started: list[list[str]] = []  # every process the runner starts, whatever its path
    popen = subprocess.Popen

    def spy(args: Sequence[str], *rest: Any, **kwargs: Any) -> Any:
        started.append([str(a) for a in args])
        return popen(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", spy)
    request = json.dumps({"snapshot": "snap1", "s3": True})
    result = box.run(previous=previous, RKE_RESTORE=request)
    monkeypatch.undo()
    assert result.returncode == 0, result.stderr
    assert_clean(result.stderr)  # RKE logs the access key; the runner redacts it
    assert (box.sb.world / "restored").read_text() == "snap1 from s3"
    command_lines = box.sb.command_lines()
    assert any("snapshot-restore" in line for line in command_lines)
    assert any("snapshot-restore" in argv for argv in started)
    for line in command_lines + [" ".join(argv) for argv in started]:
        assert S3_SECRET not in line and S3_ACCESS not in line, line
    [restore] = box.sb.calls("rke")
    assert restore["args"] == [
        "etcd",
        "snapshot-restore",
        "--config",
        "cluster.yml",
        "--name",
        "snap1",
    ]
    assert restore["config_mode"] == 0o600 and restore["cwd_mode"] == 0o700
    assert Path(restore["cwd"]).is_relative_to(box.shm) and not Path(restore["cwd"]).exists()
    assert restore["ca_given"] == ca_of(state_of(previous))
    stored = parse_previous(result.stdout)
    assert stored is not None and stored.restored == {"snapshot": "snap1", "s3": True}
    assert json.loads(stored.rkestate) == json.loads(
        (box.sb.world / "full-cluster-state").read_text()
    )  # what RKE wrote at the end of the restore is what the runner printed
    box.ok(previous=result.stdout, RKE_RESTORE=request)  # the setting stays: a plain rke up
    assert box.sb.calls("rke")[-1]["args"][:1] == ["up"]


def test_a_local_restore_leaves_the_s3_block_out(box: Box) -> None:
    previous = box.deployed()
    (box.sb.world / "snapshots").mkdir()
    (box.sb.world / "snapshots" / "snap2.json").write_text(
        json.dumps({"state": None, "members": box.sb.members()})
    )
    request = json.dumps({"snapshot": "snap2", "s3": False})
    result = box.run(previous=previous, RKE_RESTORE=request)
    assert result.returncode == 0, result.stderr
    [restore] = box.sb.calls("rke")
    assert "--s3" not in restore["args"]
    assert "s3backupconfig" not in restore["config"]["services"]["etcd"]["backup_config"]


def test_delete_keeps_the_cluster_and_explains(box: Box) -> None:
    result = box.run(previous=box.deployed(), mode="delete")
    assert result.returncode == 0 and result.stdout == ""
    assert "NOT removed" in result.stderr and "rke remove" in result.stderr
    assert box.sb.calls() == []


def test_extract_writes_state_files(box: Box) -> None:
    previous = box.deployed()
    target = box.tmp / "teardown"
    rc = cli.main(["extract", str(target)], box.env(), io.StringIO(previous))
    assert rc == 0
    assert (target / "cluster.yml").read_text() == CLUSTER
    assert check_rkestate((target / "cluster.rkestate").read_text())
    assert oct((target / "cluster.rkestate").stat().st_mode & 0o777) == "0o600"


# -- the ingress controller's admission webhook ----------------------------------------------


def test_the_runner_waits_for_the_admission_webhook_before_reporting_ready(box: Box) -> None:
    box.sb.set(ingress_ready_after=3)  # three looks find no ready webhook endpoint
    result = box.run(RKE_INGRESS_POLL="0.01")
    assert result.returncode == 0, result.stderr
    assert box.sb.ingress_looks() == 4
    assert "ingress-nginx not ready yet" in result.stderr
    assert "Service ingress-nginx/ingress-nginx-controller-admission: no ready endpoint" in (
        result.stderr
    )
    assert "ingress-nginx ready after" in result.stderr
    assert state_of(result.stdout)  # the result comes only after the wait


def test_a_webhook_that_never_gets_ready_fails_within_the_bound(box: Box) -> None:
    box.sb.set(ingress_ready_after=-1)
    started = time.monotonic()
    result = box.run(RKE_INGRESS_TIMEOUT="0.3", RKE_INGRESS_POLL="0.02")
    assert time.monotonic() - started < 5
    assert result.returncode == 1 and result.stdout == ""
    assert "not ready after 0.3s (RKE_INGRESS_TIMEOUT)" in result.stderr
    for pending in (
        "DaemonSet ingress-nginx/nginx-ingress-controller: 0 of 3 pods available",
        "Service ingress-nginx/ingress-nginx-controller-admission: no ready endpoint",
        "ValidatingWebhookConfiguration ingress-nginx-admission: its CA bundle",
    ):
        assert pending in result.stderr
    assert box.sb.ingress_looks() >= 2
    assert box.store().load() is not None  # the cluster is up: its state is kept


def test_no_ingress_controller_means_nothing_to_wait_for(box: Box) -> None:
    rke = RkeSettings.model_validate({"etcd": {"s3": S3}, "ingress": {"enabled": False}})
    settings = dataclasses.replace(SETTINGS, rke=rke)
    no_ingress = render_cluster_yml(MASTERS + WORKERS, settings)
    assert "provider: none" in no_ingress
    (box.sb.bin / "kubectl").unlink()  # not needed either
    box.sb.set(ingress_ready_after=-1)
    box.ok(no_ingress, RKE_INGRESS_TIMEOUT="0.1")
    assert box.sb.ingress_looks() == 0

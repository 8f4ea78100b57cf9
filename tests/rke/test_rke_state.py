"""rke.state, rke.workdir, rke.runner.processes and rke.releases as pure pieces: the state's
shape and size, the local copy, leftovers, the console budget, the child environment, releases."""

from __future__ import annotations

import datetime as dt
import fcntl
import io
import json
import os
import stat
from pathlib import Path

import pytest

from components.config.cluster import RUNNER_MAX_ETCD_MEMBERS, RUNNER_MAX_NODES
from rke import releases
from rke.runner.documents import disk_cluster_yml, load_yaml
from rke.runner.etcd import EtcdStatus
from rke.runner.processes import Console, child_env
from rke.state import (
    STDOUT_LIMIT,
    LocalCopy,
    Result,
    StateError,
    StateStore,
    check_rkestate,
    encode_result,
    key_dir,
    kubeconfig_of,
    newest_certificate,
    parse_previous,
)
from rke.workdir import RunDir, find_leftovers, private_base
from tests.support import fake_rke

CONFIG = {
    "cluster_name": "mc",
    "kubernetes_version": "v1.30.14-rancher1-1",
    "nodes": [
        {"address": "203.0.113.1", "internal_address": "10.147.1.10", "hostname_override": "m0",
         "user": "rke", "role": ["controlplane", "etcd"]},
        {"address": "198.51.100.1", "internal_address": "10.147.1.50", "hostname_override": "w0",
         "user": "rke", "role": ["worker"]},
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def applied() -> tuple[str, str]:
    return fake_rke.applied_state(CONFIG)


def test_the_newest_certificate_is_the_last_one_signed(applied: tuple[str, str]) -> None:
    state = json.loads(applied[0])
    bundle = state["desiredState"]["certificatesBundle"]
    first = newest_certificate(state)
    assert first is not None and first.tzinfo is not None
    # RKE copies the CA's notBefore into every certificate it signs: a later one is told by
    # its notAfter (signing time + ten years), in either part of the state
    start = fake_rke.ca_not_before(bundle)
    later = first + dt.timedelta(hours=1) - dt.timedelta(days=3650)
    state["currentState"]["certificatesBundle"]["kube-node"]["certificatePEM"] = fake_rke.x509_pem(
        "kube-node", start, issued=later
    )
    assert newest_certificate(state) == first + dt.timedelta(hours=1)
    # what does not parse as X.509 is no evidence
    junk = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    for part in ("desiredState", "currentState"):
        for entry in state[part]["certificatesBundle"].values():
            entry["certificatePEM"] = junk
    assert newest_certificate(state) is None
    assert newest_certificate({"desiredState": {}}) is None


def test_a_state_must_hold_the_ca_with_its_key(applied: tuple[str, str]) -> None:
    rkestate, _ = applied
    assert check_rkestate(rkestate)["desiredState"]["certificatesBundle"]["kube-ca"]
    for bad, reason in [
        ("null", "NoneType"), ("{}", "a dict"), ("[]", "list"), ("hello", "not JSON"),
        ('{"desiredState": {}}', "kube-ca"),
        ('{"desiredState": {"certificatesBundle": {"kube-ca": {"certificatePEM": "x"}}}}', "PEM"),
    ]:  # fmt: skip
        with pytest.raises(StateError, match=reason):
            check_rkestate(bad)
    doc = json.loads(rkestate)
    doc["desiredState"]["certificatesBundle"]["kube-ca"]["keyPEM"] = ""
    with pytest.raises(StateError, match="private key"):
        check_rkestate(json.dumps(doc))


def test_the_result_round_trips_and_reads_both_formats(applied: tuple[str, str]) -> None:
    rkestate, kubeconfig = applied
    ids = {"m0": "0123456789abcdef0123456789abcdef"}
    out = encode_result(Result(rkestate, kubeconfig, "cluster.yml text", ids, "t", None))
    result = parse_previous(out)
    assert result is not None and result.rkestate == rkestate
    assert result.node_ids == {"m0": "0123456789ab"}  # cut short: 48 bits tell a new machine
    assert kubeconfig_of(out) == kubeconfig
    old = json.dumps({"rkestate": rkestate, "kubeconfig": "K", "clusterYml": "", "version": 1})
    assert kubeconfig_of(old) == "K" and parse_previous(old).rkestate == rkestate  # type: ignore[union-attr]
    assert parse_previous("") is None and parse_previous(None) is None and kubeconfig_of("") == ""


def test_the_largest_accepted_cluster_fits_well_under_one_environment_variable() -> None:
    """RUNNER_MAX_NODES nodes, RUNNER_MAX_ETCD_MEMBERS of them etcd: under 60% of the limit."""
    nodes = []
    for i in range(RUNNER_MAX_NODES):
        etcd = i < RUNNER_MAX_ETCD_MEMBERS
        nodes.append({
            "address": f"198.{51 + i // 250}.{i % 250 // 50}.{i % 50 + 1}",
            "internal_address": f"10.147.{1 + i // 200}.{10 + i % 200}",
            "hostname_override": f"mc-prod-site{i // 200}-{'master' if etcd else 'worker'}-{i}",
            "user": "rke", "role": ["controlplane", "etcd"] if etcd else ["worker"],
            "labels": {"topology.kubernetes.io/zone": f"site{i // 200}"},
        })  # fmt: skip
    config = {**CONFIG, "nodes": nodes}
    rkestate, kubeconfig = fake_rke.applied_state(config)
    cluster_yml = disk_cluster_yml(config, None, None, None)
    ids = {n["hostname_override"]: os.urandom(16).hex() for n in nodes}
    out = encode_result(Result(rkestate, kubeconfig, cluster_yml, ids, "2026-11-29T00:00:00"))
    assert len(out) < 0.6 * STDOUT_LIMIT, len(out)


def test_the_local_copy_is_private_and_keyed(tmp_path: Path, applied: tuple[str, str]) -> None:
    env = {"HOME": str(tmp_path)}
    store = StateStore("multicloud/prod", env)
    assert store.load() is None
    copy = LocalCopy("multicloud/prod", applied[0], None, None, {}, None, "t", "test")
    path = store.save(copy)
    assert path.is_relative_to(tmp_path / ".local" / "state" / "multicloud")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    assert store.load() == copy
    assert StateStore("multicloud/home", env).load() is None  # another stack, another copy
    assert key_dir("a/b-c") != key_dir("a-b/c")
    path.write_text("{")
    with pytest.raises(StateError, match="damaged"):
        store.load()
    xdg = StateStore("multicloud/prod", {"XDG_STATE_HOME": str(tmp_path / "xdg"), "HOME": "/x"})
    assert xdg.root.is_relative_to(tmp_path / "xdg")


def test_leftovers_are_found_only_when_their_lock_is_free(tmp_path: Path) -> None:
    base = private_base({"RKE_RUNNER_TMPDIR": str(tmp_path)})
    assert stat.S_IMODE(base.stat().st_mode) == 0o700
    run = RunDir.create(base, "p/s")
    (run.path / "cluster.rkestate").write_text("{}")
    dead, busy = find_leftovers(base, "p/s", 0)
    assert dead == [] and busy == [run.path]  # its runner (this test) still holds the lock
    assert find_leftovers(base, "p/other", 0) == ([], [])
    os.close(run.lock_fd)  # the runner was SIGKILLed
    [left], busy = find_leftovers(base, "p/s", 0)
    assert busy == [] and left.rkestate == "{}" and left.owner_pid == os.getpid()
    fd = os.open(run.path / "lock", os.O_RDWR)  # an rke child that inherited the lock lives on
    fcntl.flock(fd, fcntl.LOCK_EX)
    assert find_leftovers(base, "p/s", 0.1)[1] == [run.path]
    os.close(fd)


def test_the_console_keeps_stderr_under_budget_and_logs_everything(tmp_path: Path) -> None:
    stream = io.StringIO()
    console = Console(tmp_path / "run.log", chatty=300, important=800, limit=1000, stream=stream)
    for i in range(50):
        console.line(f"INFO[0000] progress {i}")
    console.line("WARN[0001] something to know")
    console.final("[rke-runner] ERROR: " + "tail line\n" * 100)
    console.close()
    written = stream.getvalue()
    assert len(written.encode()) <= 1000
    assert "progress 0" in written and "progress 49" not in written
    assert "WARN[0001] something to know" in written and "more output only in" in written
    assert written.rstrip().endswith("tail line")
    log = (tmp_path / "run.log").read_text()
    assert "progress 49" in log and "ERROR" in log


def test_children_get_an_allowlisted_environment() -> None:
    env = {
        "PATH": "/bin", "HOME": "/h", "LANG": "C.UTF-8", "LC_ALL": "C", "https_proxy": "p",
        "NO_PROXY": "n", "SSH_AUTH_SOCK": "/s", "PULUMI_CONFIG_PASSPHRASE": "x",
        "AWS_SECRET_ACCESS_KEY": "x", "DIGITALOCEAN_TOKEN": "x", "RKE_SSH_PRIVATE_KEY": "x",
        "PULUMI_COMMAND_STDOUT": "x", "OS_PASSWORD": "x", "KUBECONFIG": "x",
    }  # fmt: skip
    assert set(child_env(env, agent=False)) == {
        "PATH", "HOME", "LANG", "LC_ALL", "https_proxy", "NO_PROXY",
    }  # fmt: skip
    assert "SSH_AUTH_SOCK" in child_env(env, agent=True)


def test_the_disk_cluster_yml_adds_secrets_and_drops_what_rke_ignores() -> None:
    doc = {
        **CONFIG, "ignore_docker_version": True,
        "services": {"etcd": {"backup_config": {"s3backupconfig": {"bucket_name": "b"}}}},
    }  # fmt: skip
    disk = load_yaml(disk_cluster_yml(doc, Path("/k"), "AK", "SK"))
    assert "ignore_docker_version" not in disk and disk["ssh_key_path"] == "/k"
    assert disk["services"]["etcd"]["backup_config"]["s3backupconfig"] == {
        "bucket_name": "b", "access_key": "AK", "secret_key": "SK",
    }  # fmt: skip
    local = load_yaml(disk_cluster_yml(doc, None, "AK", "SK", keep_s3=False))
    assert "s3backupconfig" not in local["services"]["etcd"]["backup_config"]
    assert "access_key" not in json.dumps(doc)  # the input is left alone


def test_quorum_arithmetic_of_a_removal() -> None:
    five = {f"etcd-m{i}": (f"https://10.0.0.{i}:2379",) for i in range(5)}
    healthy = EtcdStatus(five, frozenset(five))
    assert healthy.quorum_after_removing(["etcd-m4"])[0]
    two_down = EtcdStatus(five, frozenset(list(five)[2:]))
    assert two_down.quorum_after_removing(["etcd-m4"]) == (
        False, "3 of 5 members healthy now; after the removal 2 of 4 (quorum 3)",
    )  # fmt: skip
    assert two_down.quorum_after_removing(["etcd-m0"])[0]  # removing a dead one helps


def test_releases_data_answers_which_rke_ships_what() -> None:
    assert releases.latest().name == "v1.8.14"
    assert releases.supported_kubernetes_versions()[0] == "v1.30.14-rancher1-1"
    assert releases.releases_shipping("v1.30.14-rancher1-1") == (
        "v1.8.10", "v1.8.11", "v1.8.12", "v1.8.13", "v1.8.14",
    )  # fmt: skip
    assert releases.check_release("v1.8.12", "v1.30.14-rancher1-1") is None
    assert "ships v1.30.13-rancher1-1" in str(
        releases.check_release("v1.8.4", "v1.30.14-rancher1-1")
    )
    assert "not recorded" in str(releases.check_release("v1.8.6", "v1.30.14-rancher1-1"))
    assert "no release" in str(releases.check_release("v1.8.14", "v1.29.1-rancher1-1"))

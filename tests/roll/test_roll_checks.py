"""The roll's waits (roll/checks.py): what they read from kubectl/etcdctl/Cloudflare, that
they are bounded and say what they wait for, and that the kubeconfig and SSH key reach the
commands as 0600 files of a private directory (never argv) that is removed after."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from roll.checks import (
    CheckFailed,
    ClusterChecks,
    Target,
    Timeouts,
    etcd_members,
    longhorn_unhealthy,
    node_ready,
    record_contents,
    wait,
)
from roll.plan import Step

KUBECONFIG = "apiVersion: v1\nusers: [{name: admin, user: {token: kubeconfig-secret}}]\n"
SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nssh-key-secret\n-----END OPENSSH PRIVATE KEY-----"


MASTER, WORKER = ("controlplane", "etcd"), ("worker",)


def node_row(
    name: str, overlay: str, ssh_address: str, roles: tuple[str, ...] = MASTER
) -> dict[str, object]:
    """A row of the stack's ``nodes`` output, on site ``s``."""
    return {"name": name, "site": "s", "roles": list(roles),
            "overlayIp": overlay, "sshAddress": ssh_address}  # fmt: skip


def nodes_json(ready: dict[str, bool]) -> dict[str, object]:
    return {
        "items": [
            {
                "metadata": {"name": name},
                "status": {
                    "conditions": [{"type": "Ready", "status": "True" if ok else "False"}],
                    "addresses": [{"type": "ExternalIP", "address": f"192.0.2.{i}"}],
                },
            }
            for i, (name, ok) in enumerate(ready.items(), 1)
        ]
    }


def test_readers() -> None:
    assert node_ready(nodes_json({"a": True, "b": False})) == {"a": True, "b": False}
    members = {
        "members": [
            {"ID": 0xA1, "name": "etcd-m0", "clientURLs": ["https://10.147.1.10:2379"]},
            {"ID": 0xB2, "name": "etcd-m1", "clientURLs": ["https://10.147.2.10:2379"]},
            {"ID": 0xC3, "peerURLs": ["https://10.147.3.10:2380"]},  # added, not started
        ]
    }
    health = [
        {"endpoint": "https://10.147.1.10:2379", "health": True},
        {"endpoint": "https://10.147.2.10:2379", "health": False},
    ]
    assert etcd_members(members, health) == (
        {"a1": "etcd-m0", "b2": "etcd-m1", "c3": "(not started)"}, {"a1"}
    )  # fmt: skip
    volumes = {
        "items": [
            {"metadata": {"name": f"pvc-{i}"}, "status": {"state": state, "robustness": robust}}
            for i, (state, robust) in enumerate(
                [("attached", "healthy"), ("attached", "degraded"), ("detached", "unknown")], 1
            )
        ]
    }
    assert longhorn_unhealthy(volumes) == ["pvc-2 attached/degraded"]
    answer = {"result": [{"type": "A", "content": "192.0.2.1"}, {"type": "TXT", "content": "x"}]}
    assert record_contents(answer) == ["192.0.2.1"]


def test_a_wait_is_bounded_and_says_what_it_waits_for() -> None:
    said: list[str] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(CheckFailed, match=r"node a Ready: not within 30s \(not Ready: a\)"):
        wait("node a Ready", lambda: (False, "not Ready: a"), 30, 10, said.append,
             clock=lambda: now[0], sleep=sleep)  # fmt: skip
    assert said == ["waiting up to 30s for node a Ready"]
    assert now[0] == 30
    answers = iter([(False, "x"), (True, "")])
    wait("b", lambda: next(answers), 30, 10, said.append, clock=lambda: now[0], sleep=sleep)
    assert said[-1].startswith("b: ok after")


def test_secrets_reach_kubectl_and_ssh_as_private_files_never_argv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stand-in kubectl and ssh on PATH record their argv and the files they are given."""
    log = tmp_path / "log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ready = json.dumps(nodes_json({"mc-w0": True, "mc-m0": True}))
    for tool in ("kubectl", "ssh"):
        script = bin_dir / tool
        script.write_text(
            "#!/bin/sh\n"
            f'echo "{tool} $(echo "$*" | tr "\\n" " ")" >> {log}\n'  # argv on one line
            # the file after --kubeconfig / -i: its mode and content
            'prev=""; for a in "$@"; do\n'
            '  if [ "$prev" = --kubeconfig ] || [ "$prev" = -i ]; then\n'
            f'    stat -c "%a %U" "$a" >> {log}; cat "$a" >> {log}; echo >> {log}\n'
            f'    stat -c "%a" "$(dirname "$a")" >> {log}\n'
            "  fi; prev=$a; done\n"
            f"[ {tool} = kubectl ] && echo '{ready}'\n"
            "[ ssh = " + tool + " ] && echo up\n"
            "exit 0\n"
        )
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    rows = [
        node_row("mc-m0", "10.147.1.10", "192.0.2.1"),
        node_row("mc-w0", "10.147.1.20", "192.0.2.2", WORKER),
    ]
    target = Target(engine="rke", ssh_user="rke", nodes=rows, longhorn=False)
    step = Step("replace", "mc-w0", "s", "", (), ("mc-w0",), None, 1, 1, False)
    with ClusterChecks(target, KUBECONFIG, SSH_KEY, say=lambda _: None) as checks:
        directory = checks._dir
        assert directory is not None
        checks.after(step, {"nodes": rows})
    assert not directory.exists(), "the secrets' directory outlived the checks"
    # a killed roll's directory (its pid gone) is removed by the next one
    stale = directory.parent / "checks-killed"
    stale.mkdir()
    (stale / "kubeconfig").write_text("x")
    (stale / "pid").write_text("999999999")
    with ClusterChecks(target, KUBECONFIG, SSH_KEY, say=lambda _: None):
        assert not stale.exists()
    text = log.read_text()
    argv_lines = [ln for ln in text.splitlines() if ln.startswith(("kubectl ", "ssh "))]
    assert any(ln.startswith("kubectl ") for ln in argv_lines)
    # a bounded request: an unreachable API server must not hang the roll
    assert all("--request-timeout=30s" in ln for ln in argv_lines if ln.startswith("kubectl "))
    assert any(ln.startswith("ssh ") and "ping -c 1 -W 2 10.147.1.20" in ln for ln in argv_lines)
    for line in argv_lines:
        assert "kubeconfig-secret" not in line and "ssh-key-secret" not in line
    assert "kubeconfig-secret" in text and "ssh-key-secret" in text  # read from the files
    modes = {ln for ln in text.splitlines() if ln[:3].isdigit()}
    assert {m.split()[0] for m in modes} <= {"600", "700"}
    assert stat.S_IMODE(directory.parent.stat().st_mode) == 0o700


def test_etcd_wait_asks_a_staying_master_and_needs_the_expected_member_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RKE2: etcdctl in the staying server's etcd pod over SSH. A stand-in ssh answers with
    two healthy members: a step expecting 2 passes, one expecting 3 times out saying so."""
    log = tmp_path / "log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    members = {
        "members": [
            {"ID": i, "name": f"m{i}", "clientURLs": [f"https://10.147.1.{i}:2379"]} for i in (1, 2)
        ]
    }
    health = [{"endpoint": f"https://10.147.1.{i}:2379", "health": True} for i in (1, 2)]
    ssh = bin_dir / "ssh"
    ssh.write_text(
        "#!/bin/sh\n"
        f'echo "ssh $*" >> {log}\n'
        f"echo '{json.dumps(members)}'; echo; echo ==multicloud==; echo '{json.dumps(health)}'\n"
    )
    ssh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    rows = [node_row(f"mc-m{i}", f"10.147.1.{i}", f"192.0.2.{i}") for i in (0, 1)]
    target = Target(engine="rke2", ssh_user="rke", nodes=rows, longhorn=False)
    quick = Timeouts(node_ready=0, overlay=0, etcd=0, poll=0)
    removal = Step("remove-master", "mc-m2", "s", "", (), (), None, 3, 2, True)
    with ClusterChecks(target, KUBECONFIG, SSH_KEY, timeouts=quick, say=lambda _: None) as c:
        assert c._etcd("mc-m0", 2) == (True, "2 of 2 members healthy, 2 expected")
        with pytest.raises(CheckFailed, match=r"etcd healthy with 3 members .*2 of 2 members"):
            c._wait_etcd(Step("add-master", "mc-m2", "s", "", (), (), None, 2, 3, True))
        c.after(removal, {"nodes": rows})  # a removal waits for etcd only (no Longhorn, no record)
    command = log.read_text().splitlines()[0]
    assert "rke@192.0.2.0" in command, "asked on the master that stays"
    assert "kube-system exec etcd-mc-m0 -- etcdctl --endpoints https://127.0.0.1:2379" in command
    assert "--cacert /var/lib/rancher/rke2/server/tls/etcd/server-ca.crt" in command


def test_host_keys_are_pinned_at_the_addresses_of_the_last_update(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replaced master keeps its host key (the node's, exported as ``hostKey``) but may
    get a new address (``sshVia: public``); the next step asks etcd on it. A stand-in ssh
    checks as OpenSSH's StrictHostKeyChecking does (sshconnect.c ``check_host_key``): the
    destination with its key in UserKnownHostsFile, else "Host key verification failed."
    and exit 255."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    members = {"members": [{"ID": 1, "name": "m0", "clientURLs": ["https://10.147.1.1:2379"]}]}
    health = [{"endpoint": "https://10.147.1.1:2379", "health": True}]
    ssh = bin_dir / "ssh"
    ssh.write_text(
        "#!/bin/sh\n"
        'known=""; dest=""; prev=""\n'
        'for a in "$@"; do\n'
        '  case "$a" in UserKnownHostsFile=*) known=${a#UserKnownHostsFile=};; esac\n'
        '  case "$a" in *@*) [ -z "$dest" ] && dest=${a#*@};; esac\n'
        "done\n"
        'grep -qx "$dest ssh-ed25519 KEY-$dest-node" "$known" 2>/dev/null || '
        '{ echo "Host key verification failed." >&2; exit 255; }\n'
        f"echo '{json.dumps(members)}'; echo; echo ==multicloud==; echo '{json.dumps(health)}'\n"
    )
    ssh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")

    def row(name: str, address: str, key_of: str) -> dict[str, object]:
        key = f"ssh-ed25519 KEY-{key_of}-node"
        return node_row(name, "10.147.1.1", address) | {"hostKey": key}

    # the stand-in's key for an address: as if each address served that node's key
    before = [row("mc-m0", "192.0.2.10", "192.0.2.10"), row("mc-m1", "192.0.2.11", "192.0.2.11")]
    target = Target(engine="rke", ssh_user="rke", nodes=before, longhorn=False)
    quick = Timeouts(node_ready=0, overlay=0, etcd=0, poll=0)
    # the step after mc-m0's replacement: mc-m2 leaves, etcd is asked on mc-m0 (a removal
    # waits for etcd only, with no Longhorn and no record)
    removal = Step("remove-master", "mc-m2", "s", "", (), (), None, 2, 1, True)
    moved = [row("mc-m0", "192.0.2.20", "192.0.2.20"), before[1]]
    with ClusterChecks(target, KUBECONFIG, SSH_KEY, timeouts=quick, say=lambda _: None) as c:
        c.after(removal, {"nodes": moved})
        wrong = [row("mc-m0", "192.0.2.20", "another"), before[1]]  # not the key it serves
        with pytest.raises(CheckFailed, match="Host key verification failed"):
            c.after(removal, {"nodes": wrong})
        # the overlay wait says it was ssh that failed, not the ping
        assert c._overlay("mc-m0", "mc-m1") == (
            False, "ssh to mc-m0: Host key verification failed."
        )  # fmt: skip


def test_kubectl_uses_the_kubeconfig_of_the_last_update(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RKE writes its first control plane's address into the kubeconfig; replacing that
    master with a new address (a new droplet) moves the server. The waits after it must
    use the kubeconfig the update exported, not the one from the roll's start. A stand-in
    kubectl answers only with the kubeconfig naming the new server."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ready = json.dumps(nodes_json({"mc-m0": True}))
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(
        "#!/bin/sh\n"
        'grep -q "server: https://192.0.2.20:6443" "$2" || '
        '{ echo "Unable to connect to the server: connection refused" >&2; exit 1; }\n'
        f"echo '{ready}'\n"
    )
    kubectl.chmod(0o755)
    _etcd_ssh(bin_dir, [{"ID": 1, "name": "m0", "clientURLs": ["https://10.147.1.1:2379"]}],
              [{"endpoint": "https://10.147.1.1:2379", "health": True}])  # fmt: skip
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    rows = [node_row("mc-m0", "10.147.1.1", "192.0.2.10", [*MASTER, *WORKER])]
    old = "apiVersion: v1\nclusters: [{cluster: {server: https://192.0.2.10:6443}}]\n"
    new = "apiVersion: v1\nclusters: [{cluster: {server: https://192.0.2.20:6443}}]\n"
    target = Target(engine="rke", ssh_user="rke", nodes=rows, longhorn=False)
    quick = Timeouts(node_ready=0, etcd=0, poll=0)
    step = Step("replace", "mc-m1", "s", "", (), ("mc-m1",), None, 1, 1, False)
    with ClusterChecks(target, old, SSH_KEY, timeouts=quick, say=lambda _: None) as c:
        with pytest.raises(CheckFailed, match="Unable to connect to the server"):
            c.before(step, {"nodes": rows, "kubeconfig": old})
        c.before(step, {"nodes": rows, "kubeconfig": new})
        assert c._dir is not None
        assert stat.S_IMODE((c._dir / "kubeconfig").stat().st_mode) == 0o600


def _etcd_ssh(
    bin_dir: Path, members: list[dict[str, object]], health: list[dict[str, object]]
) -> None:
    """A stand-in ssh answering the etcd probe as etcdctl's ``member list -w json`` and
    ``endpoint health --cluster -w json`` print (IDs as numbers; one health row per client
    URL of every member, etcdctl ep_command.go ``endpointsFromCluster``)."""
    ssh = bin_dir / "ssh"
    ssh.write_text(
        "#!/bin/sh\n"
        'case "$*" in *etcdctl*) ;; *) echo "stand-in ssh: not modelled: $*" >&2; exit 2 ;; esac\n'
        f"echo '{json.dumps({'members': members})}'; echo; echo ==multicloud==\n"
        f"echo '{json.dumps(health)}'\n"
    )
    ssh.chmod(0o755)


def _volumes(robustness: str) -> dict[str, object]:
    """Longhorn's volumes as ``kubectl get volumes.longhorn.io -o json`` lists them."""
    return {
        "items": [
            {"metadata": {"name": name}, "status": {"state": "attached", "robustness": robust}}
            for name, robust in (("pvc-ok", "healthy"), ("pvc-db", robustness))
        ]
    }


def test_before_a_worker_step_waits_for_etcd_and_longhorn_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A roll resumed after the last step's Longhorn wait ran out has no drift left on that
    node: the next step's gate must wait for what that wait never saw. A stand-in kubectl
    answers every node Ready and one Longhorn volume degraded; a worker step's before()
    fails naming it, and passes once the volume is healthy again."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    answers = tmp_path / "volumes.json"
    answers.write_text(json.dumps(_volumes("degraded")))
    replicas = tmp_path / "replicas.json"
    replicas.write_text(json.dumps(_replicas(("mc-w0", ""), ("mc-m0", "2026-12-06T08:00:00Z"))))
    ready = json.dumps(nodes_json({"mc-m0": True, "mc-w0": True}))
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        f"  *' get nodes '*) echo '{ready}' ;;\n"
        f"  *'-n longhorn-system get volumes.longhorn.io '*) cat {answers} ;;\n"
        f"  *'-n longhorn-system get replicas.longhorn.io '*) cat {replicas} ;;\n"
        '  *) echo "stand-in kubectl: not modelled: $*" >&2; exit 1 ;;\n'
        "esac\n"
    )
    kubectl.chmod(0o755)
    _etcd_ssh(bin_dir, [{"ID": 7, "name": "etcd-mc-m0", "clientURLs": ["https://10.147.1.1:2379"]}],
              [{"endpoint": "https://10.147.1.1:2379", "health": True}])  # fmt: skip
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    rows = [
        node_row("mc-m0", "10.147.1.1", "192.0.2.1"),
        node_row("mc-w0", "10.147.1.20", "192.0.2.2", WORKER),
    ]
    target = Target(engine="rke2", ssh_user="rke", nodes=rows, longhorn=True)
    quick = Timeouts(node_ready=0, etcd=0, longhorn=0, poll=0)
    step = Step("replace", "mc-w0", "s", "", (), ("mc-w0",), None, 1, 1, False)
    said: list[str] = []
    with ClusterChecks(target, KUBECONFIG, SSH_KEY, timeouts=quick, say=said.append) as c:
        with pytest.raises(
            CheckFailed, match=r"Longhorn volumes healthy: .*pvc-db attached/degraded"
        ):
            c.before(step, {"nodes": rows})
        assert "waiting up to 0s for etcd healthy with all 1 members (asked on mc-m0)" in said
        answers.write_text(json.dumps(_volumes("healthy")))
        # a detached volume's robustness says nothing: its only usable replica is on the
        # worker about to go (the other failed), so the step waits
        with pytest.raises(CheckFailed, match="only mc-w0 holds a usable replica of pvc-db"):
            c.before(step, {"nodes": rows})
        replicas.write_text(json.dumps(_replicas(("mc-w0", ""), ("mc-m0", ""))))
        c.before(step, {"nodes": rows})
    assert any(line.startswith("Longhorn volumes healthy: ok after") for line in said[-4:])
    assert said[-1].startswith("a volume replica beside mc-w0's: ok after")


def _replicas(*on: tuple[str, str]) -> dict[str, object]:
    """A replicas.longhorn.io list of volume pvc-db: (nodeID, failedAt) per replica."""
    return {"items": [{"metadata": {"name": f"pvc-db-r-{i}"},
                       "spec": {"volumeName": "pvc-db", "nodeID": node, "failedAt": failed}}
                      for i, (node, failed) in enumerate(on)]}  # fmt: skip


@pytest.mark.parametrize("stale_url", ["https://10.147.9.9:2379", "https://10.147.1.2:2379"])
def test_a_stale_member_named_as_its_replacement_is_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stale_url: str
) -> None:
    """RKE2 names a replaced server's member etcd-<node> again. A stale, dead member and its
    replacement under that name (at another client URL, unhealthy; or at the same overlay
    address, where the live one answers for both) are 4 members, not 3."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    members: list[dict[str, object]] = [
        {"ID": 10 + i, "name": f"etcd-mc-m{i}", "clientURLs": [f"https://10.147.1.{i}:2379"]}
        for i in (0, 1, 2)
    ]
    members.append({"ID": 99, "name": "etcd-mc-m2", "clientURLs": [stale_url]})
    health = [
        {"endpoint": url, "health": url != "https://10.147.9.9:2379"}
        for m in members
        for url in m["clientURLs"]  # type: ignore[attr-defined]
    ]
    _etcd_ssh(bin_dir, members, health)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    rows = [node_row(f"mc-m{i}", f"10.147.1.{i}", f"192.0.2.{i}") for i in (0, 1, 2)]
    target = Target(engine="rke2", ssh_user="rke", nodes=rows, longhorn=False)
    quick = Timeouts(etcd=0, poll=0)
    step = Step("remove-master", "mc-m3", "s", "", (), (), None, 4, 3, True)
    with (
        ClusterChecks(target, KUBECONFIG, SSH_KEY, timeouts=quick, say=lambda _: None) as c,
        pytest.raises(CheckFailed, match=r"etcd healthy with 3 members .* of 4 members"),
    ):
        c._wait_etcd(step)


def test_finishing_a_node_whose_vm_is_gone_does_not_wait_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interrupted replacement left the node without a VM, and the outputs may still
    name it (for RKE the kubeconfig's server can be that VM): waiting for the cluster's
    health before recreating it could never end, so before() of a finish step asks
    nothing (no kubectl, no ssh: PATH holds neither)."""
    monkeypatch.setenv("PATH", str(tmp_path))
    rows = [node_row("mc-m0", "10.147.1.1", "192.0.2.1")]
    target = Target(engine="rke", ssh_user="rke", nodes=rows, longhorn=True)
    said: list[str] = []
    finish = Step("finish", "mc-m0", "s", "", (), (), None, 1, 1, True)
    with ClusterChecks(target, KUBECONFIG, SSH_KEY, say=said.append) as checks:
        checks.before(finish, {"nodes": rows, "kubeconfig": KUBECONFIG})
    assert said == ["mc-m0 lost its VM in an interrupted update: finishing it first"]

"""Issue 21 on the real engine with the real waits: `make roll`'s driver runs with
roll/checks.py ``ClusterChecks``, built as `make roll` builds them (roll/__main__.py
``cluster_checks``), against booted fake VMs.

tests/engine/test_roll.py proves the order and the resume with a stand-in for the waits;
here the waits themselves run: OpenSSH's ``ssh`` (the real client, a wrapper entering the
harness's network namespace, ``NetworkNamespace.run_prefix``) with known_hosts pinned from
the ``nodes`` output and StrictHostKeyChecking=yes, to each VM's real sshd
(tests/engine/providers/nodes.py), where the node emulator answers ``docker exec etcd
etcdctl`` from the fake rke's etcd and ``ping`` over the fake ZeroTier; and ``kubectl``
with the stack's kubeconfig output, answered as the RKE cluster's API server would
(tests/support/fake_rke.py ``_kubectl_get``). The DNS wait is skipped (no token given): the
harness has no Cloudflare API server, and ``ClusterChecks._dns`` would call the real one.

The fake cloud gives each new droplet addresses of its own, as DigitalOcean does
(tests/engine/providers/server.py ``FRESH_ADDRESSES_ENV``), so a replaced droplet has a
new ``sshAddress`` with its node's same host key (issue 21's bug fixed in 83c7854: the
checks pinned host keys once, at the roll's start).

After a first `pulumi up` of prod with RKE (RKE2 is not modelled here: its etcd wait runs
``kubectl exec etcd-<node> -- etcdctl`` through the server's own kubectl, which the node
emulator's RKE2 kubectl does not answer), a new image on home and digitalocean (five nodes
behind, two of them masters):

1. the negative: digitalocean's master's sshd presents another host key than the pinned
   one; a roll of home's master stops before its update, naming the master etcd was asked
   on, the host key failure and that `make roll` resumes; no update ran;
2. the key restored, the roll: the workers, then digitalocean's master (a new address,
   and with it the kubeconfig's server: RKE writes the first master's address into it, so
   the waits after it need that update's kubeconfig), then home's master, whose waits ask
   etcd (all 3 members before, 3 after) and ping the overlay through digitalocean's master
   at its new address; exit 0, every wait passed, the replaced master's new sshd accepted
   the checks' key.

Wall times are printed.
"""

from __future__ import annotations

import os
import shlex
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from roll import stack_file
from roll.__main__ import cluster_checks
from roll.checks import Timeouts
from roll.driver import Options, roll
from tests.engine.harness import Workspace
from tests.engine.providers.cloud import VM_TYPES
from tests.engine.providers.server import FRESH_ADDRESSES_ENV
from tests.engine.test_roll import NEW_IMAGES, STACK, Deployed, deployed
from tests.support.tools import debian_tool, ed25519_openssh

ROLLED = ("home", "digitalocean")  # the sites given a new image
DO_MASTER = "mc-prod-digitalocean-master-0"
HOME_MASTER = "mc-prod-home-master-0"
# short bounds: a check that can pass does so on its first or second look here
QUICK = Timeouts(node_ready=60, overlay=30, etcd=30, longhorn=30, dns=30, poll=1)
NEGATIVE = Timeouts(node_ready=30, overlay=5, etcd=5, longhorn=5, dns=5, poll=1)


def operator_ssh(d: Deployed, folder: Path) -> Path:
    """A bin folder whose ``ssh`` is OpenSSH's client run inside the harness's namespace,
    where the fake VMs' sshd listen."""
    client = debian_tool("ssh", "openssh-client", "/usr/bin/ssh")
    if client is None:
        pytest.skip("ssh is not installed (apt-get install openssh-client)")
    folder.mkdir()
    prefix = " ".join(shlex.quote(p) for p in d.ws.netns.run_prefix)
    wrapper = folder / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec {prefix} {shlex.quote(client)} "$@"\n')
    wrapper.chmod(0o755)
    return folder


def vm_folder(d: Deployed, node: str) -> Path:
    """The live VM's folder of ``node`` (its sshd's config, key, log)."""
    live = [
        i for i, r in d.cloud.resources().items() if r["type"] in VM_TYPES and r["name"] == node
    ]
    assert len(live) == 1, live
    return d.ws.folder / "cloud" / "nodes" / live[0]


def host_key(folder: Path, private: str) -> None:
    """The VM's sshd presents ``private`` from now on (sshd(8): on SIGHUP it executes
    itself again, reading its config and host keys anew)."""
    key = folder / "ssh_host_ed25519_key"
    key.write_text(private)
    os.kill(int((folder / "sshd.pid").read_text().split()[0]), signal.SIGHUP)
    time.sleep(1)  # the re-executed sshd listening again


def server_line(ws: Workspace) -> str:
    """The ``server:`` line of the stack's kubeconfig output."""
    text = ws.run("stack", "output", "kubeconfig", "--show-secrets").stdout
    return next(line.strip() for line in text.splitlines() if "server:" in line)


def run(d: Deployed, config: Any, timeouts: Timeouts, only: str | None = None) -> tuple[int, str]:
    said: list[str] = []
    checks = cluster_checks(d.stack.stack, config, timeouts, said.append, dns=False)
    started = time.monotonic()
    code = roll(Options(STACK, d.ws.project, only=only), d.stack, checks, said.append)
    d.times.append(f"roll{' --only ' + only if only else ''} {time.monotonic() - started:.1f} s")
    return code, "\n".join(said)


def test_roll_with_the_real_checks_over_ssh_kubectl_and_the_overlay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FRESH_ADDRESSES_ENV, "1")  # before the workspace copies the environment
    with deployed(tmp_path, "rke") as d:
        ws = d.ws
        assert ws.rke is not None
        ws.rke.set(cloud_nodes=str(ws.folder / "cloud" / "nodes"))
        bin_dir = operator_ssh(d, tmp_path / "operator")
        monkeypatch.setenv(
            "PATH", os.pathsep.join([str(bin_dir), str(ws.rke.bin), os.environ["PATH"]])
        )
        rows = {r["name"]: r for r in ws.run("stack", "output", "--json").json()["nodes"]}
        masters = [n for n, r in rows.items() if "etcd" in r["roles"]]
        assert masters[0] == DO_MASTER and HOME_MASTER in masters, masters  # asked first
        for site in ROLLED:
            d.sites[site]["image"] = NEW_IMAGES[site]
        ws.config_set("sites", d.sites)
        path = ws.project / f"Pulumi.{STACK}.yaml"
        config = stack_file.load(path.read_text(), path.name)

        # 1. digitalocean's master presents another host key than its pinned one
        folder = vm_folder(d, DO_MASTER)
        pinned = (folder / "ssh_host_ed25519_key").read_text()
        host_key(folder, ed25519_openssh()[0])
        code, said = run(d, config, NEGATIVE, only=HOME_MASTER)
        assert code == 1, said
        assert (
            f"stopped at node 1 of 1: {HOME_MASTER} (replace) failed while checking before" in said
        )
        assert f"etcd healthy with all 3 members (asked on {DO_MASTER})" in said, said
        assert f"etcdctl on {DO_MASTER}: " in said and "Host key verification failed." in said
        assert f"`make roll STACK={STACK}` again" in said and "resumes" in said, said
        assert d.stack.ups == 0, "a master was replaced without etcd's health known"

        # 2. the key restored: the roll, the real waits passing
        host_key(folder, pinned)
        old_address = rows[DO_MASTER]["sshAddress"]
        assert f'server: "https://{old_address}:6443"' in server_line(ws)
        code, said = run(d, config, QUICK)
        assert code == 0, said
        order = [
            line.split(". ", 1)[1].split(" (")[0]
            for line in said.splitlines()
            if ". replace " in line
        ]
        assert order[-2:] == [f"replace {DO_MASTER}", f"replace {HOME_MASTER}"], order
        assert len(order) == 5 and d.stack.ups == 5, order
        after = {r["name"]: r for r in ws.run("stack", "output", "--json").json()["nodes"]}
        assert after[DO_MASTER]["sshAddress"] != old_address, "the new droplet's own address"
        assert after[DO_MASTER]["hostKey"] == rows[DO_MASTER]["hostKey"]
        new_address = after[DO_MASTER]["sshAddress"]
        assert f'server: "https://{new_address}:6443"' in server_line(ws)
        for node in [n for n in rows if rows[n]["site"] in ROLLED]:
            assert f"{node} Ready: ok" in said, said
            assert f"{node}'s overlay address answering: ok" in said, said
        # home's master: etcd asked on digitalocean's replaced master, at its new address
        via = f"(asked on {DO_MASTER}): ok"
        assert f"etcd healthy with all 3 members {via}" in said, said
        assert f"etcd healthy with 3 members {via}" in said, said
        assert said.count("Longhorn volumes healthy: ok") == 10, said  # before and after
        assert "DNS record" not in said  # no token: skipped
        log = (vm_folder(d, DO_MASTER) / "sshd.log").read_text()
        assert "Accepted publickey for rke" in log, log
        calls = [c["args"] for c in ws.rke.calls("kubectl") if "get" in c["args"]]
        assert calls and all("--request-timeout=30s" in a for a in calls), calls

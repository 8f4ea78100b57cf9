"""The waits between roll steps: bounded, each saying what it waits for.

``Checks`` is the interface the driver calls (tests inject fakes); ``ClusterChecks`` asks
the cluster the way the program's own commands do:
- Kubernetes with ``kubectl`` and the stack's ``kubeconfig`` output (as
  ``rke/runner/kubectl.py``): node Ready (``kubectl get nodes -o json``,
  ``status.conditions[type=Ready].status``), Longhorn's ``volumes.longhorn.io``
  (longhorn-manager ``k8s/pkg/apis/longhorn/v1beta2/volume.go``: ``status.robustness`` is
  healthy, degraded, faulted or unknown; a detached volume is unknown);
- etcd with ``etcdctl`` through SSH on a master that stays (``member list -w json``,
  ``endpoint health --cluster -w json``): RKE in its ``etcd`` container
  (``rke/runner/etcd.py``), RKE2 in its ``etcd-<node>`` static pod with the server's
  client certificate (RKE2 keeps them in ``/var/lib/rancher/rke2/server/tls/etcd``), through
  the server's own kubectl (``rke2/scripts.py`` KUBECTL);
- the overlay: ``ping`` from that master to the node's overlay address (the ZeroTier flow
  rules let nodes talk freely, ``components/overlay/zerotier/rules.py``);
- the DNS record: Cloudflare's API ``GET /zones/{zone_id}/dns_records?name=<record>``
  (https://developers.cloudflare.com/api/resources/dns/subresources/records/methods/list/)
  must name an address of a Ready node.
Secrets (kubeconfig, SSH key) go into 0600 files in a private directory that lives as long
as the checks (``rke/workdir.py``'s way), never on argv; the API token only in a header.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from components.private_files import replace_secret, scratch_dir, write_secret
from roll.plan import Step

# Bounds of each wait (seconds), and how often it looks.
NODE_READY_TIMEOUT = 900.0  # a new VM boots, joins the overlay and the cluster
OVERLAY_TIMEOUT = 300.0
ETCD_TIMEOUT = 600.0
LONGHORN_TIMEOUT = 1800.0  # replicas rebuild onto the new node
DNS_TIMEOUT = 300.0
POLL_SECONDS = 10.0
COMMAND_TIMEOUT = 60.0  # one kubectl / ssh call
SSH_FAILED = 255  # ssh's exit status for its own errors (ssh(1) EXIT STATUS)
REQUEST_TIMEOUT = "30s"  # one kubectl request to the API server

RKE2_KUBECTL = "/var/lib/rancher/rke2/bin/kubectl --kubeconfig /etc/rancher/rke2/rke2.yaml"
RKE2_ETCD_TLS = "/var/lib/rancher/rke2/server/tls/etcd"
CLOUDFLARE_API = "https://api.cloudflare.com/client/v4"


class CheckFailed(Exception):
    """A wait ran out; the message says what was still wrong."""


class Checks(Protocol):
    """What the driver waits for around each step (``ClusterChecks``, or a test's fake)."""

    def before(self, step: Step, outputs: Mapping[str, Any]) -> None:
        """Before every step: every node Ready, etcd healthy with all its members,
        Longhorn healthy, the DNS record on a live node (a resumed roll re-waits for what
        the last step's waits never saw). ``outputs``: the stack's outputs now
        (``nodes``, ``kubeconfig``)."""

    def after(self, step: Step, outputs: Mapping[str, Any]) -> None:
        """After a step: the node Ready and on the overlay, etcd with the members it
        should have, Longhorn healthy, the DNS record on a live node."""


@dataclass(frozen=True)
class Timeouts:
    node_ready: float = NODE_READY_TIMEOUT
    overlay: float = OVERLAY_TIMEOUT
    etcd: float = ETCD_TIMEOUT
    longhorn: float = LONGHORN_TIMEOUT
    dns: float = DNS_TIMEOUT
    poll: float = POLL_SECONDS


@dataclass(frozen=True)
class Target:
    """Where and how the checks reach the cluster (from the stack's outputs and config)."""

    engine: str  # rke | rke2
    ssh_user: str
    nodes: Sequence[Mapping[str, Any]]  # the `nodes` output's rows (host keys pinned)
    longhorn: bool
    record: tuple[str, str] | None = None  # (zone id, record name) with Cloudflare


def wait(
    what: str,
    probe: Callable[[], tuple[bool, str]],
    bound: float,
    poll: float,
    say: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll ``probe`` (ok, what it saw) until ok, at most ``bound`` seconds."""
    say(f"waiting up to {bound:g}s for {what}")
    start = clock()
    while True:
        ok, seen = probe()
        if ok:
            say(f"{what}: ok after {clock() - start:.0f}s")
            return
        if clock() - start >= bound:
            raise CheckFailed(f"{what}: not within {bound:g}s ({seen})")
        sleep(poll)


def output_value(output: Any) -> Any:
    """An Automation API ``OutputValue``'s value, or the value itself (fakes)."""
    return getattr(output, "value", output)


# Pure readers of what the commands print (tested without a cluster).


def node_ready(nodes_json: Mapping[str, Any]) -> dict[str, bool]:
    """Node name -> Ready, from ``kubectl get nodes -o json``."""
    ready = {}
    for item in nodes_json.get("items") or []:
        conditions = (item.get("status") or {}).get("conditions") or []
        ready[str(item["metadata"]["name"])] = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
        )
    return ready


def node_addresses(nodes_json: Mapping[str, Any]) -> dict[str, set[str]]:
    """Node name -> its ``status.addresses``."""
    return {
        str(item["metadata"]["name"]): {
            str(a.get("address")) for a in (item.get("status") or {}).get("addresses") or []
        }
        for item in nodes_json.get("items") or []
    }


def etcd_members(
    members_json: Mapping[str, Any], health: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, str], set[str]]:
    """({member ID: name}, healthy member IDs) from etcdctl's ``member list -w json`` and
    ``endpoint health --cluster -w json``.

    By ID: RKE and RKE2 name a replaced master's member as the old one (``etcd-<node>``),
    so a stale member and its replacement share a name. ``ID`` is each member's unique
    uint64 (a number; etcdctl ``printer_json.go`` prints hex only with ``--hex``). Health
    is per client URL (``ep_command.go`` ``endpointsFromCluster``: every member's
    ``clientURLs``): a member is healthy when it has client URLs (one added but never
    started has none) and all of them answer healthy."""
    sick = {str(e.get("endpoint")) for e in health if e.get("health") is not True}
    good = {str(e.get("endpoint")) for e in health if e.get("health") is True} - sick
    members, healthy = {}, set()
    for m in members_json.get("members") or []:
        member_id = m.get("ID")
        key = f"{member_id:x}" if isinstance(member_id, int) else str(member_id)
        members[key] = str(m.get("name") or "(not started)")
        urls = set(m.get("clientURLs") or ())
        if urls and urls <= good:
            healthy.add(key)
    return members, healthy


def longhorn_unhealthy(volumes_json: Mapping[str, Any]) -> list[str]:
    """Volumes not healthy: attached ones whose robustness is not ``healthy``."""
    bad = []
    for item in volumes_json.get("items") or []:
        status = item.get("status") or {}
        state, robustness = status.get("state"), status.get("robustness")
        if robustness != "healthy" and not (state == "detached" and robustness == "unknown"):
            bad.append(f"{item['metadata']['name']} {state}/{robustness}")
    return bad


def only_replicas_on(replicas_json: Mapping[str, Any], node: str, nodes: set[str]) -> list[str]:
    """Volumes whose every usable replica is on ``node``: replacing it loses their data.

    A replica is usable when it has not failed (``spec.failedAt`` empty) and its node
    (``spec.nodeID``) is in the cluster (longhorn-manager k8s/pkg/apis/longhorn/v1beta2
    replica.go, instancemanager.go ``InstanceSpec``). The robustness wait cannot see this
    for a detached volume: its robustness is ``unknown``, and Longhorn rebuilds replicas
    of attached volumes only."""
    usable: dict[str, list[str]] = {}
    for item in replicas_json.get("items") or []:
        spec = item.get("spec") or {}
        if not spec.get("failedAt") and spec.get("nodeID") in nodes:
            usable.setdefault(str(spec.get("volumeName")), []).append(str(spec["nodeID"]))
    return sorted(v for v, on in usable.items() if set(on) == {node})


def record_contents(answer: Mapping[str, Any]) -> list[str]:
    """The A/AAAA contents of Cloudflare's DNS record list answer."""
    return [
        str(r.get("content")) for r in answer.get("result") or [] if r.get("type") in ("A", "AAAA")
    ]


class ClusterChecks:
    """``Checks`` against the live cluster. Use as a context manager: the secrets' files
    live in a private directory removed on exit."""

    def __init__(
        self,
        target: Target,
        kubeconfig: str,
        ssh_key: str,
        cloudflare_token: str | None = None,
        timeouts: Timeouts = Timeouts(),
        say: Callable[[str], None] = print,
    ) -> None:
        self.target = target
        self.timeouts = timeouts
        self.say = say
        self._token = cloudflare_token
        self._secrets = (kubeconfig, ssh_key)
        self._dir: Path | None = None
        self._files = ExitStack()  # the private directory, removed on exit
        self.rows = {str(r["name"]): r for r in target.nodes}

    def __enter__(self) -> ClusterChecks:
        self._dir = self._files.enter_context(scratch_dir("roll", "checks-"))
        write_secret(self._dir / "kubeconfig", self._secrets[0])
        write_secret(self._dir / "ssh-key", self._secrets[1].rstrip("\n") + "\n")
        self._pin_host_keys()
        return self

    def __exit__(self, *exc: object) -> None:
        self._files.close()

    def _use(self, outputs: Mapping[str, Any]) -> None:
        """Take the outputs of the last update: a replaced VM may have a new address
        (``sshVia: public``), its node the same host key; and the kubeconfig may name
        another server (RKE writes the first control plane's address into it,
        rke/config_rules.py ``kubeconfig_server``: a replaced first master moves it)."""
        self.rows = {str(r["name"]): r for r in output_value(outputs.get("nodes")) or []}
        self._pin_host_keys()
        kubeconfig = output_value(outputs.get("kubeconfig"))
        if kubeconfig and str(kubeconfig) != self._secrets[0]:
            assert self._dir is not None
            self._secrets = (str(kubeconfig), self._secrets[1])
            replace_secret(self._dir / "kubeconfig", self._secrets[0])

    def _pin_host_keys(self) -> None:
        """known_hosts from the nodes' exported host keys at their current addresses."""
        assert self._dir is not None
        rows = self.rows.values()
        known = [f"{r['sshAddress']} {r['hostKey']}" for r in rows if r.get("hostKey")]
        if known:  # the pinned host keys, when the stack exports them
            replace_secret(self._dir / "known_hosts", "\n".join(known) + "\n")

    # The commands.

    def _run(self, argv: Sequence[str]) -> tuple[int, str]:
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return 1, str(error)
        return done.returncode, done.stdout if done.returncode == 0 else done.stderr[-300:]

    def kubectl_json(self, *args: str) -> tuple[dict[str, Any] | None, str]:
        assert self._dir is not None, "use ClusterChecks as a context manager"
        # kubectl waits for an unreachable API server without bound unless told
        # (kubectl's global --request-timeout, default 0: no timeout)
        rc, out = self._run(
            ["kubectl", "--kubeconfig", str(self._dir / "kubeconfig"),
             f"--request-timeout={REQUEST_TIMEOUT}", *args, "-o", "json"]
        )  # fmt: skip
        if rc != 0:
            return None, f"kubectl {' '.join(args)}: {out.strip()}"
        try:
            return json.loads(out), ""
        except ValueError:
            return None, f"kubectl {' '.join(args)} printed no JSON"

    def ssh(self, node: str, command: str) -> tuple[int, str]:
        assert self._dir is not None, "use ClusterChecks as a context manager"
        known = self._dir / "known_hosts"
        options = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
        if known.exists():
            options += ["-o", f"UserKnownHostsFile={known}"]
        address = str(self.rows[node]["sshAddress"])
        return self._run(
            ["ssh", *options, "-o", "ConnectTimeout=10", "-i", str(self._dir / "ssh-key"),
             f"{self.target.ssh_user}@{address}", command]
        )  # fmt: skip

    def staying_master(self, step: Step) -> str | None:
        masters = [
            n for n, r in self.rows.items() if "etcd" in (r.get("roles") or ()) and n != step.node
        ]
        return masters[0] if masters else None

    # The probes.

    def _nodes_ready(self, names: Sequence[str]) -> tuple[bool, str]:
        data, error = self.kubectl_json("get", "nodes")
        if data is None:
            return False, error
        ready = node_ready(data)
        waiting = [n for n in names if not ready.get(n)]
        return not waiting, "not Ready: " + ", ".join(waiting)

    def _etcd(self, via: str, expected: int) -> tuple[bool, str]:
        if self.target.engine == "rke2":
            tls = " ".join(
                f"--{flag} {RKE2_ETCD_TLS}/{file}"
                for flag, file in (
                    ("cacert", "server-ca.crt"),
                    ("cert", "server-client.crt"),
                    ("key", "server-client.key"),
                )
            )
            pod = shlex.quote(f"etcd-{via}")  # RKE2's static pod on that server
            etcdctl = (
                f"sudo {RKE2_KUBECTL} -n kube-system exec {pod} -- "
                f"etcdctl --endpoints https://127.0.0.1:2379 {tls}"
            )
        else:
            etcdctl = "docker exec etcd etcdctl"
        # `endpoint health` exits 1 when a member is unhealthy, its JSON still on stdout.
        _, out = self.ssh(
            via,
            f"{etcdctl} member list -w json; echo; echo ==multicloud==; "
            f"{etcdctl} endpoint health --cluster -w json; true",
        )
        if "==multicloud==" not in out:
            return False, f"etcdctl on {via}: {out.strip()[-200:]}"
        first, second = out.split("==multicloud==", 1)
        try:
            members, healthy = etcd_members(json.loads(first), json.loads(second or "[]"))
        except (ValueError, AttributeError):
            return False, f"etcdctl on {via} printed no JSON"
        ok = len(members) == expected and healthy == set(members)
        seen = f"{len(healthy)} of {len(members)} members healthy, {expected} expected"
        sick = [f"{name} ({key})" for key, name in sorted(members.items()) if key not in healthy]
        return ok, seen + (f"; not healthy: {', '.join(sick)}" if sick else "")

    def _overlay(self, via: str, node: str) -> tuple[bool, str]:
        ip = str(self.rows[node]["overlayIp"])
        rc, out = self.ssh(via, f"ping -c 1 -W 2 {shlex.quote(ip)} >/dev/null && echo up")
        if rc == SSH_FAILED:  # ssh's own failure, not ping's: say which
            return False, f"ssh to {via}: {out.strip()[-200:]}"
        return rc == 0 and "up" in out, f"{ip} does not answer from {via}"

    def _longhorn(self) -> tuple[bool, str]:
        data, error = self.kubectl_json("-n", "longhorn-system", "get", "volumes.longhorn.io")
        if data is None:
            return False, error
        bad = longhorn_unhealthy(data)
        return not bad, "; ".join(bad)

    def _replicas_beside(self, node: str) -> tuple[bool, str]:
        data, error = self.kubectl_json("-n", "longhorn-system", "get", "replicas.longhorn.io")
        if data is None:
            return False, error
        alone = only_replicas_on(data, node, set(self.rows))
        return not alone, f"only {node} holds a usable replica of {', '.join(alone)}"

    def _dns(self) -> tuple[bool, str]:
        assert self.target.record is not None and self._token is not None
        zone, name = self.target.record
        url = f"{CLOUDFLARE_API}/zones/{zone}/dns_records?" + urllib.parse.urlencode({"name": name})
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self._token}"})
        try:
            with urllib.request.urlopen(request, timeout=COMMAND_TIMEOUT) as response:
                contents = record_contents(json.load(response))
        except (OSError, ValueError) as error:
            return False, f"Cloudflare API: {error}"
        data, err = self.kubectl_json("get", "nodes")
        if data is None:
            return False, err
        ready = node_ready(data)
        live = set().union(
            *(a for n, a in node_addresses(data).items() if ready.get(n)),
            {str(r.get("sshAddress")) for n, r in self.rows.items() if ready.get(n)},
        )
        ok = bool(contents) and all(c in live for c in contents)
        return ok, f"{name} -> {', '.join(contents) or 'nothing'}"

    def _wait_etcd(self, step: Step) -> None:
        via = self.staying_master(step)
        if step.is_master and via is not None:
            wait(
                f"etcd healthy with {step.members_after} members (asked on {via})",
                lambda: self._etcd(via, step.members_after),
                self.timeouts.etcd, self.timeouts.poll, self.say,
            )  # fmt: skip

    # The interface.

    def before(self, step: Step, outputs: Mapping[str, Any]) -> None:
        """The whole gate, before every step: a roll resumed after a failed or interrupted
        wait finds no drift on the node it replaced, so only this re-waits for it."""
        self._use(outputs)
        if step.kind == "finish":
            # An interrupted replacement already took the node's VM away: finishing it is
            # what restores the cluster, and the outputs (addresses, the kubeconfig's
            # server) may still name the VM that is gone. after() runs the whole gate.
            self.say(f"{step.node} lost its VM in an interrupted update: finishing it first")
            return
        t = self.timeouts
        names = list(self.rows)
        if step.kind == "add-master":
            names = [n for n in names if n != step.node]  # not there yet
        wait("every node Ready", lambda: self._nodes_ready(names), t.node_ready, t.poll, self.say)
        via = self.staying_master(step)
        if via is not None:  # worker steps too: members_before is every current master
            wait(
                f"etcd healthy with all {step.members_before} members (asked on {via})",
                lambda: self._etcd(via, step.members_before),
                t.etcd, t.poll, self.say,
            )  # fmt: skip
        self._wait_longhorn_and_dns()
        if self.target.longhorn and step.kind in ("replace", "remove-master"):
            wait(f"a volume replica beside {step.node}'s", lambda: self._replicas_beside(
                step.node), t.longhorn, t.poll, self.say)  # fmt: skip

    def after(self, step: Step, outputs: Mapping[str, Any]) -> None:
        self._use(outputs)
        t = self.timeouts
        via = self.staying_master(step)
        if step.kind != "remove-master":
            wait(f"{step.node} Ready", lambda: self._nodes_ready([step.node]), t.node_ready,
                 t.poll, self.say)  # fmt: skip
            if via is not None and step.node in self.rows:
                wait(f"{step.node}'s overlay address answering", lambda: self._overlay(
                    via, step.node), t.overlay, t.poll, self.say)  # fmt: skip
        self._wait_etcd(step)
        self._wait_longhorn_and_dns()

    def _wait_longhorn_and_dns(self) -> None:
        t = self.timeouts
        if self.target.longhorn:
            wait("Longhorn volumes healthy", self._longhorn, t.longhorn, t.poll, self.say)
        if self.target.record is not None and self._token is not None:
            wait(f"DNS record {self.target.record[1]} on a live node", self._dns, t.dns,
                 t.poll, self.say)  # fmt: skip

"""The program behind the RKE ``pulumi_command.local.Command``: ``python -m rke.runner up|delete``.

Contract (standard input and environment in, one JSON object out):

- standard input          cluster.yml without secrets (``up``). Not an environment
                          variable: one of those holds at most 128 KiB on Linux, and a
                          large cluster's cluster.yml is bigger.
- ``RKE_STATE_KEY``       ``<project>/<stack>``: names this stack's private local state
                          copy (pulumi-command tells a command nothing about its stack)
- ``RKE_SSH_PRIVATE_KEY`` optional secret; written 0600 and used as ``ssh_key_path``
                          (otherwise RKE and ssh use the agent, ``SSH_AUTH_SOCK``)
- ``RKE_S3_ACCESS_KEY``, ``RKE_S3_SECRET_KEY``  optional secrets for the
                          ``s3backupconfig`` of the cluster.yml written to disk
- ``RKE_NODE_IDS``        optional JSON ``{node name: machine id}`` from the readiness gates
- ``RKE_HOST_KEYS``       optional JSON ``{address: "ssh-ed25519 ..."}``: the host keys the
                          readiness gates pinned; the runner's own ``ssh`` checks them
- ``RKE_RESTORE``         optional JSON ``{"snapshot": name, "s3": bool}``: run
                          ``rke etcd snapshot-restore`` once instead of ``rke up``
- ``RKE_SKIP_DRAIN=1``    escape hatch: remove workers without draining (dead nodes)
- ``RKE_ETCD_HEALTH_TIMEOUT``  seconds to wait for etcd to be healthy after an etcd
                          step (default 90, RKE's own ``isEtcdHealthy`` bound: 18 x 5 s)
- ``RKE_RUNNER_TMPDIR``   where private run directories go (default /dev/shm)
- ``RKE_INGRESS_TIMEOUT`` seconds to wait, after a successful ``rke up``, for the
                          ingress-nginx controller and its admission webhook (default
                          600; only when cluster.yml's ``ingress.provider`` is not
                          ``none``); ``RKE_INGRESS_POLL`` seconds between looks (default 5)
- ``PULUMI_COMMAND_STDOUT`` set by pulumi-command on update/delete: this runner's
                          previous stdout, i.e. the previous state

On success stdout carries exactly one JSON object (``rke.state.encode_result``) and
the local copy of the state is removed. On failure stdout stays empty, the exit code
is non-zero, and the newest state RKE wrote stays in the local copy, which the next
run starts from. Progress goes to stderr (bounded, redacted; ``rke.tools.Console``).

Where the state comes from, in order: the previous stdout and the local copy (the newer
of the two); with no local copy (a new machine, e.g. a fresh CI runner) the previous
stdout is compared with the cluster's ``kube-system/full-cluster-state`` Secret; a Secret
that differs wins only with evidence that it is newer (a later certificate, or a re-apply
of this run's nodes), and is refused when older or ambiguous (``Run.newer_in_cluster``);
an unreadable Secret leaves Pulumi's state, with a log line. When neither the stdout nor
a local copy exists the runner checks over SSH whether
any node already carries RKE certificates, and if so recovers the state
(``rke util get-state-file``, else the ``kube-system/full-cluster-state`` Secret read
on a control-plane node) or refuses. ``rke up`` never runs without a state on nodes
that have one.

Modes: ``delete`` never removes the cluster; ``extract DIR`` turns a saved stdout
(stdin) back into cluster.yml / cluster.rkestate / kube_config_cluster.yml for manual
``rke``; ``import-state KEY FILE`` puts a recovered ``cluster.rkestate`` into the
local copy of stack ``KEY`` for the next ``pulumi up`` (docs/recovery.md).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from rke import ingress as ingress_wait
from rke import plan as planning
from rke.plan import Host, PlanError, Step
from rke.redact import Redactor
from rke.releases import check_release
from rke.state import (
    STDOUT_LIMIT,
    LocalCopy,
    Result,
    StateError,
    StateStore,
    admin_kubeconfig,
    applied_nodes,
    ca_fingerprint,
    certificate_pems,
    check_rkestate,
    digest,
    encode_result,
    newest_certificate,
    now,
    parse_previous,
    pem_fingerprint,
    same_state,
)
from rke.tools import (
    Console,
    Interrupted,
    Supervisor,
    child_env,
    run_quick,
    run_split,
    ssh_argv,
)
from rke.workdir import (
    KUBECONFIG_FILE,
    STATE_FILE,
    RunDir,
    find_leftovers,
    private_base,
    replace_secret,
    write_secret,
)

TAIL_LINES = 40
DEFAULT_DRAIN_TIMEOUT = 300
DEFAULT_ETCD_HEALTH_TIMEOUT = 90.0
DEFAULT_INGRESS_TIMEOUT = 600.0
DEFAULT_INGRESS_POLL = 5.0
KUBECTL_TIMEOUT = 30.0
LEFTOVER_WAIT_SECONDS = 30.0
SSH_PROBE_TIMEOUT = 60.0
SECRET_ENV = ("RKE_SSH_PRIVATE_KEY", "RKE_S3_ACCESS_KEY", "RKE_S3_SECRET_KEY")
# RKE's paths on a node (pki/constants.go CertPathPrefix, pki/util.go GetCertPath).
NODE_CA_PATH = "/etc/kubernetes/ssl/kube-ca.pem"
NODE_KUBECONFIG = "/etc/kubernetes/ssl/kubecfg-kube-node.yaml"
STATE_WRITTEN = "Successfully Deployed state file"  # cluster/state.go WriteStateFile

INSTALL_HINT = (
    "Install RKE v1.8.14 (the last RKE v1 release): download `rke_linux-amd64` (or the "
    "darwin/arm64 build) from https://github.com/rancher-archives/rke/releases/tag/v1.8.14, "
    "verify its sha256, `install -m 0755 rke_linux-amd64 ~/.local/bin/rke`, and make sure "
    "it is on PATH for `pulumi up`."
)
NO_STATE = (
    "Nodes of this cluster already carry RKE certificates ({nodes}), but no RKE state is "
    "known: not in Pulumi (the RKE command's previous stdout is empty: a first run that "
    "failed, a replaced or renamed command), not in this machine's local copy ({copy}), "
    "and it could not be read back from the cluster ({why}).\n"
    "Refusing to run `rke up`: without the state RKE mints a new cluster CA and every node "
    "stops trusting the others.\n"
    "Recover the state (docs/recovery.md, 'The RKE state is lost'): copy the local copy "
    "from the machine that ran the last `pulumi up`, or read "
    "kube-system/full-cluster-state on a control-plane node, then `python -m rke.runner "
    "import-state {key} cluster.rkestate` and run `pulumi up` again."
)
DELETE_NOTICE = (
    "rke.runner delete: the Kubernetes cluster is NOT removed. Deleting this Pulumi resource "
    "only forgets it.\nTo tear the cluster down deliberately:\n"
    "  pulumi stack export --show-secrets > stack.json  # the RKE command's stdout is the state\n"
    '  jq -r \'.deployment.resources[] | select(.type=="command:local:Command" and '
    '(.urn|endswith("rke-up"))) | .outputs.stdout | '
    'if type=="object" then (.plaintext|fromjson) else . end\' stack.json \\\n'
    "     | python -m rke.runner extract ./rke-teardown\n"
    "  cd rke-teardown && rke remove --config cluster.yml   # destroys etcd data on every node\n"
    "Then delete the directory: it holds the cluster CA keys. See docs/recovery.md."
)


class RunnerError(Exception):
    """A refusal or failure with an explanation for the person running ``pulumi up``."""


_console: Console | None = None


def log(message: str) -> None:
    line = f"[rke-runner] {message}"
    if _console is not None:
        for part in line.splitlines() or [""]:
            _console.line(part)
    else:
        print(line, file=sys.stderr, flush=True)


# -- secrets ---------------------------------------------------------------------------------
# rke.redact.Redactor: every known secret in its common encodings, and the keys of every
# kubeconfig and RKE state the run reads or RKE writes (``Run.learn``).


def check_network_plugin(state: Mapping[str, Any], doc: Mapping[str, Any]) -> None:
    """Refuse a cluster.yml whose network plugin differs from the one the cluster runs.

    RKE would deploy the new plugin's addon next to the old one's (cluster/network.go
    ``deployNetworkPlugin`` has no migration) and pods would lose their network; RKE's
    documentation: "After you launch the cluster, you cannot change your network
    provider". The applied plugin is the state's ``currentState.rkeConfig.network.plugin``
    (RKE's default, canal, when unset; cluster/defaults.go ``DefaultNetworkPlugin``).
    """
    applied_config = (state.get("currentState") or {}).get("rkeConfig") or {}
    if not applied_config:
        return  # nothing applied yet
    applied = (applied_config.get("network") or {}).get("plugin") or "canal"
    wanted = (doc.get("network") or {}).get("plugin") or "canal"
    if applied != wanted:
        raise RunnerError(
            f"refusing `rke up`: the cluster runs the {applied} network plugin and cluster.yml "
            f"asks for {wanted}; RKE cannot change the plugin of a running cluster. Set "
            f"`pulumi config set --path rke.networkPlugin {applied}` (multicloud:rke."
            "networkPlugin). Nothing was changed."
        )


def ingress_enabled(doc: Mapping[str, Any]) -> bool:
    """Whether RKE deploys its ingress controller for this cluster.yml: any
    ``ingress.provider`` but ``none``; RKE's default when unset is nginx
    (``DefaultIngressController`` in cluster/defaults.go; ``deployIngress`` in
    cluster/addons.go skips, or removes, the controller only for ``none``)."""
    return str((doc.get("ingress") or {}).get("provider") or "nginx") != "none"


# -- cluster.yml on disk ---------------------------------------------------------------------


def disk_cluster_yml(
    doc: Mapping[str, Any],
    key_path: Path | None,
    s3_access: str | None,
    s3_secret: str | None,
    keep_s3: bool = True,
) -> str:
    """The cluster.yml rke reads: ``doc`` plus the SSH key path and the S3 keys.

    ``ignore_docker_version`` is dropped: ``rke up`` overwrites it with its
    ``--ignore-docker-version`` flag (``setOptionsFromCLI`` in ``cmd/common.go``), which
    this runner never passes, so RKE checks each node's Docker version (the pinned 26.1
    is in its list for Kubernetes 1.30: ``loadK8sVersionDockerInfo`` in
    kontainer-driver-metadata ``pkg/rke/k8s_docker_info.go``). ``keep_s3=False`` drops
    the S3 block (a restore from a snapshot on the nodes: with an S3 block RKE would try
    S3 first, ``PrepareBackup`` in ``cluster/etcd.go``).
    """
    disk = json.loads(json.dumps(doc))  # a deep copy of plain data
    disk.pop("ignore_docker_version", None)
    if key_path is not None:
        disk["ssh_agent_auth"] = False
        disk["ssh_key_path"] = str(key_path)
    backup = disk.get("services", {}).get("etcd", {}).get("backup_config", {})
    s3 = backup.get("s3backupconfig")
    if not keep_s3:
        backup.pop("s3backupconfig", None)
    elif s3_access or s3_secret:
        if s3 is None:
            log("warning: S3 keys given but cluster.yml has no s3backupconfig; keys ignored")
        else:
            if s3_access:
                s3["access_key"] = s3_access
            if s3_secret:
                s3["secret_key"] = s3_secret
    return render(disk)


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: 20x faster on 600 nodes
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a safe loader (C or Python)


def render(doc: Mapping[str, Any]) -> str:
    return yaml.dump(
        dict(doc), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000
    )


# -- one run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreRequest:
    """``rke.restore`` as the runner gets it (``RKE_RESTORE``)."""

    snapshot: str
    s3: bool

    def as_dict(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot, "s3": self.s3}


def parse_restore(value: str | None) -> RestoreRequest | None:
    if not value:
        return None
    try:
        data = json.loads(value)
        return RestoreRequest(str(data["snapshot"]), bool(data.get("s3", False)))
    except (ValueError, KeyError, TypeError):
        raise RunnerError(f"RKE_RESTORE is not {{'snapshot': ..., 's3': ...}}: {value!r}") from None


@dataclass(frozen=True)
class EtcdStatus:
    """``etcdctl member list`` and ``endpoint health --cluster`` as seen from one member."""

    members: dict[str, tuple[str, ...]]  # member name -> client URLs
    healthy: frozenset[str]  # member names whose endpoint answered healthy

    def quorum_after_removing(self, names: Iterable[str]) -> tuple[bool, str]:
        gone = set(names)
        remaining = [m for m in self.members if m not in gone]
        healthy = [m for m in remaining if m in self.healthy]
        need_now = len(self.members) // 2 + 1
        need_after = len(remaining) // 2 + 1
        ok = len(self.healthy) >= need_now and len(healthy) >= need_after
        return ok, (
            f"{len(self.healthy)} of {len(self.members)} members healthy now; after the "
            f"removal {len(healthy)} of {len(remaining)} (quorum {need_after})"
        )


class Run:
    """One ``up``: state discovery, plan, the ``rke`` runs, and the result."""

    def __init__(self, env: Mapping[str, str], cluster_yml: str, supervisor: Supervisor) -> None:
        self.env = env
        self.supervisor = supervisor
        self.cluster_yml = cluster_yml
        try:
            doc = load_yaml(cluster_yml)
        except yaml.YAMLError as err:
            raise RunnerError(f"cluster.yml on standard input is not YAML: {err}") from None
        if not isinstance(doc, dict) or not doc.get("nodes"):
            raise RunnerError("cluster.yml on standard input has no nodes: nothing to deploy")
        self.doc: dict[str, Any] = doc
        self.key = env.get("RKE_STATE_KEY") or ""
        if not re.fullmatch(r"[^/\s]+/[^/\s]+", self.key):
            raise RunnerError(
                "RKE_STATE_KEY must be <project>/<stack> (the RKE command sets it); "
                f"got {self.key!r}"
            )
        self.store = StateStore(self.key, env)
        self.redact = Redactor.from_values(env.get(k) for k in SECRET_ENV)
        self.agent = not env.get("RKE_SSH_PRIVATE_KEY")
        self.child_env = child_env(env, agent=self.agent)
        try:
            self.new_ids: dict[str, str] = dict(json.loads(env.get("RKE_NODE_IDS") or "{}"))
        except (ValueError, TypeError):
            raise RunnerError("RKE_NODE_IDS is not a JSON object of node name -> id") from None
        self.restore = parse_restore(env.get("RKE_RESTORE"))
        try:
            self.host_keys: dict[str, str] = {
                str(k): str(v).strip()
                for k, v in json.loads(env.get("RKE_HOST_KEYS") or "{}").items()
                if v
            }
        except (ValueError, TypeError, AttributeError):
            raise RunnerError("RKE_HOST_KEYS is not a JSON object of address -> key") from None
        self._known_hosts_lock = threading.Lock()
        self.default_user = "root"  # RKE's default when a node has no `user`
        self.run_dir: RunDir | None = None
        self.key_path: Path | None = None
        self.base_hash: str | None = None
        self.saved_digest: str | None = None
        self.ids: dict[str, str] = {}
        self.restored: Mapping[str, Any] | None = None
        self.step_yml = cluster_yml
        self._seen: tuple[int, int] | None = None
        self.ask_cluster = False  # set by starting_state: Pulumi's state, no local copy

    def learn(self, rkestate: str | None, kubeconfig: str | None) -> None:
        """Add a state's and a kubeconfig's keys to what the output is redacted of: the
        runner is told only the SSH and S3 keys, but RKE's output can carry the others."""
        self.redact.learn_rkestate(rkestate)
        self.redact.learn_kubeconfig(kubeconfig)

    # -- paths and tools

    @property
    def workdir(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir.path

    def known_hosts(self, entry: Mapping[str, Any]) -> Path | None:
        """A known_hosts file pinning this node's host key, or None when it has no pin (a
        node created before the program generated host keys). Written once per run."""
        address = str(entry.get("address"))
        if address not in self.host_keys:
            return None
        path = self.workdir / "known_hosts"
        with self._known_hosts_lock:  # the probes ask nodes from several threads
            if path.exists():
                return path
            lines = []
            for node in self.doc.get("nodes") or []:
                key = self.host_keys.get(str(node.get("address")))
                if key:
                    port = int(node.get("port") or 22)
                    name = node["address"] if port == 22 else f"[{node['address']}]:{port}"
                    lines.append(f"{name} {key}\n")
            write_secret(path, "".join(lines))
        return path

    def _tool(self, name: str, why: str) -> str:
        path = shutil.which(name, path=self.child_env.get("PATH"))
        if path is None:
            hint = INSTALL_HINT if name == "rke" else f"Install `{name}` and put it on PATH."
            raise RunnerError(f"`{name}` is not on PATH ({why}). {hint}")
        return path

    # -- state capture

    def capture(self, origin: str) -> None:
        """Keep the state RKE has written in the workdir, if it is new and complete."""
        path = self.workdir / STATE_FILE
        try:
            st = path.stat()
        except FileNotFoundError:
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._seen:
            return
        self._seen = stamp
        try:
            text = path.read_text()
            check_rkestate(text)
        except (OSError, StateError, UnicodeDecodeError):
            return  # RKE is mid-write; the next look (or the last one) gets it
        if digest(text) == self.saved_digest:
            return
        kubeconfig = None
        with contextlib.suppress(OSError):
            kubeconfig = (self.workdir / KUBECONFIG_FILE).read_text() or None
        self.learn(text, kubeconfig)  # keys RKE just made (a new node's, a new CA's)
        self.saved_digest = digest(text)
        self.store.save(
            LocalCopy(
                key=self.key,
                rkestate=text,
                kubeconfig=kubeconfig,
                cluster_yml=self.step_yml,
                node_ids=dict(self.ids),
                base_hash=self.base_hash,
                state_time=now(),
                origin=f"{origin} (runner pid {os.getpid()})",
                restored=self.restored,
            )
        )

    def harvest(self, base: Path) -> None:
        """Keep the state dead runs of this stack left in their run dirs, then remove them."""
        wait = float(self.env.get("RKE_LEFTOVER_WAIT") or LEFTOVER_WAIT_SECONDS)
        dead, busy = find_leftovers(base, self.key, wait)
        if busy:
            raise RunnerError(
                f"a previous rke for {self.key} is still running in {', '.join(map(str, busy))} "
                f"(waited {wait:.0f}s). Wait for it to end (`ps -ef | grep rke`), or stop it "
                "and run `pulumi up` again: its state is kept then."
            )
        for left in dead:
            kept = "nothing to keep"
            if left.rkestate:
                try:
                    check_rkestate(left.rkestate)
                    kept = self._keep_leftover(left.rkestate, left.kubeconfig, left.path)
                except StateError as err:
                    kept = f"its cluster.rkestate is incomplete ({err}); not kept"
            shutil.rmtree(left.path, ignore_errors=True)
            log(f"removed the directory of a killed run (pid {left.owner_pid}): {kept}")

    def _keep_leftover(self, text: str, kubeconfig: str | None, path: Path) -> str:
        copy = self.store.load()
        if copy is not None and digest(copy.rkestate) == digest(text):
            return "its state is the local copy already"
        # The dead run saved the local copy whenever RKE wrote the file; a different file
        # there is a write it did not see (RKE wrote it as the runner was killed).
        self.store.save(
            LocalCopy(
                key=self.key,
                rkestate=text,
                kubeconfig=kubeconfig or (copy.kubeconfig if copy else None),
                cluster_yml=copy.cluster_yml if copy else None,
                node_ids=dict(copy.node_ids) if copy else {},
                base_hash=copy.base_hash if copy else None,
                state_time=now(),
                origin=f"left in {path.name} by a killed run",
                restored=copy.restored if copy else None,
            )
        )
        return f"its state is now the local copy {self.store.root}"

    # -- where the state comes from

    def starting_state(self) -> tuple[Result | None, str]:
        try:
            previous = parse_previous(self.env.get("PULUMI_COMMAND_STDOUT"))
        except StateError as err:
            raise RunnerError(
                f"PULUMI_COMMAND_STDOUT (the previous run's output) is set but holds no RKE "
                f"state ({err}). Refusing to run `rke up` without it: a missing state makes "
                "RKE mint a new CA and breaks the cluster."
            ) from None
        try:
            local = self.store.load()
        except StateError as err:
            raise RunnerError(
                f"{err}. Move it aside after checking it (docs/recovery.md)."
            ) from None
        if local is None:
            # No local copy: a new machine (a throw-away CI runner) or a clean finish. A
            # failed run elsewhere may have left a newer state in the cluster; execute()
            # asks it (newer_in_cluster) before starting from Pulumi's.
            self.ask_cluster = previous is not None
            return previous, "the RKE command's previous output in Pulumi" if previous else ""
        where = f"the local copy {self.store.root} ({local.origin}, {local.state_time})"
        if previous is None:
            return local.as_result(), where
        if digest(previous.rkestate) == digest(local.rkestate):
            return previous, "the RKE command's previous output in Pulumi (= the local copy)"
        if local.base_hash == digest(previous.rkestate):
            return local.as_result(), where + ", newer than Pulumi's: a run after it failed"
        ca_pulumi = ca_fingerprint(check_rkestate(previous.rkestate))
        ca_local = ca_fingerprint(check_rkestate(local.rkestate))
        if ca_pulumi != ca_local:
            raise RunnerError(
                f"Pulumi's RKE state and {where} hold two different cluster CAs. Refusing "
                "to guess: find out which one the nodes trust (`openssl x509 -in "
                f"{NODE_CA_PATH} -noout -fingerprint` on a node), remove the other "
                "(docs/recovery.md), and run `pulumi up` again."
            )
        if (previous.state_time or "") >= local.state_time:
            return (
                previous,
                "the RKE command's previous output in Pulumi (newer than the local copy)",
            )
        return local.as_result(), where + ", newer than Pulumi's"

    def newer_in_cluster(
        self, previous: Result, source: str, hosts: Sequence[Host]
    ) -> tuple[Result, str]:
        """Pulumi's state, or the cluster's ``full-cluster-state`` Secret when that is newer.

        Called when no local copy exists (a new machine: a fresh CI runner keeps nothing
        from the job before). Every ``rke up`` that gets past the control plane writes the
        Secret from the ``FullState`` it has just written to the state file and writes no
        state after it (``ClusterUp`` in ``cmd/up.go``: ``UpdateClusterCurrentState``,
        then ``SaveFullStateToK8s``; ``cluster/state.go``), so after the successful run
        that printed Pulumi's state the Secret equals it. A Secret that differs was
        usually written by a later ``rke up`` whose result never reached Pulumi (e.g.
        ``rke up`` succeeded and the ingress wait timed out), but it can be older (a
        snapshot restore that failed after etcd was restored, a stale control plane), so
        it is taken only with evidence (``_secret_is_newer``) and refused otherwise. A
        Secret with another cluster CA is refused, as between Pulumi's state and a local
        copy. When the Secret cannot be read (a first create that never
        reached the control plane, an API server or nodes that are down) the run starts
        from Pulumi's state as before and says so.

        The Secret is read on the control-plane nodes of Pulumi's applied state with the
        node's own credentials (``_state_from_secret``). Machine ids are not in RKE's
        state: a state taken from the cluster carries none (as ``recover`` does), so a
        machine replaced in place is told by its name and internal address only.
        Returns (the state to start from, where it came from).
        """
        applied = {h.address for h in self.before_hosts(previous)}
        masters = [h for h in hosts if h.has("controlplane")]
        ordered = [h for h in masters if h.address in applied] + [
            h for h in masters if h.address not in applied
        ]
        text, why = self._state_from_secret(ordered)
        if text is None:
            log(f"could not read kube-system/full-cluster-state from the cluster ({why}); "
                "starting from Pulumi's state without comparing it with the cluster's "
                "(a first create, or the API server or nodes are down)")  # fmt: skip
            return previous, source
        cluster = check_rkestate(text)
        pulumi = check_rkestate(previous.rkestate)
        if same_state(cluster, pulumi):
            log("the cluster's full-cluster-state Secret equals Pulumi's state")
            return previous, source
        if ca_fingerprint(cluster) != ca_fingerprint(pulumi):
            raise RunnerError(
                "Pulumi's RKE state and the cluster's kube-system/full-cluster-state Secret "
                "hold two different cluster CAs. Refusing to guess: find out which one the "
                f"nodes trust (`openssl x509 -in {NODE_CA_PATH} -noout -fingerprint` on a "
                "node), put that state in place (docs/recovery.md, 'The RKE state is "
                "lost'), and run `pulumi up` again."
            )
        why_newer = self._secret_is_newer(cluster, pulumi, hosts)
        self.learn(text, admin_kubeconfig(cluster))
        copy = LocalCopy(
            key=self.key,
            rkestate=text,
            kubeconfig=admin_kubeconfig(cluster) or previous.kubeconfig or None,
            cluster_yml=None,
            node_ids={},
            base_hash=digest(previous.rkestate),
            state_time=now(),
            origin="the cluster's full-cluster-state Secret (newer than Pulumi's)",
        )
        self.store.save(copy)  # a run that fails before RKE writes still has it next time
        log(
            "the cluster's full-cluster-state Secret differs from Pulumi's state: a later "
            "`rke up` wrote it and its result never reached Pulumi (a failed run on "
            f"another machine; {why_newer}); starting from the cluster's, kept in "
            f"{self.store.root}"
        )
        return copy.as_result(), "the cluster's full-cluster-state Secret (newer than Pulumi's)"

    def _secret_is_newer(
        self, cluster: Mapping[str, Any], pulumi: Mapping[str, Any], hosts: Sequence[Host]
    ) -> str:
        """Why a same-CA Secret that differs from Pulumi's state may be started from; raises
        ``RunnerError`` when it is older or when nothing tells which is newer.

        A differing Secret is not always newer: a snapshot restore that failed after etcd
        was restored and before ``SaveFullStateToK8s`` leaves the Secret as it was at
        snapshot time, and a stale control plane can serve an old one. Evidence, in order:

        1. the newest certificate (``rke.state.newest_certificate``, the latest signing
           time): later in the Secret -> newer; earlier -> older, refused;
        2. equal (an ``rke up`` that issued no certificate, e.g. a worker added or
           removed): the Secret is taken only when starting from it cannot push anything
           older than this run asks for -- the same certificates and encryption
           configuration as Pulumi's, and applied nodes (``currentState``) equal to this
           run's cluster.yml nodes, i.e. a previous run already applied this very node
           change (the ``rke up`` succeeded, a later step such as the ingress wait
           failed). The desired ``rkeConfig`` comes from this run's cluster.yml either way.
           Anything else is refused as ambiguous.
        """
        secret_at, pulumi_at = newest_certificate(cluster), newest_certificate(pulumi)
        guidance = (
            "Refusing to guess which state the cluster should continue from: starting from "
            "an older state would push its older certificates and node set. Likely causes: "
            "an etcd snapshot restore that failed after etcd was restored (etcd, and the "
            "Secret in it, went back to snapshot time), or a control-plane node serving "
            "stale data. Check which state is right (docs/recovery.md, 'Where the RKE state "
            "lives'), then either put it in place with `python -m rke.runner import-state` "
            "(docs/recovery.md, 'The RKE state is lost') and run `pulumi up` again, or, "
            "after a failed restore, run the restore again with `rke.restore` "
            "(docs/recovery.md, 'Restore etcd from a snapshot')."
        )
        if secret_at is not None and pulumi_at is not None and secret_at != pulumi_at:
            if secret_at > pulumi_at:
                return (
                    f"its newest certificate was issued at {secret_at.isoformat()}, "
                    f"Pulumi's at {pulumi_at.isoformat()}"
                )
            raise RunnerError(
                "the cluster's kube-system/full-cluster-state Secret differs from Pulumi's "
                "RKE state (same cluster CA) and is OLDER: its newest certificate was issued "
                f"at {secret_at.isoformat()}, Pulumi's at {pulumi_at.isoformat()} "
                "(certificate notAfter less RKE's ten years). " + guidance
            )

        def nodes(found: Iterable[Host]) -> set[tuple[str, str, str, tuple[str, ...]]]:
            return {(h.address, h.name, h.internal_address, tuple(sorted(h.roles))) for h in found}

        applied = applied_nodes(cluster)
        reapplied = (
            certificate_pems(cluster) == certificate_pems(pulumi)
            and (cluster.get("desiredState") or {}).get("encryptionConfig")
            == (pulumi.get("desiredState") or {}).get("encryptionConfig")
            and applied is not None
            and nodes(planning.hosts_from_state(applied)) == nodes(hosts)
        )
        if reapplied:
            return (
                "no newer certificate, but the same certificates as Pulumi's and its applied "
                "nodes are this run's: a previous run applied this change"
            )
        when = secret_at.isoformat() if secret_at else "unknown"
        raise RunnerError(
            "the cluster's kube-system/full-cluster-state Secret differs from Pulumi's RKE "
            "state (same cluster CA) and nothing tells which is newer: both newest "
            f"certificates were issued at {when}, and the Secret's applied nodes or "
            "certificates are not what this run applies. " + guidance
        )

    def probe_certificates(self, hosts: Sequence[Host]) -> dict[str, str | None]:
        """address -> node's kube-ca fingerprint ("" when present but unreadable), or
        None when the node has no RKE CA. Raises when a node cannot be asked."""
        ssh = self._tool("ssh", "checking whether the nodes already carry RKE certificates")
        command = (
            f"f={NODE_CA_PATH}; if sudo -n test -e $f 2>/dev/null || test -e $f; then "
            "echo RKE-CA-PRESENT; sudo -n cat $f 2>/dev/null || cat $f 2>/dev/null || true; "
            "else echo RKE-CA-ABSENT; fi"
        )

        def ask(host: Host) -> tuple[str, int, str]:
            argv = ssh_argv(
                ssh, host.entry, self.default_user, self.key_path, command,
                known_hosts=self.known_hosts(host.entry),
            )  # fmt: skip
            rc, out = run_quick(argv, self.child_env, SSH_PROBE_TIMEOUT)
            return host.address, rc, out

        # control-plane and etcd nodes first: once one carries certificates the answer
        # is known; workers are asked only when none does
        inner = [h for h in hosts if h.has("controlplane") or h.has("etcd")]
        outer = [h for h in hosts if h not in inner]
        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(ask, inner))
            if all(rc == 0 and "RKE-CA-ABSENT" in out for _, rc, out in answers):
                answers += list(pool.map(ask, outer))
        found: dict[str, str | None] = {}
        failed = []
        for address, rc, out in answers:
            if rc == 0 and "RKE-CA-ABSENT" in out:
                found[address] = None
            elif rc == 0 and "RKE-CA-PRESENT" in out:
                pem = out.split("RKE-CA-PRESENT", 1)[1]
                found[address] = pem_fingerprint(pem) if "BEGIN CERTIFICATE" in pem else ""
            else:
                failed.append(f"{address}: {self.redact(out.strip())[-200:]}")
        if failed:
            raise RunnerError(
                "no RKE state is known, and these nodes could not be asked whether they "
                "already carry RKE certificates, so running `rke up` could mint a second "
                "CA:\n  " + "\n  ".join(failed)
            )
        return found

    def recover(self, hosts: Sequence[Host]) -> Result | None:
        """No state known: a first run when no node has RKE certificates; otherwise the
        state read back from the cluster, or a refusal."""
        found = self.probe_certificates(hosts)
        carrying = [a for a, fp in found.items() if fp is not None]
        if not carrying:
            log("no RKE state known and no node carries RKE certificates: a first `rke up`")
            return None
        log(f"no RKE state known, but {len(carrying)} node(s) carry RKE certificates; "
            "reading the state back from the cluster")  # fmt: skip
        text, why = self._state_from_rke()
        if text is None:
            text, why2 = self._state_from_secret([h for h in hosts if h.address in carrying])
            why = f"{why}; {why2}"
        if text is None:
            raise RunnerError(
                NO_STATE.format(
                    nodes=", ".join(carrying), copy=self.store.root, why=why, key=self.key
                )
            )
        doc = check_rkestate(text)
        fingerprints = {fp for fp in found.values() if fp}
        if fingerprints and fingerprints != {ca_fingerprint(doc)}:
            raise RunnerError(
                "the state read back from the cluster has another CA than the nodes' "
                f"{NODE_CA_PATH}; refusing it (docs/recovery.md)"
            )
        kubeconfig = None
        with contextlib.suppress(OSError):
            kubeconfig = (self.workdir / KUBECONFIG_FILE).read_text() or None
        copy = LocalCopy(
            self.key, text, kubeconfig, None, {}, None, now(), "recovered from the cluster"
        )
        self.store.save(copy)
        log(f"recovered the RKE state from the cluster; kept it in {self.store.root}")
        return copy.as_result()

    def _state_from_rke(self) -> tuple[str | None, str]:
        """``rke util get-state-file`` (``cmd/util.go`` getStateFile): reads the
        ``full-cluster-state`` Secret with kube_config_cluster.yml when it works,
        otherwise (over SSH) a ConfigMap that RKE stopped writing in v1.5.10/v1.6.3
        (rancher-archives/rke#3760), so it mostly needs a kubeconfig."""
        rke = self._tool("rke", "reading the state back")
        self.write_cluster_yml(self.doc)
        # not kept as it comes: it is checked against the nodes' CA first
        rc, tail = self.stream(
            [rke, "util", "get-state-file", "--config", "cluster.yml"], keep_state=False
        )
        path = self.workdir / STATE_FILE
        if rc == 0 and path.exists():
            text = path.read_text()
            try:
                check_rkestate(text)
                return text, ""
            except StateError as err:
                return None, f"`rke util get-state-file` wrote no usable state ({err})"
        return None, f"`rke util get-state-file` failed (exit {rc}: {(tail or [''])[-1]})"

    def _state_from_secret(self, hosts: Sequence[Host]) -> tuple[str | None, str]:
        """Read the Secret on a control-plane node with the node's own credentials, as
        RKE's broken fallback would (``RunGetStateFileFromConfigMap`` in
        ``services/controlplane.go``, for the Secret): RKE binds the ``system:node``
        ClusterRole to the nodes' group (``templates/authz.go``), and that role may get,
        list and watch secrets (Kubernetes' ``NodeRules`` in
        ``plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go``)."""
        ssh = self._tool("ssh", "reading the state back")
        command = (
            "img=$(docker inspect kubelet --format '{{.Config.Image}}') && docker run --rm "
            '--net=host -v /etc/kubernetes:/etc/kubernetes:ro --entrypoint kubectl "$img" '
            f"--kubeconfig {NODE_KUBECONFIG} --request-timeout=20s -n kube-system get "
            "secret full-cluster-state "
            "-o 'jsonpath={.data.full-cluster-state}'"
        )
        reasons = []
        for host in [h for h in hosts if h.has("controlplane")]:
            argv = ssh_argv(
                ssh, host.entry, self.default_user, self.key_path, command,
                known_hosts=self.known_hosts(host.entry),
            )  # fmt: skip
            rc, out = run_quick(argv, self.child_env, SSH_PROBE_TIMEOUT)
            if rc == 0:
                try:
                    text = base64.b64decode(out.strip(), validate=True).decode()
                    check_rkestate(text)
                    return text, ""
                except (binascii.Error, UnicodeDecodeError, StateError) as err:
                    reasons.append(f"{host.address}: {type(err).__name__}")
            else:
                reasons.append(f"{host.address}: exit {rc}")
        return None, "the full-cluster-state Secret could not be read (" + (
            ", ".join(reasons) or "no control-plane node carries certificates"
        ) + ")"

    # -- tools

    def stream(
        self, argv: Sequence[str], origin: str = "rke", keep_state: bool = True
    ) -> tuple[int, list[str]]:
        """Run a tool in the workdir, its output redacted to the console; keep each state
        it writes (``keep_state``) in the local copy. Returns (exit code, last lines)."""
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        keep = self.capture if keep_state else (lambda _origin: None)

        def on_line(raw: str) -> None:
            if not raw:
                return
            line = self.redact(raw)
            tail.append(line)
            assert _console is not None
            _console.line(line)
            if STATE_WRITTEN in raw:
                keep(origin)

        assert self.run_dir is not None
        rc = self.supervisor.run(
            argv,
            self.workdir,
            self.child_env,
            on_line,
            on_tick=lambda: keep(origin),
            pass_fds=(self.run_dir.lock_fd,),
        )
        return rc, list(tail)

    def check_rke(self, rke: str) -> str:
        """``rke --version`` must be a release that ships the cluster's Kubernetes version."""
        rc, out = run_quick([rke, "--version"], self.child_env, 60)
        match = re.search(r"\bv\d+\.\d+\.\d+\S*", out)
        if rc != 0 or match is None:
            raise RunnerError(
                f"`{rke} --version` gave no version ({out.strip()[:200]}). " + INSTALL_HINT
            )
        version = match.group(0)
        wanted = str(self.doc.get("kubernetes_version") or "")
        problem = check_release(version, wanted)
        if problem is not None:
            raise RunnerError(f"{rke}: {problem}. Nothing was changed. " + INSTALL_HINT)
        return version

    def write_cluster_yml(self, doc: Mapping[str, Any], keep_s3: bool = True) -> None:
        replace_secret(
            self.workdir / "cluster.yml",
            disk_cluster_yml(
                doc,
                self.key_path,
                self.env.get("RKE_S3_ACCESS_KEY"),
                self.env.get("RKE_S3_SECRET_KEY"),
                keep_s3,
            ),
        )

    def drain(self, hosts: Sequence[Host]) -> None:
        kubectl = self._tool("kubectl", "draining workers before RKE removes them")
        timeout = int(
            ((self.doc.get("upgrade_strategy") or {}).get("node_drain_input") or {}).get(
                "timeout", DEFAULT_DRAIN_TIMEOUT
            )
        )
        for host in hosts:
            log(f"draining worker {host.label()} before RKE removes it")
            rc, tail = self.stream(
                [
                    kubectl, "--kubeconfig", str(self.workdir / KUBECONFIG_FILE), "drain",
                    host.name, "--ignore-daemonsets", "--delete-emptydir-data",
                    f"--timeout={timeout}s",
                ],
                keep_state=False,
            )  # fmt: skip
            if rc != 0 and any("NotFound" in ln or "not found" in ln for ln in tail):
                log(f"node {host.name} is not in the cluster any more; nothing to drain")
            elif rc != 0:
                raise RunnerError(
                    f"`kubectl drain {host.name}` failed (exit {rc}).\n"
                    + "\n".join(tail)
                    + "\nIf the node is dead and cannot be drained, run this `pulumi up` with "
                    "RKE_SKIP_DRAIN=1 (docs/recovery.md)."
                )

    # -- etcd health

    def etcd_status(self, hosts: Sequence[Host]) -> EtcdStatus | None:
        """The members and their health, asked on the first etcd host that answers
        (``docker exec etcd etcdctl``: RKE sets ETCDCTL_* in the etcd container,
        ``BuildEtcdProcess`` in ``cluster/plan.go``). Health is each member's
        ``/health``, as RKE's own ``isEtcdHealthy`` (``services/etcd_util.go``) asks."""
        ssh = self._tool("ssh", "checking etcd health between steps")
        command = (
            "docker exec etcd etcdctl member list -w json; echo; echo ==multicloud==; "
            "docker exec etcd etcdctl endpoint health --cluster -w json"
        )
        for host in hosts:
            argv = ssh_argv(
                ssh, host.entry, self.default_user, self.key_path, command,
                known_hosts=self.known_hosts(host.entry),
            )  # fmt: skip
            _, out = run_quick(argv, self.child_env, SSH_PROBE_TIMEOUT)
            if "==multicloud==" not in out:
                continue
            members_text, health_text = out.split("==multicloud==", 1)
            try:
                members = {
                    str(m.get("name") or ""): tuple(m.get("clientURLs") or ())
                    for m in json.loads(members_text).get("members", [])
                }
                health = json.loads(health_text.strip() or "[]")
            except (ValueError, AttributeError):
                continue
            good = {str(e.get("endpoint")) for e in health if e.get("health") is True}
            healthy = frozenset(n for n, urls in members.items() if n and set(urls) & good)
            return EtcdStatus(members, healthy)
        return None

    def check_removal(self, step: Step, current: Sequence[Host]) -> None:
        """Before a step that removes an etcd member: the others keep quorum without it."""
        leaving = {h.address for h in step.change.etcd_removed}
        askable = [h for h in current if h.has("etcd") and h.address not in leaving]
        status = self.etcd_status(askable)
        if status is None:
            raise RunnerError(
                "before removing "
                + ", ".join(h.member for h in step.change.etcd_removed)
                + ": no remaining etcd member answered `etcdctl member list` over SSH; "
                "refusing to change the members of an etcd cluster whose health is unknown"
            )
        ok, detail = status.quorum_after_removing(h.member for h in step.change.etcd_removed)
        if not ok:
            unhealthy = sorted(set(status.members) - status.healthy)
            raise RunnerError(
                "removing "
                + ", ".join(h.member for h in step.change.etcd_removed)
                + f" now would lose etcd quorum ({detail}; unhealthy: "
                + (", ".join(unhealthy) or "none")
                + "). Bring the unhealthy members back "
                "first; nothing was changed in this step."
            )

    def wait_healthy(self, step: Step) -> None:
        """After an etcd step: the members are exactly the step's etcd hosts, all healthy."""
        bound = float(self.env.get("RKE_ETCD_HEALTH_TIMEOUT") or DEFAULT_ETCD_HEALTH_TIMEOUT)
        expected = {h.member for h in step.hosts if h.has("etcd")}
        etcd_hosts = [h for h in step.hosts if h.has("etcd")]
        deadline = time.monotonic() + bound
        while True:
            status = self.etcd_status(etcd_hosts)
            if (
                status is not None
                and set(status.members) == expected
                and status.healthy == expected
            ):
                log(f"etcd healthy: {len(expected)} members ({', '.join(sorted(expected))})")
                return
            if time.monotonic() >= deadline:
                seen = (
                    "no member answered"
                    if status is None
                    else f"members {sorted(status.members)}, healthy {sorted(status.healthy)}"
                )
                raise RunnerError(
                    f"etcd did not become healthy within {bound:.0f}s after the step "
                    f"(expected {sorted(expected)}; {seen}). Stopped here; the state of the "
                    "completed steps is kept and the next `pulumi up` continues from it. "
                    "Check `docker exec etcd etcdctl member list` on a master "
                    "(docs/recovery.md)."
                )
            self.supervisor.check()
            time.sleep(min(5.0, max(bound / 10, 0.05)))

    # -- ingress controller

    def ingress_state(self, kubectl: str) -> tuple[list[str], str]:
        """One look at the ingress controller: (what is still pending, why kubectl could
        not answer). kubectl's stderr (warnings, errors) never reaches the JSON parser."""
        c = ingress_wait.RKE_INGRESS
        base = [kubectl, "--kubeconfig", str(self.workdir / KUBECONFIG_FILE), "-n", c.namespace]
        rc, out, err = run_split(
            [
                *base, "get", f"daemonset/{c.daemonset}",
                f"validatingwebhookconfiguration/{c.webhook_configuration}",
                "--ignore-not-found", "-o", "json",
            ],
            self.child_env, KUBECTL_TIMEOUT,
        )  # fmt: skip
        if rc != 0:
            return [], f"kubectl exit {rc}: {self.redact(err.strip())[-300:]}"
        rc2, out2, err2 = run_split(
            [
                *base, "get", "endpointslices", "-l",
                f"{ingress_wait.SERVICE_NAME_LABEL}={c.webhook_service}", "-o", "json",
            ],
            self.child_env, KUBECTL_TIMEOUT,
        )  # fmt: skip
        if rc2 != 0:
            return [], f"kubectl exit {rc2}: {self.redact(err2.strip())[-300:]}"
        try:
            objects = ingress_wait.items(json.loads(out) if out.strip() else None)
            slices = ingress_wait.items(json.loads(out2) if out2.strip() else None)
        except ValueError as error:
            return [], f"kubectl printed no JSON ({error})"
        return ingress_wait.pending(c, objects, slices), ""

    def wait_ingress(self) -> None:
        """Bounded wait until an Ingress can be created: RKE's ingress-nginx DaemonSet rolled
        out on the nodes its selector picks, its admission webhook Service has a ready
        endpoint and the webhook's CA is patched in (``rke.ingress``). Nothing to wait for
        when cluster.yml's ingress provider is ``none``. Raises RunnerError naming what was
        still pending and how long it waited."""
        if not ingress_enabled(self.doc):
            return
        kubectl = self._tool("kubectl", "waiting for the ingress controller's admission webhook")
        bound = float(self.env.get("RKE_INGRESS_TIMEOUT") or DEFAULT_INGRESS_TIMEOUT)
        poll = float(self.env.get("RKE_INGRESS_POLL") or DEFAULT_INGRESS_POLL)
        c = ingress_wait.RKE_INGRESS
        start = time.monotonic()
        deadline = start + bound
        log(f"waiting up to {bound:g}s for ingress-nginx ({c.namespace}/{c.daemonset}) and "
            f"its admission webhook ({c.namespace}/{c.webhook_service})")  # fmt: skip
        last = ""
        while True:
            waiting, error = self.ingress_state(kubectl)
            if not waiting and not error:
                took = time.monotonic() - start
                log(f"ingress-nginx ready after {took:.0f}s: the controller rolled out and "
                    "the admission webhook has a ready endpoint")  # fmt: skip
                return
            now_seen = error or "; ".join(waiting)
            if now_seen != last:
                log(f"ingress-nginx not ready yet: {now_seen}")
                last = now_seen
            if time.monotonic() >= deadline:
                raise RunnerError(
                    f"`rke up` succeeded, but the ingress-nginx controller and its admission "
                    f"webhook were not ready after {bound:g}s (RKE_INGRESS_TIMEOUT): "
                    f"{now_seen}. Until they are, the API server rejects every Ingress "
                    "(the webhook's failurePolicy is Fail). The cluster state is kept and "
                    "the next `pulumi up` starts from it. Look at `kubectl -n "
                    f"{c.namespace} get pods,jobs` and `kubectl -n {c.namespace} describe "
                    f"daemonset {c.daemonset}` (docs/recovery.md)."
                )
            self.supervisor.check()
            time.sleep(max(0.0, min(poll, deadline - time.monotonic())))

    # -- the run

    def execute(self) -> str:
        rke = self._tool("rke", "deploying the cluster")
        version = self.check_rke(rke)
        base = private_base(self.env)
        self.harvest(base)
        start, source = self.starting_state()
        self.run_dir = RunDir.create(base, self.key)
        try:
            if self.env.get("RKE_SSH_PRIVATE_KEY"):
                self.key_path = self.workdir / "ssh_key"
                write_secret(self.key_path, self.env["RKE_SSH_PRIVATE_KEY"].rstrip("\n") + "\n")
            after = planning.hosts_from_cluster_yml(self.doc)
            if start is None and self.restore is None:
                start = self.recover(after)
                source = "the cluster" if start else ""
            elif start is not None and self.ask_cluster and self.restore is None:
                start, source = self.newer_in_cluster(start, source, after)
            log(f"using RKE {version}; state from: {source or 'none (a new cluster)'}")
            if start is not None:
                self.learn(start.rkestate, start.kubeconfig)
                self.base_hash = digest(start.rkestate)
                replace_secret(self.workdir / STATE_FILE, start.rkestate)
                if start.kubeconfig:
                    replace_secret(self.workdir / KUBECONFIG_FILE, start.kubeconfig)
                self._seen = None
                self.saved_digest = digest(start.rkestate)
            self.ids = dict(start.node_ids) if start else {}
            if self.restore is not None and (
                start is None or dict(start.restored or {}) != self.restore.as_dict()
            ):
                return self.run_restore(rke, start)
            if start is not None and start.restored and self.restore is not None:
                self.restored = start.restored
            return self.run_up(rke, start, after)
        finally:
            self.supervisor.quiet = True  # a second signal must not cut the cleanup short
            if self.run_dir is not None:
                self.run_dir.remove()

    def before_hosts(self, start: Result | None) -> list[Host]:
        if start is None:
            return []
        nodes = applied_nodes(check_rkestate(start.rkestate))
        if nodes is not None:
            return planning.hosts_from_state(nodes)
        if start.cluster_yml:
            return planning.hosts_from_cluster_yml(load_yaml(start.cluster_yml))
        return []

    def run_up(self, rke: str, start: Result | None, after: list[Host]) -> str:
        if start is not None:
            check_network_plugin(check_rkestate(start.rkestate), self.doc)
        before = self.before_hosts(start)
        replaced = planning.replaced_in_place(before, after, self.ids, self.new_ids)
        try:
            steps = planning.plan_steps(before, after, replaced)
        except PlanError as err:
            raise RunnerError(f"refusing this change: {err}") from None
        skip_drain = self.env.get("RKE_SKIP_DRAIN") == "1"
        multi = len(steps) > 1
        log(
            f"plan: {len(steps)} `rke up` run(s)"
            + (" (etcd members change one at a time)" if multi else "")
        )
        for i, step in enumerate(steps, 1):
            for line in step.change.describe():
                log(f"  step {i}: {line}")
        # what the plan needs, checked before anything changes
        if any(s.change.drained for s in steps) and not skip_drain:
            self._tool("kubectl", "draining the workers that leave")
            if steps[0].change.drained and not (self.workdir / KUBECONFIG_FILE).exists():
                raise RunnerError(
                    "workers leave the cluster but the state has no kubeconfig to drain them "
                    "with; run with RKE_SKIP_DRAIN=1 to remove them undrained"
                )
        if any(s.change.changes_etcd for s in steps) and before:
            self._tool("ssh", "checking etcd health around member changes")
        if ingress_enabled(self.doc):
            self._tool("kubectl", "waiting for the ingress controller's admission webhook")

        current: Sequence[Host] = before
        for i, step in enumerate(steps, 1):
            label = f"step {i}/{len(steps)}"
            if step.change.etcd_removed and before:
                self.check_removal(step, current)
            if step.change.drained and not skip_drain:
                self.drain(step.change.drained)
            doc = planning.step_document(self.doc, step.hosts) if not step.final else self.doc
            self.step_yml = render(doc) if not step.final else self.cluster_yml
            self.write_cluster_yml(doc)
            log(f"{label}: running `rke up --config cluster.yml`")
            rc, tail = self.stream([rke, "up", "--config", "cluster.yml"], origin=f"rke up {label}")
            if rc != 0:
                done = f"{i - 1} of {len(steps)} steps completed; " if multi else ""
                raise RunnerError(
                    f"`rke up` failed in {label} (exit {rc}). {done}the newest state RKE "
                    f"wrote is kept in {self.store.root} and the next `pulumi up` starts "
                    f"from it. Last {len(tail)} lines:\n" + "\n".join(tail)
                )
            for address in step.completes:
                host = next(h for h in step.hosts if h.address == address)
                if host.name in self.new_ids:
                    self.ids[host.name] = self.new_ids[host.name]
            if step.final:
                self.ids = dict(self.new_ids)
            self._seen = None
            self.saved_digest = None  # re-save with this step's node ids
            self.capture(f"rke up {label} (completed)")
            if step.change.changes_etcd and before:
                self.wait_healthy(step)
            current = step.hosts
        self.wait_ingress()
        return self.result()

    def run_restore(self, rke: str, start: Result | None) -> str:
        """``rke etcd snapshot-restore --config cluster.yml --name <snapshot>``.

        The S3 keys never go on argv (``/proc/<pid>/cmdline`` is readable by every local
        user). RKE's ``--access-key``/``--secret-key`` flags read no environment variable
        (``EtcdCommand`` in ``cmd/etcd.go``: plain ``cli.StringFlag``s), so no ``--s3``
        at all: without it ``setOptionsFromCLI`` (``cmd/common.go``) keeps the S3 block of
        the cluster.yml, written 0600 into the private run directory with the keys, and
        ``PrepareBackup`` (``cluster/etcd.go``) downloads the snapshot from that block.
        """
        assert self.restore is not None
        request = self.restore
        name = request.snapshot
        argv = [rke, "etcd", "snapshot-restore", "--config", "cluster.yml", "--name", name]
        if request.s3:
            s3 = (
                ((self.doc.get("services") or {}).get("etcd") or {}).get("backup_config") or {}
            ).get("s3backupconfig")
            access, secret = self.env.get("RKE_S3_ACCESS_KEY"), self.env.get("RKE_S3_SECRET_KEY")
            if not s3 or not access or not secret:
                raise RunnerError(
                    "rke.restore.s3 is true but cluster.yml has no s3backupconfig or the S3 "
                    "keys are missing (etcdS3AccessKey/etcdS3SecretKey)"
                )
        if start is None:
            log("warning: no RKE state is known; RKE takes the state from the snapshot archive")
        self.write_cluster_yml(self.doc, keep_s3=request.s3)
        self.restored = request.as_dict()
        shown = " ".join(self.redact(a) for a in argv[1:])
        log(f"restoring etcd snapshot {request.snapshot!r}: `rke {shown}`")
        rc, tail = self.stream(argv, origin="rke etcd snapshot-restore")
        if rc != 0:
            raise RunnerError(
                f"`rke etcd snapshot-restore` failed (exit {rc}); the newest state RKE wrote "
                f"is kept in {self.store.root}. Last {len(tail)} lines:\n" + "\n".join(tail)
            )
        self.ids = dict(self.new_ids)
        self._seen = None
        self.saved_digest = None
        self.capture("rke etcd snapshot-restore (completed)")
        self.wait_ingress()
        return self.result()

    def result(self) -> str:
        try:
            rkestate = (self.workdir / STATE_FILE).read_text()
            kubeconfig = (self.workdir / KUBECONFIG_FILE).read_text()
        except OSError as err:
            raise RunnerError(
                f"RKE succeeded but wrote no {Path(str(err.filename)).name}"
            ) from None
        try:
            check_rkestate(rkestate)
        except StateError as err:
            raise RunnerError(
                f"RKE succeeded but its cluster.rkestate is not a state: {err}"
            ) from None
        out = encode_result(
            Result(rkestate, kubeconfig, self.cluster_yml, self.new_ids, now(), self.restored)
        )
        if len(out) > STDOUT_LIMIT:
            raise RunnerError(
                f"the result is {len(out)} bytes; pulumi-command hands it back in one "
                f"environment variable, which holds at most {STDOUT_LIMIT}. The cluster "
                f"changed; its state is kept in {self.store.root}. Reduce the number of "
                "nodes (the stack config limits them for this reason)."
            )
        return out


def up(env: Mapping[str, str], cluster_yml: str, supervisor: Supervisor, stdout: IO[str]) -> str:
    """Run ``up`` and print its result to ``stdout``; returns it. Raises RunnerError."""
    run = Run(env, cluster_yml, supervisor)
    wait = float(env.get("RKE_LEFTOVER_WAIT") or LEFTOVER_WAIT_SECONDS)
    try:
        with run.store.locked(wait):
            out = run.execute()
            stdout.write(out + "\n")
            stdout.flush()
            run.store.remove()  # the result is on its way into Pulumi's state
            return out
    except StateError as err:
        raise RunnerError(str(err)) from None


def extract(directory: Path, stdout_json: str) -> None:
    """Write a saved stdout back as files for manual ``rke`` commands (0700 dir, 0600 files)."""
    try:
        previous = parse_previous(stdout_json)
    except StateError as err:
        raise RunnerError(f"standard input is not the RKE command's stdout: {err}") from None
    if previous is None:
        raise RunnerError("standard input is empty")
    directory.mkdir(mode=0o700, parents=True, exist_ok=False)
    write_secret(directory / STATE_FILE, previous.rkestate)
    write_secret(directory / "cluster.yml", previous.cluster_yml)
    write_secret(directory / KUBECONFIG_FILE, previous.kubeconfig)


def import_state(key: str, path: Path, env: Mapping[str, str]) -> Path:
    """Make ``path`` (a cluster.rkestate) the local copy of stack ``key``."""
    text = path.read_text()
    try:
        check_rkestate(text)
    except StateError as err:
        raise RunnerError(f"{path} is not an RKE state: {err}") from None
    store = StateStore(key, env)
    store.save(LocalCopy(key, text, None, None, {}, None, now(), f"imported from {path}"))
    return store.root


def _open_log(env: Mapping[str, str], key: str | None) -> Path | None:
    """A new private log file for this run (the last 10 are kept)."""
    if not key:
        return None
    with contextlib.suppress(OSError):
        logs = StateStore(key, env).ensure_dir() / "logs"
        logs.mkdir(mode=0o700, exist_ok=True)
        old = sorted(logs.glob("*.log"))
        for stale in old[:-9]:
            stale.unlink()
        return logs / f"{now().replace(':', '')}-{os.getpid()}.log"
    return None


def main(
    argv: list[str],
    env: Mapping[str, str] | None = None,
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """The command line. ``env`` and the streams default to the process's own (tests
    pass theirs to run the runner in-process)."""
    global _console
    usage = (
        "usage: python -m rke.runner up < cluster.yml | delete | extract DIR < stdout.json"
        " | import-state PROJECT/STACK FILE"
    )
    env = dict(os.environ if env is None else env)
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    stderr = stderr or sys.stderr
    if not argv or argv[0] not in ("up", "delete", "extract", "import-state"):
        print(usage, file=stderr)
        return 2
    supervisor = Supervisor()
    previous_handlers = supervisor.install()
    log_path = _open_log(env, env.get("RKE_STATE_KEY")) if argv[0] == "up" else None
    _console = Console(log_path, stream=stderr)
    try:
        if argv[0] == "delete":
            _console.final(DELETE_NOTICE)
        elif argv[0] == "extract":
            if len(argv) != 2:
                print(usage, file=stderr)
                return 2
            extract(Path(argv[1]), stdin.read())
        elif argv[0] == "import-state":
            if len(argv) != 3:
                print(usage, file=stderr)
                return 2
            root = import_state(argv[1], Path(argv[2]), env)
            _console.final(f"[rke-runner] kept as the local copy in {root}; run `pulumi up`")
        else:
            up(env, stdin.read(), supervisor, stdout)
    except RunnerError as err:
        _console.final(f"[rke-runner] ERROR: {err}")
        return 1
    except Interrupted as err:
        supervisor.quiet = True
        _console.final(
            f"[rke-runner] interrupted by {err}: rke was stopped, the private run directory "
            "removed, and the newest state RKE wrote kept for the next run."
        )
        return 128 + err.signum
    finally:
        supervisor.quiet = True
        _console.close()
        _console = None
        supervisor.restore(previous_handlers)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""What one run shares: cluster.yml, the checked environment, the private run directory,
the tools it starts, and the local copy each state RKE writes goes into."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from components.private_files import replace_secret, write_secret
from rke.plan import Host
from rke.redact import Redactor
from rke.releases import check_release
from rke.runner import console
from rke.runner.console import RunnerError
from rke.runner.contract import SECRET_ENV, EnvError, RunnerEnv
from rke.runner.documents import disk_cluster_yml, read_cluster_yml
from rke.runner.processes import Supervisor, child_env, run_quick, ssh_argv
from rke.state import LocalCopy, StateError, StateStore, check_rkestate, digest, now
from rke.workdir import KUBECONFIG_FILE, STATE_FILE, RunDir

TAIL_LINES = 40
# On RKE's "written" line, how long to keep reading a state file that is mid-write (RKE
# may already be rewriting it when the runner gets to the line), and how often.
MID_WRITE_WAIT, MID_WRITE_POLL = 5.0, 0.02
SSH_PROBE_TIMEOUT = 60.0
STATE_WRITTEN = "Successfully Deployed state file"  # cluster/state.go WriteStateFile
INSTALL_HINT = (
    "Install RKE v1.8.14 (the last RKE v1 release): download `rke_linux-amd64` (or the "
    "darwin/arm64 build) from https://github.com/rancher-archives/rke/releases/tag/v1.8.14, "
    "verify its sha256, `install -m 0755 rke_linux-amd64 ~/.local/bin/rke`, and make sure "
    "it is on PATH for `pulumi up`."
)


class Session:
    """One ``up``'s shared state; the run, the state discovery and the live-cluster
    operations all work through it."""

    def __init__(self, env: Mapping[str, str], cluster_yml: str, supervisor: Supervisor) -> None:
        self.env = env  # the raw environment: the state home, the tmpfs, the tools' env
        self.supervisor = supervisor
        self.cluster_yml = cluster_yml
        self.doc: dict[str, Any] = read_cluster_yml(cluster_yml)
        try:
            self.given = RunnerEnv.from_env(env)
        except EnvError as err:
            raise RunnerError(str(err)) from None
        self.key = self.given.state_key
        self.store = StateStore(self.key, env)
        self.redact = Redactor.from_values(env.get(k) for k in SECRET_ENV)
        self.agent = not self.given.ssh_private_key
        self.child_env = child_env(env, agent=self.agent)
        self.new_ids = self.given.node_ids  # this run's machine ids
        self._known_hosts_lock = threading.Lock()
        self.default_user = "root"  # RKE's default when a node has no `user`
        self.run_dir: RunDir | None = None
        self.key_path: Path | None = None
        # what the next local copy records (``capture``)
        self.base_hash: str | None = None
        self.saved_digest: str | None = None
        self.ids: dict[str, str] = {}
        self.restored: Mapping[str, Any] | None = None
        self.step_yml = cluster_yml
        self.seen: tuple[int, int, int, int] | None = None

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
        if address not in self.given.host_keys:
            return None
        path = self.workdir / "known_hosts"
        with self._known_hosts_lock:  # the probes ask nodes from several threads
            if path.exists():
                return path
            lines = []
            for node in self.doc.get("nodes") or []:
                key = self.given.host_keys.get(str(node.get("address")))
                if key:
                    port = int(node.get("port") or 22)
                    name = node["address"] if port == 22 else f"[{node['address']}]:{port}"
                    lines.append(f"{name} {key}\n")
            write_secret(path, "".join(lines))
        return path

    def tool(self, name: str, why: str) -> str:
        path = shutil.which(name, path=self.child_env.get("PATH"))
        if path is None:
            hint = INSTALL_HINT if name == "rke" else f"Install `{name}` and put it on PATH."
            raise RunnerError(f"`{name}` is not on PATH ({why}). {hint}")
        return path

    def ask(self, ssh: str, host: Host, command: str) -> tuple[int, str]:
        """Run ``command`` on ``host`` over ``ssh``, checking its pinned host key."""
        argv = ssh_argv(
            ssh, host.entry, self.default_user, self.key_path, command,
            known_hosts=self.known_hosts(host.entry),
        )  # fmt: skip
        return run_quick(argv, self.child_env, SSH_PROBE_TIMEOUT)

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
                self.given.s3_access_key,
                self.given.s3_secret_key,
                keep_s3,
            ),
        )

    def stream(
        self, argv: Sequence[str], origin: str = "rke", keep_state: bool = True
    ) -> tuple[int, list[str]]:
        """Run a tool in the workdir, its output redacted to the console; keep each state
        it writes (``keep_state``) in the local copy. Returns (exit code, last lines)."""
        tail: deque[str] = deque(maxlen=TAIL_LINES)

        def keep(origin: str, wait: float = 0.0) -> None:
            if keep_state:
                self.capture(origin, wait)

        def on_line(raw: str) -> None:
            if not raw:
                return
            # Learn a state RKE wrote before redacting what it prints next: a stat per
            # line, a read only when the file changed (and always on RKE's "written" line).
            written = STATE_WRITTEN in raw
            if written:
                self.seen = None
            keep(origin, MID_WRITE_WAIT if written else 0.0)
            line = self.redact(raw)
            tail.append(line)
            console.line(line)

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

    # -- state capture

    def capture(self, origin: str, wait: float = 0.0) -> None:
        """Keep the state RKE has written in the workdir, if it is new and complete.
        ``wait``: seconds to keep looking while the file is mid-write (on RKE's "written"
        line: what RKE prints next can carry that state's keys)."""
        path = self.workdir / STATE_FILE
        deadline = time.monotonic() + wait
        while True:
            try:
                st = path.stat()
            except FileNotFoundError:
                return
            # coarse kernel timestamps: a rewrite within one tick can keep mtime and size,
            # so the inode change time and number are part of the stamp too
            stamp = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
            if stamp == self.seen:
                return
            try:
                text = path.read_text()
                check_rkestate(text)
                break
            except (OSError, StateError, UnicodeDecodeError):
                if time.monotonic() >= deadline:
                    return  # RKE is mid-write; the next look (or the last one) gets it
                time.sleep(MID_WRITE_POLL)
        self.seen = stamp
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

    def changed(self) -> None:
        """RKE completed a step: the next ``capture`` saves the state whatever it holds."""
        self.seen = None
        self.saved_digest = None

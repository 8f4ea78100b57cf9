"""One ``up``: the starting state, the plan, the ``rke`` runs, and the result on stdout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from components.private_files import replace_secret, write_secret
from rke import plan as planning
from rke.plan import Host, PlanError
from rke.runner import etcd, kubectl, leftovers, starting
from rke.runner.console import RunnerError, log
from rke.runner.documents import check_network_plugin, ingress_enabled, render
from rke.runner.processes import Supervisor
from rke.runner.session import Session
from rke.state import (
    STDOUT_LIMIT,
    Result,
    StateError,
    check_rkestate,
    digest,
    encode_result,
    now,
)
from rke.workdir import KUBECONFIG_FILE, STATE_FILE, RunDir, private_base


class Run:
    """One ``up`` through its ``Session``."""

    def __init__(self, session: Session) -> None:
        self.s = session

    def execute(self) -> str:
        s = self.s
        rke = s.tool("rke", "deploying the cluster")
        version = s.check_rke(rke)
        base = private_base(s.env)
        leftovers.harvest(s.store, s.key, base, s.given.leftover_wait)
        start, source, ask_cluster = starting.starting_state(s)
        s.run_dir = RunDir.create(base, s.key)
        try:
            if s.given.ssh_private_key:
                s.key_path = s.workdir / "ssh_key"
                write_secret(s.key_path, s.given.ssh_private_key.rstrip("\n") + "\n")
            after = planning.hosts_from_cluster_yml(s.doc)
            restore = s.given.restore
            if start is None and restore is None:
                start = starting.recover(s, after)
                source = "the cluster" if start else ""
            elif start is not None and ask_cluster and restore is None:
                start, source = starting.newer_in_cluster(s, start, source, after)
            log(f"using RKE {version}; state from: {source or 'none (a new cluster)'}")
            if start is not None:
                s.learn(start.rkestate, start.kubeconfig)
                s.base_hash = digest(start.rkestate)
                replace_secret(s.workdir / STATE_FILE, start.rkestate)
                if start.kubeconfig:
                    replace_secret(s.workdir / KUBECONFIG_FILE, start.kubeconfig)
                s.seen = None
                s.saved_digest = digest(start.rkestate)
            s.ids = dict(start.node_ids) if start else {}
            if restore is not None and (
                start is None or dict(start.restored or {}) != restore.as_dict()
            ):
                return self.run_restore(rke, start)
            if start is not None and start.restored and restore is not None:
                s.restored = start.restored
            return self.run_up(rke, start, after)
        finally:
            s.supervisor.quiet = True  # a second signal must not cut the cleanup short
            if s.run_dir is not None:
                s.run_dir.remove()

    def run_up(self, rke: str, start: Result | None, after: list[Host]) -> str:
        s = self.s
        if start is not None:
            check_network_plugin(check_rkestate(start.rkestate), s.doc)
        before = starting.applied_hosts(start)
        replaced = planning.replaced_in_place(before, after, s.ids, s.new_ids)
        try:
            steps = planning.plan_steps(before, after, replaced)
        except PlanError as err:
            raise RunnerError(f"refusing this change: {err}") from None
        skip_drain = s.given.skip_drain
        multi = len(steps) > 1
        log(
            f"plan: {len(steps)} `rke up` run(s)"
            + (" (etcd members change one at a time)" if multi else "")
        )
        for i, step in enumerate(steps, 1):
            for line in step.change.describe():
                log(f"  step {i}: {line}")
        # what the plan needs, checked before anything changes
        if any(st.change.drained for st in steps) and not skip_drain:
            s.tool("kubectl", "draining the workers that leave")
            if steps[0].change.drained and not (s.workdir / KUBECONFIG_FILE).exists():
                raise RunnerError(
                    "workers leave the cluster but the state has no kubeconfig to drain them "
                    "with; run with RKE_SKIP_DRAIN=1 to remove them undrained"
                )
        if any(st.change.changes_etcd for st in steps) and before:
            s.tool("ssh", "checking etcd health around member changes")
        if ingress_enabled(s.doc):
            s.tool("kubectl", "waiting for the ingress controller's admission webhook")

        current: Sequence[Host] = before
        for i, step in enumerate(steps, 1):
            label = f"step {i}/{len(steps)}"
            if step.change.etcd_removed and before:
                etcd.check_removal(s, step, current)
            if step.change.drained and not skip_drain:
                kubectl.drain(s, step.change.drained)
            doc = planning.step_document(s.doc, step.hosts) if not step.final else s.doc
            s.step_yml = render(doc) if not step.final else s.cluster_yml
            s.write_cluster_yml(doc)
            log(f"{label}: running `rke up --config cluster.yml`")
            rc, tail = s.stream([rke, "up", "--config", "cluster.yml"], origin=f"rke up {label}")
            if rc != 0:
                done = f"{i - 1} of {len(steps)} steps completed; " if multi else ""
                raise RunnerError(
                    f"`rke up` failed in {label} (exit {rc}). {done}the newest state RKE "
                    f"wrote is kept in {s.store.root} and the next `pulumi up` starts "
                    f"from it. Last {len(tail)} lines:\n" + "\n".join(tail)
                )
            for address in step.completes:
                host = next(h for h in step.hosts if h.address == address)
                if host.name in s.new_ids:
                    s.ids[host.name] = s.new_ids[host.name]
            if step.final:
                s.ids = dict(s.new_ids)
            s.changed()  # re-save with this step's node ids
            s.capture(f"rke up {label} (completed)")
            if step.change.changes_etcd and before:
                etcd.wait_healthy(s, step)
            current = step.hosts
        kubectl.wait_ingress(s)
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
        s = self.s
        assert s.given.restore is not None
        request = s.given.restore
        name = request.snapshot
        argv = [rke, "etcd", "snapshot-restore", "--config", "cluster.yml", "--name", name]
        if request.s3:
            s3 = (((s.doc.get("services") or {}).get("etcd") or {}).get("backup_config") or {}).get(
                "s3backupconfig"
            )
            if not s3 or not s.given.s3_access_key or not s.given.s3_secret_key:
                raise RunnerError(
                    "rke.restore.s3 is true but cluster.yml has no s3backupconfig or the S3 "
                    "keys are missing (etcdS3AccessKey/etcdS3SecretKey)"
                )
        if start is None:
            log("warning: no RKE state is known; RKE takes the state from the snapshot archive")
        s.write_cluster_yml(s.doc, keep_s3=request.s3)
        s.restored = request.as_dict()
        shown = " ".join(s.redact(a) for a in argv[1:])
        log(f"restoring etcd snapshot {request.snapshot!r}: `rke {shown}`")
        rc, tail = s.stream(argv, origin="rke etcd snapshot-restore")
        if rc != 0:
            raise RunnerError(
                f"`rke etcd snapshot-restore` failed (exit {rc}); the newest state RKE wrote "
                f"is kept in {s.store.root}. Last {len(tail)} lines:\n" + "\n".join(tail)
            )
        s.ids = dict(s.new_ids)
        s.changed()
        s.capture("rke etcd snapshot-restore (completed)")
        kubectl.wait_ingress(s)
        return self.result()

    def result(self) -> str:
        s = self.s
        try:
            rkestate = (s.workdir / STATE_FILE).read_text()
            kubeconfig = (s.workdir / KUBECONFIG_FILE).read_text()
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
            Result(rkestate, kubeconfig, s.cluster_yml, s.new_ids, now(), s.restored)
        )
        if len(out) > STDOUT_LIMIT:
            raise RunnerError(
                f"the result is {len(out)} bytes; pulumi-command hands it back in one "
                f"environment variable, which holds at most {STDOUT_LIMIT}. The cluster "
                f"changed; its state is kept in {s.store.root}. Reduce the number of "
                "nodes (the stack config limits them for this reason)."
            )
        return out


def up(env: Mapping[str, str], cluster_yml: str, supervisor: Supervisor, stdout: IO[str]) -> str:
    """Run ``up`` and print its result to ``stdout``; returns it. Raises RunnerError."""
    session = Session(env, cluster_yml, supervisor)
    try:
        with session.store.locked(session.given.leftover_wait):
            out = Run(session).execute()
            stdout.write(out + "\n")
            stdout.flush()
            session.store.remove()  # the result is on its way into Pulumi's state
            return out
    except StateError as err:
        raise RunnerError(str(err)) from None

"""The run directories of killed runs of this stack: their last state is kept, then they go."""

from __future__ import annotations

import shutil
from pathlib import Path

from rke.runner.console import RunnerError, log
from rke.state import LocalCopy, StateError, StateStore, check_rkestate, digest, now
from rke.workdir import find_leftovers


def harvest(store: StateStore, key: str, base: Path, wait: float) -> None:
    """Keep the state dead runs of ``key`` left in their run dirs, then remove them;
    refuse while a live one still holds its directory after ``wait`` seconds."""
    dead, busy = find_leftovers(base, key, wait)
    if busy:
        raise RunnerError(
            f"a previous rke for {key} is still running in {', '.join(map(str, busy))} "
            f"(waited {wait:.0f}s). Wait for it to end (`ps -ef | grep rke`), or stop it "
            "and run `pulumi up` again: its state is kept then."
        )
    for left in dead:
        kept = "nothing to keep"
        if left.rkestate:
            try:
                check_rkestate(left.rkestate)
                kept = _keep(store, key, left.rkestate, left.kubeconfig, left.path)
            except StateError as err:
                kept = f"its cluster.rkestate is incomplete ({err}); not kept"
        shutil.rmtree(left.path, ignore_errors=True)
        log(f"removed the directory of a killed run (pid {left.owner_pid}): {kept}")


def _keep(store: StateStore, key: str, text: str, kubeconfig: str | None, path: Path) -> str:
    copy = store.load()
    if copy is not None and digest(copy.rkestate) == digest(text):
        return "its state is the local copy already"
    # The dead run saved the local copy whenever RKE wrote the file; a different file
    # there is a write it did not see (RKE wrote it as the runner was killed).
    store.save(
        LocalCopy(
            key=key,
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
    return f"its state is now the local copy {store.root}"

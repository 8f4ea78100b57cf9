"""The runner's private working directories, and what a killed run leaves behind.

A run writes the SSH key, cluster.yml with the S3 keys and ``cluster.rkestate`` into a
directory that lives as short as the run: owner-only (0700 in a 0700 parent), on a
tmpfs when there is one (``/dev/shm``, else ``$XDG_RUNTIME_DIR``), so the secrets do
not reach a disk. Each run directory holds a ``lock`` that the runner and its ``rke``
child hold (``flock``) while they live: the kernel releases it when the last of them
exits, however they exit. A later run of the same stack finds directories whose lock
is free -- the runner was SIGKILLed (pulumi-command cancels that way) -- keeps the
state RKE had written there, and removes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from components.private_files import tmpfs_base
from rke.state import digest, try_lock

STATE_FILE = "cluster.rkestate"  # cluster.GetStateFilePath("cluster.yml")
KUBECONFIG_FILE = "kube_config_cluster.yml"  # pki.GetLocalKubeConfig("cluster.yml")


def private_base(env: Mapping[str, str]) -> Path:
    """``<tmpfs>/multicloud-rke-<uid>``, created 0700. ``RKE_RUNNER_TMPDIR`` overrides
    the tmpfs choice (tests; hosts without /dev/shm)."""
    return tmpfs_base("rke", override=env.get("RKE_RUNNER_TMPDIR"), env=env)


def _prefix(key: str) -> str:
    return f"run-{digest(key)[:16]}-"


@dataclass
class RunDir:
    """A run's directory and the locked descriptor the ``rke`` child inherits."""

    path: Path
    lock_fd: int

    @classmethod
    def create(cls, base: Path, key: str) -> RunDir:
        path = Path(tempfile.mkdtemp(prefix=_prefix(key), dir=base))
        os.chmod(path, 0o700)
        fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        if not try_lock(fd, 0):
            os.close(fd)
            raise OSError(f"cannot lock {path / 'lock'}")
        (path / "owner.json").write_text(json.dumps({"key": key, "pid": os.getpid()}))
        return cls(path, fd)

    def remove(self) -> None:
        """Delete the directory (secrets included), then release the lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.close(self.lock_fd)


@dataclass(frozen=True)
class Leftover:
    """What a dead run left: its directory, and the state/kubeconfig RKE had written."""

    path: Path
    owner_pid: int | None
    rkestate: str | None
    kubeconfig: str | None


def find_leftovers(base: Path, key: str, wait_seconds: float) -> tuple[list[Leftover], list[Path]]:
    """Run directories of ``key`` under ``base`` whose runner and ``rke`` are gone, and
    those still locked after waiting up to ``wait_seconds`` for them (a killed runner's
    ``rke`` may take a moment to stop). Returns (dead, still running)."""
    dead, busy = [], []
    for path in sorted(base.glob(_prefix(key) + "*")):
        if not path.is_dir() or path.is_symlink():
            continue
        try:
            fd = os.open(path / "lock", os.O_RDWR)
        except FileNotFoundError:
            fd = None  # died before locking: nothing can be running there
        try:
            if fd is not None and not try_lock(fd, wait_seconds):
                busy.append(path)
                continue
            dead.append(_read_leftover(path))
        finally:
            if fd is not None:
                os.close(fd)
    return dead, busy


def _read_leftover(path: Path) -> Leftover:
    def text(name: str) -> str | None:
        try:
            return (path / name).read_text()
        except (FileNotFoundError, UnicodeDecodeError):
            return None

    pid = None
    with contextlib.suppress(ValueError, TypeError, KeyError):
        pid = int(json.loads(text("owner.json") or "{}")["pid"])
    return Leftover(path, pid, text(STATE_FILE), text(KUBECONFIG_FILE))

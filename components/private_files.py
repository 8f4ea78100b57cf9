"""Files only this user can read, for secrets that must touch a filesystem.

RKE's runner (rke/) and `make roll` (roll/) hand secrets to tools that take files (rke's
cluster.yml and state, kubectl's kubeconfig, ssh's key). They go in 0600 files, in 0700
directories on a tmpfs when there is one, removed after use; a directory left by a killed
process is removed by the next run (docs/security.md#where-each-secret-lives).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

PID_FILE = "pid"  # in a scratch directory: the process that owns it


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) 0700; refuse one that another user owns,
    that is a symlink, or that others can read."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not os.path.isdir(path) or os.path.islink(path):
        raise OSError(f"{path} is not a directory")
    if st.st_uid != os.getuid():
        raise OSError(f"{path} belongs to uid {st.st_uid}, not to this user")
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def tmpfs_base(
    name: str, override: str | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """``<tmpfs>/multicloud-<name>-<uid>``, created 0700: in ``override`` if given, else
    /dev/shm or ``$XDG_RUNTIME_DIR`` (memory: the files never reach a disk), else the
    system's temporary directory."""
    env = os.environ if env is None else env
    candidates = [override, "/dev/shm", env.get("XDG_RUNTIME_DIR")]
    for candidate in candidates:
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            return private_dir(Path(candidate) / f"multicloud-{name}-{os.getuid()}")
    return private_dir(Path(tempfile.gettempdir()) / f"multicloud-{name}-{os.getuid()}")


@contextlib.contextmanager
def scratch_dir(name: str, prefix: str) -> Iterator[Path]:
    """A new private directory under ``tmpfs_base(name)``, removed on exit. It holds a
    pid file; directories of processes that are gone are removed first."""
    base = tmpfs_base(name)
    remove_abandoned(base, prefix)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        (path / PID_FILE).write_text(str(os.getpid()))
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_abandoned(base: Path, prefix: str) -> list[Path]:
    """Remove the scratch directories under ``base`` whose process is gone; return them."""
    removed = []
    for path in sorted(base.glob(f"{prefix}*")):
        try:
            os.kill(int((path / PID_FILE).read_text()), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        except (OSError, ValueError):
            continue  # another user's process, or a directory being created
    return removed


def write_secret(path: Path, text: str) -> None:
    """Create ``path`` 0600 with ``text`` (it must not exist)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def replace_secret(path: Path, text: str) -> None:
    """Write ``path`` 0600 with ``text``, replacing what was there."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    write_secret(path, text)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file, fsync, rename), mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)

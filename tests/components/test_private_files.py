"""Private files for secrets (components/private_files.py): modes, cleanup, abandoned runs."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import uuid
from pathlib import Path

import pytest

from components.private_files import remove_abandoned, scratch_dir, tmpfs_base, write_secret


def test_a_scratch_directory_is_private_and_gone_after_even_on_an_error() -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    try:
        with pytest.raises(RuntimeError), scratch_dir(name, "run-") as path:
            write_secret(path / "key", "secret")
            assert stat.S_IMODE((path / "key").stat().st_mode) == 0o600
            assert stat.S_IMODE(path.stat().st_mode) == 0o700
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
            if Path("/dev/shm").is_dir():  # memory, not a disk, when there is a tmpfs
                assert path.is_relative_to("/dev/shm")
            raise RuntimeError("the roll failed")
        assert not path.exists()
    finally:
        shutil.rmtree(tmpfs_base(name), ignore_errors=True)


def test_only_directories_of_processes_that_are_gone_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])  # a pid that has exited
    dead.wait()
    for label, pid in (("dead", dead.pid), ("live", os.getpid()), ("unreadable", None)):
        path = tmp_path / f"run-{label}"
        path.mkdir()
        if pid is not None:
            (path / "pid").write_text(str(pid))
    (tmp_path / "other-dead").mkdir()
    (tmp_path / "other-dead" / "pid").write_text(str(dead.pid))
    assert remove_abandoned(tmp_path, "run-") == [tmp_path / "run-dead"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "other-dead",
        "run-live",
        "run-unreadable",
    ]


def test_a_secret_file_is_never_written_over(tmp_path: Path) -> None:
    write_secret(tmp_path / "key", "one")
    with pytest.raises(FileExistsError):
        write_secret(tmp_path / "key", "two")
    assert (tmp_path / "key").read_text() == "one"

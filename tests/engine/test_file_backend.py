"""The file backend's checkpoint read race, and the ``metadata=skip`` that closes it.

Seen twice in the engine suite: a first `pulumi up` failed with "StackReference
services-previous: failed to load checkpoint: EOF". The program reads its own stack's
outputs (a StackReference: the chart upgrade guard, RKE2's join record) while the engine
writes the stack's checkpoint after each step. Pulumi's file backend writes the checkpoint
atomically (pkg/backend/diy/state.go ``saveCheckpoint``: ``WriteAll`` to a temporary name,
then a rename), but gocloud's fileblob also keeps a ``<file>.attrs`` sidecar that it
rewrites in place (gocloud.dev blob/fileblob/attrs.go ``setAttrs``: ``os.Create`` truncates,
then encodes) and that every read decodes first (``getAttrs`` via ``bucket.forKey``): a read
in between decodes an empty file, io.EOF. With ``?metadata=skip`` in the backend URL
(fileblob.go ``MetadataDontWrite``) no sidecar is written, and a missing one reads as the
defaults, so there is nothing to catch half-written. The Makefile's default backend and
the engine tests' backend carry it (docs/first-deploy.md).

The race itself is timing (microseconds a write); the tests show its window
deterministically: an empty sidecar, which is what a reader sees mid-``setAttrs``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.engine.tools import engine_env, pulumi_binary, python_project

PROGRAM = 'import pulumi\n\npulumi.export("answer", 42)\n'


def _workspace(tmp_path: Path, url: str | None) -> tuple[Path, dict[str, str], Path]:
    """A one-output project on a file backend: ``url`` (``{state}`` filled in), or the
    engine tests' own (``engine_env``) when None."""
    project = python_project(tmp_path / "project", "backend-race", PROGRAM)
    state = tmp_path / "state"
    state.mkdir()
    env = engine_env(tmp_path / "home", state)
    if url is not None:
        env["PULUMI_BACKEND_URL"] = url.format(state=state)
    return project, env, state


def _pulumi(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(pulumi_binary()), *args, "--non-interactive"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def _checkpoint(state: Path) -> Path:
    (found,) = state.glob(".pulumi/stacks/backend-race/dev.json")
    return found


def test_a_half_written_sidecar_fails_the_read_without_metadata_skip(tmp_path: Path) -> None:
    project, env, state = _workspace(tmp_path, "file://{state}")
    assert _pulumi(project, env, "stack", "init", "dev").returncode == 0
    assert _pulumi(project, env, "up", "--yes", "--skip-preview").returncode == 0
    sidecar = _checkpoint(state).with_name("dev.json.attrs")
    assert sidecar.is_file()  # fileblob keeps one beside the checkpoint
    sidecar.write_text("")  # what a reader sees between setAttrs' truncate and its write
    read = _pulumi(project, env, "stack", "output", "--json")
    assert read.returncode != 0 and "EOF" in read.stderr, read.stderr


def test_with_metadata_skip_no_sidecar_is_written_and_reads_work(tmp_path: Path) -> None:
    project, env, state = _workspace(tmp_path, None)  # the engine tests' backend
    assert env["PULUMI_BACKEND_URL"].endswith("?metadata=skip")
    assert _pulumi(project, env, "stack", "init", "dev").returncode == 0
    up = _pulumi(project, env, "up", "--yes", "--skip-preview")
    assert up.returncode == 0, up.stderr
    assert _checkpoint(state).is_file()
    assert not list(state.rglob("*.attrs")), "fileblob wrote a sidecar a reader could catch"
    read = _pulumi(project, env, "stack", "output", "--json")
    assert read.returncode == 0 and '"answer": 42' in read.stdout, read.stderr

"""The scripts and units a node boots with, as rendered for each engine, pass shellcheck
and ``systemd-analyze verify`` (Debian 12's systemd 252, the nodes' own)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from components.boot.document import EnginePart, render_user_data
from rke.boot import docker_part
from rke2.boot import Rke2Files, rke2_part
from tests.components.boot.test_cloud_init import KEY, NODE, OVERLAY
from tests.support.tools import debian_tool

ENGINES: dict[str, EnginePart] = {
    "rke": docker_part("rke"),
    "rke2": rke2_part(Rke2Files("server", "token: x\n", "#!/bin/sh\n", "#!/bin/sh\n")),
}
# Findings kept on purpose, by script: the restart takes every kube-flannel container id
# `docker ps` prints, one a word (SC2086); the bootstrap's EXIT trap sets rc itself, in
# the same quoted string shellcheck 0.9 reads as unassigned (SC2154).
ACCEPTED = {"multicloud-flannel-restart": "SC2086", "multicloud-bootstrap": "SC2154"}
SYSTEM_UNITS = Path("/usr/lib/systemd/system")  # what the units order themselves against


def written(engine: str) -> dict[str, dict]:
    """The node's write_files, by path, with the overlay and every engine file."""
    text = render_user_data(
        NODE, ssh_user="rke", ssh_public_key=KEY, engine=ENGINES[engine], overlay=OVERLAY
    )
    return {f["path"]: f for f in yaml.safe_load(text)["write_files"]}


SCRIPTS = [
    (engine, path)
    for engine in ENGINES
    for path, item in written(engine).items()
    if item["content"].startswith("#!/bin/sh\n") and item["content"] != "#!/bin/sh\n"
]
UNITS = [
    (engine, path)
    for engine in ENGINES
    for path in written(engine)
    if path.startswith("/etc/systemd/system/")
]


def shellcheck(script: Path, exclude: str = "") -> subprocess.CompletedProcess[str]:
    tool = debian_tool("shellcheck", "shellcheck")
    if tool is None:
        pytest.skip("shellcheck is not installed (Debian: apt-get install shellcheck)")
    command = [tool, "--shell=sh", "--format=gcc", *([f"--exclude={exclude}"] if exclude else [])]
    return subprocess.run([*command, str(script)], capture_output=True, text=True, timeout=60)


def verify(root: Path, unit: str) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` of ``unit`` in ``root``, a node's tree holding the host's
    own system units: unknown keys are only warnings, so any output fails too."""
    tool = debian_tool("systemd-analyze", "systemd")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    if not (root / SYSTEM_UNITS.relative_to("/")).is_dir():
        shutil.copytree(SYSTEM_UNITS, root / SYSTEM_UNITS.relative_to("/"), symlinks=True)
    return subprocess.run(
        [tool, "verify", f"--root={root}", str(root / unit.lstrip("/"))],
        capture_output=True,
        text=True,
        timeout=60,
    )


def node_tree(root: Path, engine: str) -> Path:
    for path, item in written(engine).items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(item["content"])
        if item.get("permissions") == "0755":
            target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return root


@pytest.mark.parametrize(("engine", "path"), SCRIPTS)
def test_scripts_pass_shellcheck(engine: str, path: str, tmp_path: Path) -> None:
    script = tmp_path / os.path.basename(path)
    script.write_text(written(engine)[path]["content"])
    run = shellcheck(script, ACCEPTED.get(script.name, ""))
    assert (run.returncode, run.stdout + run.stderr) == (0, "")


@pytest.mark.parametrize(("engine", "path"), UNITS)
def test_units_pass_systemd_analyze_verify(engine: str, path: str, tmp_path: Path) -> None:
    run = verify(node_tree(tmp_path, engine), path)
    assert (run.returncode, run.stdout + run.stderr) == (0, "")


def test_the_linters_refuse_what_they_should(tmp_path: Path) -> None:
    """Both tools, as called above, fail a script and a unit with one mistake each."""
    script = tmp_path / "broken"
    script.write_text('#!/bin/sh\nset -eu\ncd $1\n[ -n "$2" ] && echo "$2"\n')
    assert shellcheck(script).returncode != 0
    root = node_tree(tmp_path / "node", "rke2")
    unit = "/etc/systemd/system/multicloud-metadata-guard.service"
    text = written("rke2")[unit]["content"]
    (root / unit.lstrip("/")).write_text(text.replace("RemainAfterExit=", "RemainAfterExt="))
    assert "Unknown key" in verify(root, unit).stderr
    (root / unit.lstrip("/")).write_text(text.replace("multicloud-metadata-guard\n", "nothere\n"))
    assert verify(root, unit).returncode != 0


def test_every_placeholder_needs_its_value_and_every_value_its_placeholder() -> None:
    from components.boot.assets import render

    values = {"APT_WRAPPER": "/usr/local/sbin/multicloud-apt", "COMMAND": "apt-get"}
    assert render("components.boot", "apt-shim", **values).splitlines()[1] == (
        'exec /usr/local/sbin/multicloud-apt /usr/bin/apt-get "$@"'
    )
    with pytest.raises(ValueError, match="apt-shim: placeholders"):
        render("components.boot", "apt-shim", APT_WRAPPER="/x")
    with pytest.raises(ValueError, match="apt-shim: placeholders"):
        render("components.boot", "apt-shim", **values, EXTRA="y")

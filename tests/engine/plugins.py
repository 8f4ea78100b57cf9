"""Install the stand-in cloud providers (tests/engine/providers/) as engine plugins.

Each becomes an executable ``pulumi-resource-<package>`` launcher that runs
``python -m tests.engine.providers <package>`` with the project's venv, installed with
``pulumi plugin install resource <package> <version> --file <launcher>`` at exactly the
version the package's Python SDK asks the engine for (its ``pulumi-plugin.json``), so the
engine finds it without downloading anything. pkg/v3 v3.274.0
cmd/pulumi/plugin/plugin_install.go ``getFilePayload``: a file that is not compressed must be
executable and is installed as the plugin's single binary.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from tests.engine.providers.server import PACKAGES, plugin_version

ROOT = Path(__file__).resolve().parent.parent.parent
VENV_PYTHON = ROOT / "venv" / "bin" / "python"


def launcher_text(package: str) -> str:
    """The launcher: the venv's Python, the repository on its path, the engine's arguments."""
    root, python = shlex.quote(str(ROOT)), shlex.quote(str(VENV_PYTHON))
    return (
        "#!/bin/sh\n"
        f"# Stand-in provider plugin for {package} (tests/engine/plugins.py); the engine\n"
        "# passes its address as the argument and reads the port from stdout.\n"
        f'PYTHONPATH={root} exec {python} -m tests.engine.providers {package} "$@"\n'
    )


def install_fake_plugins(pulumi: Path, env: dict[str, str], work: Path) -> None:
    """Install every stand-in into the PULUMI_HOME of ``env``; launchers are written to
    ``work``. The fake cloud's folder comes from ``env`` at run time
    (``MULTICLOUD_FAKE_CLOUD_DIR``, tests/engine/providers/cloud.py)."""
    work.mkdir(parents=True, exist_ok=True)
    for package in PACKAGES:
        launcher = work / f"pulumi-resource-{package}"
        launcher.write_text(launcher_text(package))
        launcher.chmod(0o755)
        version = plugin_version(package)
        command = [str(pulumi), "plugin", "install", "resource", package, version]
        done = subprocess.run(
            [*command, "--file", str(launcher)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(command)} --file {launcher}` failed ({done.returncode}):\n"
                f"{done.stdout}{done.stderr}"
            )

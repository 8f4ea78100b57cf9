"""Where `make tools` puts the real Pulumi CLI, and the environment to run it hermetically.

`make tools` builds the CLI (tools/pulumi/go.mod), the stand-in Python language host
(tools/pulumi-language-python/) and installs the Python SDK's two scripts into
``.tools/pulumi-<version>/bin/`` (docs/testing.md, "The real engine").
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
GO_MOD = ROOT / "tools" / "pulumi" / "go.mod"
# A passphrase for the test stacks' secrets provider; never a real one.
TEST_PASSPHRASE = "multicloud-engine-tests"


def pulumi_version() -> str:
    """The CLI's version as tools/pulumi/go.mod requires it (e.g. ``v3.274.0``)."""
    pattern = r"^\s*(?:require\s+)?github\.com/pulumi/pulumi/pkg/v3 (v\S+)"
    found = re.search(pattern, GO_MOD.read_text(), re.M)
    if found is None:
        pytest.fail(f"{GO_MOD} does not require github.com/pulumi/pulumi/pkg/v3")
    return found.group(1)


def tools_bin() -> Path:
    """``.tools/pulumi-<version>/bin``: the CLI, the language host and its scripts."""
    return ROOT / ".tools" / f"pulumi-{pulumi_version()}" / "bin"


def pulumi_binary() -> Path:
    """The `pulumi` CLI `make tools` built; a missing one fails the test (CI or not)."""
    binary = tools_bin() / "pulumi"
    needed = [binary] + [
        tools_bin() / name
        for name in (
            "pulumi-language-python",
            "pulumi-language-python-exec",
            "pulumi-resource-pulumi-python",
        )
    ]
    missing = [str(p) for p in needed if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(
            f"the real Pulumi engine is not built ({', '.join(missing)} missing): run `make tools`"
        )
    return binary


def engine_env(pulumi_home: Path, backend_dir: Path) -> dict[str, str]:
    """The environment for running the real CLI hermetically: the tools first on PATH, a
    private PULUMI_HOME (plugins, credentials, workspace settings), a file backend, no
    update check, no plugin downloads, no Pulumi Cloud token and no other PULUMI_* setting
    inherited from the caller's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env.update(
        PATH=os.pathsep.join([str(tools_bin()), env.get("PATH", os.defpath)]),
        PULUMI_HOME=str(pulumi_home),
        # no fileblob sidecar, whose in-place rewrite a StackReference read can catch
        # half-written (tests/engine/test_file_backend.py)
        PULUMI_BACKEND_URL=f"file://{backend_dir}?metadata=skip",
        PULUMI_SKIP_UPDATE_CHECK="1",
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
        PULUMI_CONFIG_PASSPHRASE=TEST_PASSPHRASE,
    )
    return env


def python_project(folder: Path, name: str, program: str) -> Path:
    """A one-file Pulumi project ``name`` in ``folder`` whose program is ``program``, run
    from the project's venv (what `make setup` installs from requirements.lock)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Pulumi.yaml").write_text(
        f"name: {name}\nruntime:\n  name: python\n  options:\n    toolchain: pip\n"
        f"    virtualenv: {ROOT / 'venv'}\n"
    )
    (folder / "__main__.py").write_text(program)
    return folder

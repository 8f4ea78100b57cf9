"""External tools the tests use: which are set up by `make test`, which are optional locally.

`make test` installs the venv and node_modules itself, so tools from them are always
required (a missing one fails). Debian packages (the `cloud-init` binary, Chromium) are
optional on a developer's machine, where a pure-Python check runs instead, and required
under ``CI=true``: `.ci/run` installs them, so CI runs every check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / "node_modules"
IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def debian_tool(name: str, package: str, path: str | None = None) -> str | None:
    """The tool's path, or None when absent; absent under ``CI=true`` fails the test."""
    found = path if path and Path(path).is_file() else shutil.which(name)
    if found is None and IN_CI:
        pytest.fail(f"{name} is not installed and CI=true requires it: apt-get install {package}")
    return found


def node_package(name: str) -> Path:
    """A package `make test` installs with `npm ci`; missing means the set-up did not run."""
    if shutil.which("node") is None:
        pytest.fail("node is not installed (Debian: apt-get install nodejs npm)")
    package = NODE_MODULES / name
    if not (package / "package.json").is_file():
        pytest.fail(f"{package} is missing: run `make test` (it runs `npm ci --ignore-scripts`)")
    return package


def venv_tool(name: str) -> str:
    """A console script installed beside the running interpreter (requirements-dev.txt)."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `make test` (requirements-dev.txt)")
    return found


# libyaml's parser where PyYAML was built with it (its wheels are): the same SafeConstructor
# and resolver as yaml.safe_load, so the same documents, ~10x faster. For tests that parse
# large documents (user-data, cluster.yml) many times; what the project itself emits and
# reads is untouched.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, parsed by libyaml when available."""
    return yaml.load(text, Loader=_FAST_LOADER)  # a safe loader: CSafeLoader or SafeLoader


def namespace_prefix(kinds: str, what: str) -> list[str]:
    """A command prefix that runs in fresh namespaces of ``kinds`` (unshare's letters: "n"
    network, "mn" mount and network) where we are root: an unprivileged user namespace
    mapped to root, or (CI runners that restrict those) the same by passwordless sudo.
    Fails naming ``what`` (e.g. "a network namespace") when neither works."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("`unshare` is not installed (Debian: apt-get install util-linux)")
    for prefix in ([unshare, f"-r{kinds}"], ["sudo", "-n", unshare, f"-{kinds}"]):
        try:
            ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=60)
        except FileNotFoundError:
            continue
        if ok.returncode == 0:
            return prefix
    pytest.fail(
        f"cannot create {what}: enable unprivileged user namespaces "
        "(sysctl kernel.apparmor_restrict_unprivileged_userns=0) or allow `sudo -n`"
    )


def ed25519_openssh() -> tuple[str, str]:
    """A new ED25519 key pair as OpenSSH writes it: (private key file, public key line
    without comment or newline)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public.decode()

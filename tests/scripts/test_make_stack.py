"""`make init/preview/up`: a named backend, no implicit stack, against a fake `pulumi` on PATH.

The fake records every invocation (arguments, PULUMI_BACKEND_URL, whether a local state
directory existed) and keeps its stacks in a JSON file; it never touches the network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scripts import stack as stack_script

ROOT = Path(__file__).resolve().parents[2]
FAKE_PULUMI = """\
#!{python}
import json, os, sys
from urllib.parse import urlsplit
args = sys.argv[1:]
backend = os.environ.get("PULUMI_BACKEND_URL", "")
url = urlsplit(backend)
state_dir = os.path.isdir(url.path) if url.scheme == "file" else None
with open(os.environ["FAKE_PULUMI_LOG"], "a") as log:
    log.write(json.dumps({{"args": args, "backend": backend, "state_dir": state_dir}}) + "\\n")
path = os.environ["FAKE_PULUMI_STACKS"]
stacks = json.load(open(path)) if os.path.exists(path) else []
if args[:3] == ["stack", "ls", "--json"]:
    print(json.dumps([{{"name": f"organization/multicloud/{{s}}"}} for s in stacks]))
elif args[:2] == ["stack", "init"]:
    json.dump(stacks + [args[2]], open(path, "w"))
    print(f"Created stack '{{args[2]}}'")
elif args[0] in ("up", "preview"):
    print(f"fake pulumi {{args[0]}}")
elif args[:2] == ["config", "set"]:
    pass  # logged with its arguments; a value piped in is not read
else:
    sys.exit(f"the fake does not know {{args}}")
"""
# (.tools: the Go builds, ~250 MB; .hypothesis: written by `make unit`'s other process)
_IGNORE = shutil.ignore_patterns(
    "venv", "node_modules", "build", ".git", ".pulumi-state", "__pycache__", ".*_cache",
    ".tools", ".hypothesis",
)  # fmt: skip


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the checkout (so the default state directory lands in tmp)."""
    dst = tmp_path / "checkout"
    shutil.copytree(ROOT, dst, ignore=_IGNORE)
    return dst


@pytest.fixture
def fake(tmp_path: Path) -> dict[str, str]:
    """Environment with the fake `pulumi` first on PATH and no backend set."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "pulumi"
    script.write_text(FAKE_PULUMI.format(python=sys.executable))
    script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "MAKE"))}
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    env["FAKE_PULUMI_LOG"] = str(tmp_path / "calls.jsonl")
    env["FAKE_PULUMI_STACKS"] = str(tmp_path / "stacks.json")
    return env


def make(checkout: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    venv = Path(sys.prefix)
    cmd = ["make", "-s", "-C", str(checkout), *args, f"VENV={venv}", "-o", f"{venv}/.installed"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)


def calls(env: dict[str, str]) -> list[dict[str, Any]]:
    log = Path(env["FAKE_PULUMI_LOG"])
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_up_on_a_missing_stack_stops_and_names_make_init(
    checkout: Path, fake: dict[str, str]
) -> None:
    state = checkout / ".pulumi-state"
    run = make(checkout, fake, "up", "STACK=prod")
    assert run.returncode != 0
    assert (
        f"Pulumi backend: file://{state}?metadata=skip" in run.stderr
        and "Stack:          prod" in run.stderr
    )
    assert "stack 'prod' does not exist" in run.stderr
    assert "make init STACK=prod" in run.stderr
    assert state.is_dir(), "the default file backend's directory is created"
    assert [c["args"] for c in calls(fake)] == [["stack", "ls", "--json"]]
    assert (
        calls(fake)[0]["backend"] == f"file://{state}?metadata=skip" and calls(fake)[0]["state_dir"]
    )


def test_init_creates_the_stack_then_up_and_preview_run_it(
    checkout: Path, fake: dict[str, str]
) -> None:
    init = make(checkout, fake, "init", "STACK=prod")
    assert init.returncode == 0, init.stderr
    # what to do next: this stack's secrets, for this stack, on this backend
    assert f"export PULUMI_BACKEND_URL=file://{checkout}/.pulumi-state?metadata=skip" in init.stdout
    for key in ("zerotierToken", "sshPrivateKey", "digitaloceanToken", "cloudflareApiToken"):
        assert f"pulumi config set --stack prod --secret {key} " in init.stdout, key
    assert "etcdS3SecretKey" in init.stdout and "OpenstackSecret" not in init.stdout
    # Each printed command pasted into a shell as it is: placeholders never become a
    # redirection or an argument (Pulumi prompts for a missing value), the key file is read.
    home = checkout.parent / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "multicloud").write_text("not a key\n")
    commands = [line.strip() for line in init.stdout.splitlines() if "config set" in line]
    assert len(commands) == 6
    before = len(calls(fake))
    for line in commands:
        pasted = subprocess.run(
            ["bash", "-c", line],
            env={**fake, "HOME": str(home)},
            cwd=checkout,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert pasted.returncode == 0, (line, pasted.stderr)
    keys = [c["args"] for c in calls(fake)[before:]]
    assert all(a[:5] == ["config", "set", "--stack", "prod", "--secret"] for a in keys), keys
    assert all(len(a) == 6 for a in keys), keys  # no value on the command line
    again = make(checkout, fake, "init", "STACK=prod")
    assert again.returncode != 0 and "already exists" in again.stderr

    for target in ("preview", "up"):
        run = make(checkout, fake, target, "STACK=prod")
        assert run.returncode == 0, run.stderr
        assert f"fake pulumi {target}" in run.stdout
    args = [c["args"] for c in calls(fake)]
    assert ["stack", "init", "prod"] in args
    assert args[-1] == ["up", "--stack", "prod"] and ["preview", "--stack", "prod"] in args
    assert not [a for a in args if "--create" in a or a[:2] == ["stack", "select"]]


def test_a_named_backend_is_used_as_is(checkout: Path, fake: dict[str, str]) -> None:
    backend = "s3://mc-state?endpoint=nyc3.digitaloceanspaces.com&region=us-east-1"
    run = make(checkout, fake, "preview", "STACK=home", f"PULUMI_BACKEND_URL={backend}")
    assert run.returncode != 0 and "make init STACK=home" in run.stderr
    assert f"Pulumi backend: {backend}" in run.stderr
    assert not (checkout / ".pulumi-state").exists()
    assert [c["backend"] for c in calls(fake)] == [backend]
    env = {**fake, "PULUMI_BACKEND_URL": f"file://{checkout}/elsewhere"}
    other = make(checkout, env, "up", "STACK=home")  # from the environment, too
    assert f"Pulumi backend: file://{checkout}/elsewhere" in other.stderr
    assert not (checkout / "elsewhere").exists(), "only the default directory is created"


def test_unknown_stack_file_and_missing_cli_are_refused(
    checkout: Path, fake: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = make(checkout, fake, "up", "STACK=staging")
    assert run.returncode != 0 and "no Pulumi.staging.yaml" in run.stderr
    assert calls(fake) == []
    monkeypatch.setattr(stack_script.shutil, "which", lambda name: None)
    with pytest.raises(stack_script.StackError, match="Pulumi CLI is not installed"):
        stack_script.run("up", "prod", "file:///x", "file:///x", dict(fake))


def test_backend_urls_are_shown_without_passwords() -> None:
    assert stack_script.shown("postgres://ops:s3cret@db.example:5432/pulumi") == (
        "postgres://ops:***@db.example:5432/pulumi"
    )
    assert stack_script.shown("s3://bucket?region=x") == "s3://bucket?region=x"
    assert stack_script.local_state_dir("file:///srv/state") == Path("/srv/state")
    assert stack_script.local_state_dir("s3://bucket") is None
    assert stack_script.stack_names('[{"name": "prod"}, {"name": "org/multicloud/home"}]') == {
        "prod",
        "home",
    }

"""`make init|preview|up STACK=<stack>`: the Pulumi CLI on a named backend, with no surprises.

- It says which backend and stack it is about to use, before anything else.
- With the default local file backend it creates the state directory first: Pulumi's
  file ("diy") backend opens the directory as a gocloud bucket and refuses a missing one
  (pulumi/pulumi ``pkg/backend/diy/backend.go``, ``newDIYBackend`` -> ``OpenBucket``).
- ``preview`` and ``up`` never create a stack. Left alone, ``pulumi up --stack X`` for a
  missing stack offers to create it in an interactive terminal (``RequireStack`` with
  ``OfferNew`` in ``pkg/cmd/pulumi/stack/io.go``, which ``up`` and ``preview`` pass): a
  forgotten ``PULUMI_BACKEND_URL`` would start a second, empty copy of a live cluster. So
  the stack is looked up first (``pulumi stack ls --json``) and a missing one is an error
  naming ``make init STACK=<stack>``.
- ``init`` creates the stack (``pulumi stack init``) on that backend and prints the
  secrets this stack needs, to set next.

Exit status: the Pulumi CLI's, or 1 with a message on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "multicloud"


class StackError(RuntimeError):
    """A problem to tell the user instead of running Pulumi."""


def shown(url: str) -> str:
    """The backend URL for display, a password in it replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def local_state_dir(url: str) -> Path | None:
    """The directory of a ``file://`` backend URL, else None."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        return None
    return Path(unquote(parts.netloc + parts.path)).expanduser()


def stack_names(listing: str) -> set[str]:
    """Stack names from ``pulumi stack ls --json`` (a JSON list of objects with ``name``).

    A file backend lists ``prod`` or ``organization/multicloud/prod`` (pulumi/pulumi
    ``pkg/backend/diy/backend.go``, ``diyBackendReference.String``); Pulumi Cloud lists
    ``prod`` or ``<org>/multicloud/prod``. The last path element is the stack's name.
    """
    try:
        entries = json.loads(listing or "[]")
    except json.JSONDecodeError:
        raise StackError(f"`pulumi stack ls --json` printed something else:\n{listing}") from None
    return {str(e["name"]).rsplit("/", 1)[-1] for e in entries if isinstance(e, dict)}


def _pulumi(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["pulumi", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )


def existing_stacks(env: dict[str, str]) -> set[str]:
    run = _pulumi(["stack", "ls", "--json"], env)
    if run.returncode != 0:
        raise StackError(
            "could not list the stacks on this backend (`pulumi stack ls --json`):\n"
            + (run.stderr or run.stdout).strip()
        )
    return stack_names(run.stdout)


def secrets_to_set(stack: str) -> list[str]:
    """The `pulumi config set --secret` commands this stack's config needs."""
    from components.config import ConfigError, raw_values
    from engines import check_stack
    from scripts.config_reference import secret_command, stack_secrets
    from scripts.offline import stack_config

    try:
        settings = check_stack(raw_values(stack_config(stack)[0]))[0].settings
    except (ConfigError, FileNotFoundError) as err:
        return [f"(Pulumi.{stack}.yaml does not validate yet: {err})"]
    return [secret_command(key, value, stack) for key, value in stack_secrets(settings)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["init", "preview", "up"])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--default-backend", required=True, help="the Makefile's file:// URL")
    opts = parser.parse_args(argv)
    env = dict(os.environ)
    backend = env.get("PULUMI_BACKEND_URL") or opts.default_backend
    env["PULUMI_BACKEND_URL"] = backend
    stack = opts.stack
    try:
        return run(opts.command, stack, backend, opts.default_backend, env)
    except StackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def run(command: str, stack: str, backend: str, default: str, env: dict[str, str]) -> int:
    """Announce, prepare the backend, check the stack, then hand over to Pulumi."""
    print(f"Pulumi backend: {shown(backend)}", file=sys.stderr)
    print(f"Stack:          {stack}", file=sys.stderr)
    if not (ROOT / f"Pulumi.{stack}.yaml").is_file():
        raise StackError(f"there is no Pulumi.{stack}.yaml: STACK names a committed stack file")
    if shutil.which("pulumi") is None:
        raise StackError("the Pulumi CLI is not installed: https://www.pulumi.com/docs/install/")
    state = local_state_dir(backend)
    if backend == default and state is not None and not state.is_dir():
        state.mkdir(parents=True)
        print(f"created the local state directory {state}", file=sys.stderr)
    exists = stack in existing_stacks(env)
    if command == "init":
        if exists:
            raise StackError(f"stack {stack!r} already exists on {shown(backend)}")
        # Not captured: a passphrase-encrypted stack prompts for PULUMI_CONFIG_PASSPHRASE.
        created = subprocess.run(["pulumi", "stack", "init", stack], cwd=ROOT, env=env, check=False)
        if created.returncode != 0:
            return created.returncode
        print(f"\nCreated stack {stack!r}. Set its secrets next (docs/config-reference.md),")
        print("in a shell with this backend (and PULUMI_CONFIG_PASSPHRASE, if you use one):")
        print(f"  export PULUMI_BACKEND_URL={shown(backend)}")
        for line in secrets_to_set(stack):
            print(f"  {line}")
        print(f"then: make preview STACK={stack}")
        return 0
    if not exists:
        raise StackError(
            f"stack {stack!r} does not exist on {shown(backend)}.\n"
            f"  Create it there with `make init STACK={stack}`, or, if it lives on another "
            "backend, set PULUMI_BACKEND_URL to that backend."
        )
    os.execvpe("pulumi", ["pulumi", command, "--stack", stack], env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())

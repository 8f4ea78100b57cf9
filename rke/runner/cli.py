"""The command line: ``python -m rke.runner up|delete|extract DIR|import-state KEY FILE``."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from components.private_files import write_secret
from rke.runner import console
from rke.runner.console import RunnerError
from rke.runner.contract import NAMES
from rke.runner.processes import Console, Interrupted, Supervisor
from rke.runner.run import up
from rke.state import LocalCopy, StateError, StateStore, check_rkestate, now, parse_previous
from rke.workdir import KUBECONFIG_FILE, STATE_FILE

USAGE = (
    "usage: python -m rke.runner up < cluster.yml | delete | extract DIR < stdout.json"
    " | import-state PROJECT/STACK FILE"
)
DELETE_NOTICE = (
    "rke.runner delete: the Kubernetes cluster is NOT removed. Deleting this Pulumi resource "
    "only forgets it.\nTo tear the cluster down deliberately:\n"
    "  pulumi stack export --show-secrets > stack.json  # the RKE command's stdout is the state\n"
    '  jq -r \'.deployment.resources[] | select(.type=="command:local:Command" and '
    '(.urn|endswith("rke-up"))) | .outputs.stdout | '
    'if type=="object" then (.plaintext|fromjson) else . end\' stack.json \\\n'
    "     | python -m rke.runner extract ./rke-teardown\n"
    "  cd rke-teardown && rke remove --config cluster.yml   # destroys etcd data on every node\n"
    "Then delete the directory: it holds the cluster CA keys. See docs/recovery.md."
)


def extract(directory: Path, stdout_json: str) -> None:
    """Write a saved stdout back as files for manual ``rke`` commands (0700 dir, 0600 files)."""
    try:
        previous = parse_previous(stdout_json)
    except StateError as err:
        raise RunnerError(f"standard input is not the RKE command's stdout: {err}") from None
    if previous is None:
        raise RunnerError("standard input is empty")
    directory.mkdir(mode=0o700, parents=True, exist_ok=False)
    write_secret(directory / STATE_FILE, previous.rkestate)
    write_secret(directory / "cluster.yml", previous.cluster_yml)
    write_secret(directory / KUBECONFIG_FILE, previous.kubeconfig)


def import_state(key: str, path: Path, env: Mapping[str, str]) -> Path:
    """Make ``path`` (a cluster.rkestate) the local copy of stack ``key``."""
    text = path.read_text()
    try:
        check_rkestate(text)
    except StateError as err:
        raise RunnerError(f"{path} is not an RKE state: {err}") from None
    store = StateStore(key, env)
    store.save(LocalCopy(key, text, None, None, {}, None, now(), f"imported from {path}"))
    return store.root


def _open_log(env: Mapping[str, str], key: str | None) -> Path | None:
    """A new private log file for this run (the last 10 are kept)."""
    if not key:
        return None
    with contextlib.suppress(OSError):
        logs = StateStore(key, env).ensure_dir() / "logs"
        logs.mkdir(mode=0o700, exist_ok=True)
        old = sorted(logs.glob("*.log"))
        for stale in old[:-9]:
            stale.unlink()
        return logs / f"{now().replace(':', '')}-{os.getpid()}.log"
    return None


def main(
    argv: list[str],
    env: Mapping[str, str] | None = None,
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """The command line. ``env`` and the streams default to the process's own (tests
    pass theirs to run the runner in-process)."""
    env = dict(os.environ if env is None else env)
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    stderr = stderr or sys.stderr
    if not argv or argv[0] not in ("up", "delete", "extract", "import-state"):
        print(USAGE, file=stderr)
        return 2
    supervisor = Supervisor()
    previous_handlers = supervisor.install()
    log_path = _open_log(env, env.get(NAMES["state_key"])) if argv[0] == "up" else None
    out = Console(log_path, stream=stderr)
    console.attach(out)
    try:
        if argv[0] == "delete":
            out.final(DELETE_NOTICE)
        elif argv[0] == "extract":
            if len(argv) != 2:
                print(USAGE, file=stderr)
                return 2
            extract(Path(argv[1]), stdin.read())
        elif argv[0] == "import-state":
            if len(argv) != 3:
                print(USAGE, file=stderr)
                return 2
            root = import_state(argv[1], Path(argv[2]), env)
            out.final(f"[rke-runner] kept as the local copy in {root}; run `pulumi up`")
        else:
            up(env, stdin.read(), supervisor, stdout)
    except RunnerError as err:
        out.final(f"[rke-runner] ERROR: {err}")
        return 1
    except Interrupted as err:
        supervisor.quiet = True
        out.final(
            f"[rke-runner] interrupted by {err}: rke was stopped, the private run directory "
            "removed, and the newest state RKE wrote kept for the next run."
        )
        return 128 + err.signum
    finally:
        supervisor.quiet = True
        out.close()
        console.attach(None)
        supervisor.restore(previous_handlers)
    return 0

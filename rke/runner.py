"""The program behind the RKE ``pulumi_command.local.Command``: ``python -m rke.runner up|delete``.

Contract (environment in, one JSON object out):

- ``RKE_CLUSTER_YML``     cluster.yml text without secrets (required for ``up``)
- ``RKE_SSH_PRIVATE_KEY`` optional secret; written 0600 and used as ``ssh_key_path``
                          (otherwise RKE uses the SSH agent, ``SSH_AUTH_SOCK``)
- ``RKE_S3_ACCESS_KEY``, ``RKE_S3_SECRET_KEY``  optional secrets, added to the
                          ``s3backupconfig`` of the copy written to disk
- ``RKE_NODE_IDS``        optional JSON ``{node name: machine id}`` from the readiness gates
- ``RKE_VERSION_REQUIRED`` prefix ``rke --version`` must show, default ``v1.8.``
- ``RKE_SKIP_DRAIN=1``    escape hatch: remove workers without draining (dead nodes)
- ``PULUMI_COMMAND_STDOUT`` set by pulumi-command on update/delete: this runner's
                          previous stdout, i.e. the previous state

On success stdout carries exactly one JSON object ``{"clusterYml", "kubeconfig",
"nodeIds", "rkestate", "version"}``; ``rkestate`` is ``xz+b64:`` + base64(xz(text)) to
stay well below Linux's 128 KiB limit for one environment string (it comes back as
``PULUMI_COMMAND_STDOUT``). On failure stdout stays empty and the exit code is
non-zero: pulumi-command then records nothing, so the previous state stays in
Pulumi's state. Progress goes to stderr, with known secrets redacted.

``delete`` never removes the cluster; ``extract DIR`` turns a saved stdout (stdin)
back into cluster.yml / cluster.rkestate / kube_config_cluster.yml for manual ``rke``.
"""

from __future__ import annotations

import base64
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FORMAT_VERSION = 1
STATE_PREFIX = "xz+b64:"
TAIL_LINES = 40
ENV_STRING_LIMIT = 131_072  # MAX_ARG_STRLEN on Linux
DEFAULT_VERSION_REQUIRED = "v1.8."
DEFAULT_DRAIN_TIMEOUT = 300
SECRET_ENV = ("RKE_SSH_PRIVATE_KEY", "RKE_S3_ACCESS_KEY", "RKE_S3_SECRET_KEY")
PRIVATE_ENV = (*SECRET_ENV, "RKE_CLUSTER_YML", "PULUMI_COMMAND_STDOUT", "PULUMI_COMMAND_STDERR")

INSTALL_HINT = (
    "Install RKE v1.8.x: download the `rke_linux-amd64` (or darwin/arm64) binary of the latest "
    "1.8 release from https://github.com/rancher/rke/releases (now rancher-archives/rke), "
    "verify its sha256, `install -m 0755 rke_linux-amd64 ~/.local/bin/rke`, and make sure it "
    "is on PATH for `pulumi up`."
)
ETCD_PROCEDURE = (
    "Replacing etcd nodes is one master at a time, or the cluster loses quorum "
    "(or RKE refuses and leaves a half-changed cluster):\n"
    "  1. remove or replace ONE etcd node in the stack config, `pulumi up`;\n"
    "  2. wait until `kubectl get nodes` and `docker exec etcd etcdctl member list` on a "
    "master show the member set healthy again;\n"
    "  3. repeat for the next one.\n"
    "A node whose address or machine id changes counts as replaced."
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
    "Then delete the directory: it holds the cluster CA keys."
)


class RunnerError(Exception):
    """A refusal or failure with an explanation for the person running ``pulumi up``."""


def log(message: str) -> None:
    print(f"[rke-runner] {message}", file=sys.stderr, flush=True)


# -- secrets ---------------------------------------------------------------------------------

_KEY_VALUE = re.compile(
    r"(?i)((?:access_?key|secret_?key|password|token|private_?key)[\"']?\s*[:=]\s*)\S+"
)
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


@dataclass
class Redactor:
    """Replaces known secret values (and key-looking material) in log lines."""

    secrets: list[str] = field(default_factory=list)

    @classmethod
    def from_values(cls, values: Iterable[str | None]) -> Redactor:
        found: set[str] = set()
        for value in values:
            if not value:
                continue
            found.add(value.strip())
            found.update(ln.strip() for ln in value.splitlines() if len(ln.strip()) >= 16)
        return cls(sorted((s for s in found if len(s) >= 4), key=len, reverse=True))

    def __call__(self, line: str) -> str:
        for secret in self.secrets:
            line = line.replace(secret, "[redacted]")
        if _PEM.search(line):
            return "[redacted private key material]"
        return _KEY_VALUE.sub(r"\1[redacted]", line)


# -- state carried in stdout -----------------------------------------------------------------


def encode_state(text: str) -> str:
    return STATE_PREFIX + base64.b64encode(lzma.compress(text.encode())).decode()


def decode_state(value: str) -> str:
    if value.startswith(STATE_PREFIX):
        return lzma.decompress(base64.b64decode(value[len(STATE_PREFIX) :])).decode()
    return value


@dataclass(frozen=True)
class PreviousRun:
    """What the last successful ``up`` printed (all ``None`` on the first run)."""

    rkestate: str | None = None
    kubeconfig: str | None = None
    cluster_yml: str | None = None
    node_ids: Mapping[str, str] = field(default_factory=dict)


def parse_previous(stdout: str | None) -> PreviousRun:
    """Read ``PULUMI_COMMAND_STDOUT``; refuse anything that is not this runner's output."""
    if not stdout or not stdout.strip():
        return PreviousRun()
    try:
        data = json.loads(stdout)
        rkestate = decode_state(data["rkestate"])
        json.loads(rkestate)
    except (ValueError, KeyError, TypeError, lzma.LZMAError) as err:
        raise RunnerError(
            "PULUMI_COMMAND_STDOUT (the previous run's output) is set but does not hold a "
            f"cluster.rkestate ({type(err).__name__}). Refusing to run `rke up` without it: "
            "a missing state makes RKE mint a new CA and breaks the cluster."
        ) from None
    return PreviousRun(
        rkestate=rkestate,
        kubeconfig=data.get("kubeconfig") or None,
        cluster_yml=data.get("clusterYml") or None,
        node_ids=dict(data.get("nodeIds") or {}),
    )


def result_json(
    rkestate: str, kubeconfig: str, cluster_yml: str, node_ids: Mapping[str, str]
) -> str:
    return json.dumps(
        {
            "clusterYml": cluster_yml,
            "kubeconfig": kubeconfig,
            "nodeIds": dict(sorted(node_ids.items())),
            "rkestate": encode_state(rkestate),
            "version": FORMAT_VERSION,
        },
        sort_keys=True,
    )


# -- planning --------------------------------------------------------------------------------


def _nodes(cluster_yml: str | None) -> dict[str, dict[str, Any]]:
    if not cluster_yml:
        return {}
    doc = yaml.safe_load(cluster_yml) or {}
    return {str(n.get("hostname_override") or n["address"]): n for n in doc.get("nodes") or []}


@dataclass(frozen=True)
class Plan:
    """What an ``rke up`` from the previous cluster.yml to the new one takes away."""

    etcd_before: tuple[str, ...]
    etcd_removed: tuple[str, ...]  # removed, demoted or replaced
    workers_leaving: tuple[str, ...]


def plan_changes(
    previous_yml: str | None,
    new_yml: str,
    previous_ids: Mapping[str, str] | None = None,
    new_ids: Mapping[str, str] | None = None,
) -> Plan:
    old, new = _nodes(previous_yml), _nodes(new_yml)
    previous_ids, new_ids = previous_ids or {}, new_ids or {}
    etcd_before = sorted(name for name, n in old.items() if "etcd" in n.get("role", []))
    removed = []
    for name in etcd_before:
        after = new.get(name)
        replaced = after is not None and (
            after.get("address") != old[name].get("address")
            or after.get("internal_address") != old[name].get("internal_address")
            or (name in previous_ids and name in new_ids and previous_ids[name] != new_ids[name])
        )
        if after is None or "etcd" not in after.get("role", []) or replaced:
            removed.append(name)
    leaving = sorted(
        name for name, n in old.items() if name not in new and "worker" in n.get("role", [])
    )
    return Plan(tuple(etcd_before), tuple(removed), tuple(leaving))


def check_etcd_quorum(plan: Plan) -> None:
    """Refuse removing/replacing more than one etcd member, or all of them, in one run."""
    if len(plan.etcd_removed) > 1 or (
        plan.etcd_removed and len(plan.etcd_removed) == len(plan.etcd_before)
    ):
        raise RunnerError(
            f"refusing `rke up`: it would remove or replace {len(plan.etcd_removed)} of "
            f"{len(plan.etcd_before)} etcd nodes at once ({', '.join(plan.etcd_removed)}).\n"
            + ETCD_PROCEDURE
        )


# -- tools -----------------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """The environment for rke/kubectl: ours minus secrets and the previous state."""
    return {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}


def check_rke(required: str) -> str:
    path = shutil.which("rke")
    if path is None:
        raise RunnerError("`rke` is not on PATH. " + INSTALL_HINT)
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=60, env=child_env()
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise RunnerError(f"`{path} --version` did not run: {err}. " + INSTALL_HINT) from None
    match = re.search(r"\bv\d+\.\d+\.\d+\S*", out.stdout + out.stderr)
    if out.returncode != 0 or match is None:
        raise RunnerError(f"`{path} --version` gave no version. " + INSTALL_HINT)
    if not match.group(0).startswith(required):
        raise RunnerError(
            f"{path} is RKE {match.group(0)}, this project needs {required}x. " + INSTALL_HINT
        )
    return match.group(0)


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def disk_cluster_yml(
    cluster_yml: str, key_path: Path | None, s3_access: str | None, s3_secret: str | None
) -> str:
    """The cluster.yml rke reads: the rendered one plus the secrets from the environment."""
    doc = yaml.safe_load(cluster_yml)
    if key_path is not None:
        doc["ssh_agent_auth"] = False
        doc["ssh_key_path"] = str(key_path)
    if s3_access or s3_secret:
        backup = doc.get("services", {}).get("etcd", {}).get("backup_config", {})
        s3 = backup.get("s3backupconfig")
        if s3 is None:
            log("warning: S3 keys given but cluster.yml has no s3backupconfig; keys ignored")
        else:
            if s3_access:
                s3["access_key"] = s3_access
            if s3_secret:
                s3["secret_key"] = s3_secret
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1000)


def stream(cmd: list[str], cwd: Path, redact: Redactor) -> tuple[int, list[str]]:
    """Run ``cmd``, copying its redacted output to stderr; return (exit code, tail)."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with subprocess.Popen(
        cmd,
        cwd=cwd,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = redact(raw.rstrip("\n"))
            tail.append(line)
            print(line, file=sys.stderr, flush=True)
    return proc.returncode, list(tail)


def drain(
    workers: Iterable[str], kubeconfig: Path, timeout: int, workdir: Path, redact: Redactor
) -> None:
    kubectl = shutil.which("kubectl")
    for name in workers:
        assert kubectl is not None
        log(f"draining worker {name} before RKE removes it")
        rc, tail = stream(
            [
                kubectl, "--kubeconfig", str(kubeconfig), "drain", name,
                "--ignore-daemonsets", "--delete-emptydir-data", f"--timeout={timeout}s",
            ],
            workdir,
            redact,
        )  # fmt: skip
        if rc != 0 and any("NotFound" in ln or "not found" in ln for ln in tail):
            log(f"node {name} is not in the cluster any more; nothing to drain")
        elif rc != 0:
            raise RunnerError(
                f"`kubectl drain {name}` failed (exit {rc}); nothing was changed by RKE.\n"
                + "\n".join(tail)
                + "\nIf the node is dead and cannot be drained, re-run with RKE_SKIP_DRAIN=1."
            )


# -- modes -----------------------------------------------------------------------------------


def up(env: Mapping[str, str]) -> str:
    """Run ``rke up``; return the JSON for stdout. Raises RunnerError on any failure."""
    cluster_yml = env.get("RKE_CLUSTER_YML", "")
    if not cluster_yml.strip():
        raise RunnerError("RKE_CLUSTER_YML is empty: nothing to deploy")
    redact = Redactor.from_values(env.get(k) for k in SECRET_ENV)
    previous = parse_previous(env.get("PULUMI_COMMAND_STDOUT"))
    node_ids = json.loads(env.get("RKE_NODE_IDS") or "{}")
    version = check_rke(env.get("RKE_VERSION_REQUIRED") or DEFAULT_VERSION_REQUIRED)
    log(f"using RKE {version}; previous state: {'restored' if previous.rkestate else 'none'}")

    plan = plan_changes(previous.cluster_yml, cluster_yml, previous.node_ids, node_ids)
    check_etcd_quorum(plan)
    workers = () if env.get("RKE_SKIP_DRAIN") == "1" else plan.workers_leaving
    if workers and shutil.which("kubectl") is None:
        raise RunnerError(
            f"workers {', '.join(workers)} leave the cluster and must be drained first, but "
            "`kubectl` is not on PATH. Install kubectl (or set RKE_SKIP_DRAIN=1 to remove "
            "them undrained). Nothing was changed."
        )
    if workers and not previous.kubeconfig:
        raise RunnerError("workers leave the cluster but no previous kubeconfig is in the state")

    old_umask = os.umask(0o077)
    workdir = Path(tempfile.mkdtemp(prefix="rke-"))
    try:
        os.chmod(workdir, 0o700)
        key_path = None
        if env.get("RKE_SSH_PRIVATE_KEY"):
            key_path = workdir / "ssh_key"
            _write(key_path, env["RKE_SSH_PRIVATE_KEY"].rstrip("\n") + "\n")
        _write(
            workdir / "cluster.yml",
            disk_cluster_yml(
                cluster_yml, key_path, env.get("RKE_S3_ACCESS_KEY"), env.get("RKE_S3_SECRET_KEY")
            ),
        )
        if previous.rkestate:
            _write(workdir / "cluster.rkestate", previous.rkestate)
        if previous.kubeconfig:
            _write(workdir / "kube_config_cluster.yml", previous.kubeconfig)
        if workers:
            timeout = (
                (yaml.safe_load(cluster_yml).get("upgrade_strategy") or {})
                .get("node_drain_input", {})
                .get("timeout", DEFAULT_DRAIN_TIMEOUT)
            )
            drain(workers, workdir / "kube_config_cluster.yml", int(timeout), workdir, redact)

        rke = shutil.which("rke") or "rke"
        log("running `rke up --config cluster.yml`")
        rc, tail = stream([rke, "up", "--config", "cluster.yml"], workdir, redact)
        if rc != 0:
            raise RunnerError(
                f"`rke up` failed (exit {rc}); the previous state is kept. Last "
                f"{len(tail)} lines:\n" + "\n".join(tail)
            )
        try:
            rkestate = (workdir / "cluster.rkestate").read_text()
            kubeconfig = (workdir / "kube_config_cluster.yml").read_text()
        except OSError as err:
            raise RunnerError(
                f"`rke up` succeeded but wrote no {Path(err.filename).name}"
            ) from None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        os.umask(old_umask)
    out = result_json(rkestate, kubeconfig, cluster_yml, node_ids)
    if len(out) + len("PULUMI_COMMAND_STDOUT=") > ENV_STRING_LIMIT * 0.9:
        log(
            f"WARNING: the state is {len(out)} bytes, close to Linux's {ENV_STRING_LIMIT}-byte "
            "limit for one environment variable; the next update may fail to start."
        )
    return out


def extract(directory: Path, stdout_json: str) -> None:
    """Write a saved stdout back as files for manual ``rke`` commands (0700 dir, 0600 files)."""
    previous = parse_previous(stdout_json)
    directory.mkdir(mode=0o700, parents=True, exist_ok=False)
    assert previous.rkestate is not None
    _write(directory / "cluster.rkestate", previous.rkestate)
    _write(directory / "cluster.yml", previous.cluster_yml or "")
    _write(directory / "kube_config_cluster.yml", previous.kubeconfig or "")


def main(argv: list[str]) -> int:
    usage = "usage: python -m rke.runner up | delete | extract DIR < stdout.json"
    if not argv or argv[0] not in ("up", "delete", "extract"):
        print(usage, file=sys.stderr)
        return 2
    try:
        if argv[0] == "delete":
            print(DELETE_NOTICE, file=sys.stderr)
        elif argv[0] == "extract":
            if len(argv) != 2:
                print(usage, file=sys.stderr)
                return 2
            extract(Path(argv[1]), sys.stdin.read())
        else:
            print(up(os.environ), flush=True)
    except RunnerError as err:
        print(f"[rke-runner] ERROR: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Stand-in for the ``command`` provider plugin (pulumi-command v1.2.1), which the Go module
proxy here does not serve: ``command:local:Command`` and ``command:remote:Command``.

Behaviour follows pulumi/pulumi-command v1.2.1 (commit 7f3eb6f), provider/pkg/provider/:

- ``common/inputs.go`` ``ResourceInputs``: only ``triggers`` carries
  ``provider:"replaceOnChanges"``, so a change of ``triggers`` replaces and any other input
  change is an update (pulumi-go-provider's ``infer`` derives Diff from those tags).
- ``local/commandController.go`` / ``remote/commandController.go``: ``Create`` returns the
  inputs as state with the id ``<name><8 hex>`` (``resource.NewUniqueHex(name, 8, 0)``) and,
  in a preview, runs nothing; ``Update`` runs ``update``, or ``create`` when there is no
  ``update``, keeping the old stdout/stderr in a preview; ``Delete`` runs the old state's
  ``delete`` (nothing when there is none).
- ``local/commandOutputs.go`` ``run``: ``/bin/sh -c <command>`` (or ``interpreter`` + the
  command), in ``dir`` (default: the provider's working directory), with the provider's
  environment plus ``environment`` plus ``PULUMI_COMMAND_STDOUT``/``_STDERR`` from the
  previous run unless ``addPreviousOutputInEnv`` is false, ``stdin`` when not empty;
  stdout/stderr lose one trailing newline; a failure names the command and its output.
  ``logging`` (default both streams) sends the output to the engine's log at info.
- ``remote/commandOutputs.go`` ``run`` and ``remote/connection.go``: over SSH to
  ``connection.host:port`` (defaults: user root, port 22, dialErrorLimit 10, perDialTimeout
  15), key auth with ``privateKey``, the host key pinned when ``hostKey`` is set and not
  checked otherwise (``SSHConfig``); ``environment`` is sent with the session (the server
  accepts it only with AcceptEnv). ``connection`` is a secret output (``provider:"secret"``).
  Here the SSH client is the system ``ssh`` (openssh-client): every option, the command
  and the environment go in a 0600 ssh_config file and the key in a 0600 file, both in a
  private temporary folder deleted afterwards, so nothing secret is on argv.

Not modelled: ``assetPaths``/``archivePaths``, ``command:remote:CopyToRemote``, the
``local:run``/``remote:run`` invokes, ``proxy`` and ``password`` connections (refused).

``python -m tests.engine.providers.command [engine address]`` serves it as a plugin;
``install_command_plugin`` installs it into a PULUMI_HOME like tests/engine/plugins.py does
for the cloud stand-ins.
"""

from __future__ import annotations

import base64
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Mapping
from concurrent import futures
from pathlib import Path
from threading import Event
from typing import Any

import grpc
from google.protobuf import empty_pb2
from pulumi.runtime._grpc_settings import _GRPC_CHANNEL_OPTIONS
from pulumi.runtime.proto import (
    engine_pb2,
    engine_pb2_grpc,
    plugin_pb2,
    provider_pb2,
    provider_pb2_grpc,
)

from scripts.offline import UNKNOWN, is_secret, reveal
from tests.engine.providers.server import from_struct, has_unknown, plugin_version, to_struct

PACKAGE = "command"
LOCAL = "command:local:Command"
REMOTE = "command:remote:Command"
ROOT = Path(__file__).resolve().parents[3]
VENV_PYTHON = ROOT / "venv" / "bin" / "python"
REPLACE_ON_CHANGES = ("triggers",)  # common/inputs.go ResourceInputs
# remote/connection.go Connection.Annotate: SetDefault for user, port, dialErrorLimit,
# perDialTimeout.
CONNECTION_DEFAULTS: dict[str, Any] = {
    "user": "root",
    "port": 22,
    "dialErrorLimit": 10,
    "perDialTimeout": 15,
}
DEFAULT_TIMEOUT_SECONDS = 3600  # a bound for a command without a customTimeouts option


class CommandError(Exception):
    """A command that failed: the engine shows the message against the resource."""


def _secret(value: Any) -> dict[str, Any]:
    from tests.engine.providers.server import secret

    return secret(value)


def _any_secret(value: Any) -> bool:
    if is_secret(value):
        return True
    if isinstance(value, dict):
        return any(_any_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_any_secret(v) for v in value)
    return False


def _logging(inputs: Mapping[str, Any]) -> tuple[bool, bool]:
    """(log stdout, log stderr): local/base.go Logging, default stdoutAndStderr."""
    mode = reveal(inputs.get("logging")) or "stdoutAndStderr"
    return mode in ("stdout", "stdoutAndStderr"), mode in ("stderr", "stdoutAndStderr")


def _run_env(inputs: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, str]:
    """``environment`` plus the previous run's output (``addPreviousOutputInEnv``)."""
    env = {str(k): str(v) for k, v in (reveal(inputs.get("environment")) or {}).items()}
    if reveal(inputs.get("addPreviousOutputInEnv")) is not False:
        for key, name in (("stdout", "PULUMI_COMMAND_STDOUT"), ("stderr", "PULUMI_COMMAND_STDERR")):
            value = reveal(previous.get(key))
            if isinstance(value, str) and value and value != UNKNOWN:
                env[name] = value
    return env


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _ssh_config_value(value: str) -> str:
    if any(c in value for c in "\n\r"):
        raise CommandError("an SSH option value cannot hold a line break")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ssh_argv(
    connection: Mapping[str, Any], command: str, env: Mapping[str, str], folder: Path
) -> list[str]:
    """``ssh -F <config> target``: the connection, the command and the environment are in
    the config file (0600), the key in its own 0600 file; argv holds no secret."""
    for unsupported in ("proxy", "password", "privateKeyPassword"):
        if connection.get(unsupported) is not None:
            raise CommandError(f"the command stand-in does not model connection.{unsupported}")
    conn: dict[str, Any] = CONNECTION_DEFAULTS | {
        k: v for k, v in connection.items() if v is not None
    }
    attempts = int(conn["dialErrorLimit"])
    lines = [
        "Host target",
        f"  HostName {_ssh_config_value(str(conn['host']))}",
        f"  Port {int(conn['port'])}",
        f"  User {_ssh_config_value(str(conn['user']))}",
        "  BatchMode yes",
        "  IdentitiesOnly yes",
        # a bounded dial: dialErrorLimit attempts (-1, unlimited upstream, is capped here)
        f"  ConnectionAttempts {attempts if 0 < attempts <= 100 else 100}",
        f"  ConnectTimeout {int(conn['perDialTimeout']) or 15}",
        # ssh_config is line based: the command travels base64-encoded and the remote
        # login shell runs it with sh (upstream session.Run hands it to that shell itself)
        f'  RemoteCommand sh -c "$(echo {_b64(command)} | base64 -d)"',
    ]
    key = conn.get("privateKey")
    if key:
        key_file = folder / "id"
        key_file.touch(mode=0o600)
        key_file.write_text(str(key).rstrip("\n") + "\n")
        lines.append(f"  IdentityFile {_ssh_config_value(str(key_file))}")
    host_key = conn.get("hostKey")
    known_hosts = folder / "known_hosts"
    if host_key:  # connection.go SSHConfig: ssh.FixedHostKey, only that key's algorithm
        host = str(conn["host"])
        pattern = host if int(conn["port"]) == 22 else f"[{host}]:{int(conn['port'])}"
        known_hosts.write_text(f"{pattern} {host_key.strip()}\n")
        lines += [
            "  StrictHostKeyChecking yes",
            f"  HostKeyAlgorithms {host_key.split()[0]}",
        ]
    else:  # ssh.InsecureIgnoreHostKey
        lines.append("  StrictHostKeyChecking no")
    lines.append(f"  UserKnownHostsFile {_ssh_config_value(str(known_hosts))}")
    for name, value in env.items():
        if name in ("PULUMI_COMMAND_STDOUT", "PULUMI_COMMAND_STDERR") and "\n" in value:
            # upstream sets the previous output optimistically and only warns when the
            # server refuses it (remote/commandOutputs.go run, logAndWrapSetenvErr at
            # diag.Warning); Debian's sshd (AcceptEnv LANG LC_*) refuses it anyway, and a
            # multi-line value (a kubeconfig) cannot go into the line-based ssh_config
            continue
        lines.append(f"  SetEnv {name}={_ssh_config_value(value)}")
    config = folder / "ssh_config"
    config.touch(mode=0o600)
    config.write_text("\n".join(lines) + "\n")
    return ["ssh", "-F", str(config), "-T", "target"]


class CommandProvider(provider_pb2_grpc.ResourceProviderServicer):
    """The ResourceProvider service for ``command``; ``engine`` is the engine's address
    (the plugin's argument), where the command's output is logged."""

    def __init__(self, engine: str | None = None) -> None:
        self.version = plugin_version(PACKAGE)
        self._engine = engine_pb2_grpc.EngineStub(grpc.insecure_channel(engine)) if engine else None

    # --- plugin and configuration ---

    def Handshake(self, request: Any, context: Any) -> Any:
        return provider_pb2.ProviderHandshakeResponse(accept_secrets=True, accept_resources=True)

    def GetPluginInfo(self, request: Any, context: Any) -> Any:
        return plugin_pb2.PluginInfo(version=self.version)

    def GetSchema(self, request: Any, context: Any) -> Any:
        return provider_pb2.GetSchemaResponse(schema='{"name": "command", "resources": {}}')

    def CheckConfig(self, request: Any, context: Any) -> Any:
        return provider_pb2.CheckResponse(inputs=request.news)

    def DiffConfig(self, request: Any, context: Any) -> Any:
        return provider_pb2.DiffResponse(changes=provider_pb2.DiffResponse.DIFF_NONE)

    def Configure(self, request: Any, context: Any) -> Any:
        return provider_pb2.ConfigureResponse(
            acceptSecrets=True, supportsPreview=True, acceptResources=True
        )

    def Cancel(self, request: Any, context: Any) -> Any:
        return empty_pb2.Empty()

    # --- resources ---

    def Check(self, request: Any, context: Any) -> Any:
        news = from_struct(request.news)
        if request.type == REMOTE:
            connection = news.get("connection")
            wrapped = is_secret(connection)
            plain = reveal(connection) if wrapped else connection
            # in a preview the connection, or its host, may be unknown: checked later
            if plain is None or (isinstance(plain, dict) and "host" not in plain):
                return provider_pb2.CheckResponse(
                    failures=[
                        provider_pb2.CheckFailure(property="connection", reason="missing host")
                    ]
                )
            if isinstance(plain, dict):  # infer applies the schema's defaults
                plain = {k: v for k, v in CONNECTION_DEFAULTS.items() if k not in plain} | plain
                news["connection"] = _secret(plain) if wrapped else plain
        elif request.type != LOCAL:
            return provider_pb2.CheckResponse(
                failures=[provider_pb2.CheckFailure(reason=f"unknown type {request.type}")]
            )
        return provider_pb2.CheckResponse(inputs=to_struct(news))

    def Diff(self, request: Any, context: Any) -> Any:
        olds = from_struct(request.old_inputs) or from_struct(request.olds)
        news = from_struct(request.news)
        # ignoreChanges: the engine has already put the old values into ``news``
        # (pkg/v3 resource/deploy/step_generator.go processIgnoreChanges)
        changed = [
            k
            for k in sorted(set(olds) | set(news))
            if reveal(olds.get(k)) != reveal(news.get(k)) or has_unknown(news.get(k))
        ]
        replaces = [k for k in changed if k in REPLACE_ON_CHANGES]
        kind = provider_pb2.PropertyDiff
        return provider_pb2.DiffResponse(
            changes=provider_pb2.DiffResponse.DIFF_SOME
            if changed
            else provider_pb2.DiffResponse.DIFF_NONE,
            diffs=changed,
            replaces=replaces,
            detailedDiff={
                k: kind(kind=kind.UPDATE_REPLACE if k in replaces else kind.UPDATE, inputDiff=True)
                for k in changed
            },
            hasDetailedDiff=True,
        )

    def Create(self, request: Any, context: Any) -> Any:
        inputs = from_struct(request.properties)
        name = str(request.name or request.urn.rsplit("::", 1)[-1])
        id_ = f"{name}{secrets.token_hex(4)}"
        if request.preview:  # nothing runs; what it would print is unknown
            state = inputs | {"stdout": UNKNOWN, "stderr": UNKNOWN}
        else:
            state = self._guarded(
                context, lambda: self._ran(request, inputs, {}, inputs.get("create"))
            )
        return provider_pb2.CreateResponse(id=id_, properties=to_struct(self._wrap(state)))

    def Update(self, request: Any, context: Any) -> Any:
        olds, news = from_struct(request.olds), from_struct(request.news)
        previous: dict[str, Any] = {k: olds[k] for k in ("stdout", "stderr") if k in olds}
        if request.preview:
            state = news | previous
        else:
            command = news.get("update") if news.get("update") is not None else news.get("create")
            state = self._guarded(context, lambda: self._ran(request, news, previous, command))
        return provider_pb2.UpdateResponse(properties=to_struct(self._wrap(state)))

    def Delete(self, request: Any, context: Any) -> Any:
        state = from_struct(request.properties)
        if state.get("delete") is not None:
            self._guarded(context, lambda: self._ran(request, state, state, state["delete"]))
        return empty_pb2.Empty()

    def Read(self, request: Any, context: Any) -> Any:
        # pulumi-go-provider infer: a resource without a Read keeps its state on refresh.
        return provider_pb2.ReadResponse(
            id=request.id, properties=request.properties, inputs=request.inputs
        )

    # --- running ---

    @staticmethod
    def _guarded(context: Any, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return work()
        except CommandError as err:
            context.abort(grpc.StatusCode.UNKNOWN, str(err))
        except Exception:  # the engine reports it against the resource
            context.abort(grpc.StatusCode.UNKNOWN, traceback.format_exc())
        raise AssertionError("unreachable")  # context.abort raises

    def _wrap(self, state: dict[str, Any]) -> dict[str, Any]:
        """Outputs depend on every input (infer's default wiring): a secret input makes
        stdout and stderr secret; ``connection`` is always secret (remote/command.go)."""
        out = dict(state)
        if _any_secret({k: v for k, v in state.items() if k not in ("stdout", "stderr")}):
            for key in ("stdout", "stderr"):
                if key in out and not is_secret(out[key]) and out[key] != UNKNOWN:
                    out[key] = _secret(out[key])
        if "connection" in out and not is_secret(out["connection"]):
            out["connection"] = _secret(out["connection"])
        return out

    def _ran(
        self,
        request: Any,
        inputs: dict[str, Any],
        previous: Mapping[str, Any],
        command: Any,
    ) -> dict[str, Any]:
        """``inputs`` with the stdout/stderr of running ``command`` (none: the previous)."""
        state = inputs | {k: previous[k] for k in ("stdout", "stderr") if k in previous}
        command = reveal(command)
        if command is None:
            return state
        env = _run_env(inputs, previous)
        stdin = reveal(inputs.get("stdin")) or None
        timeout = float(request.timeout) if getattr(request, "timeout", 0) else None
        with tempfile.TemporaryDirectory(prefix="command-") as folder:
            if request.type == REMOTE:
                argv = _ssh_argv(reveal(inputs["connection"]), command, env, Path(folder))
                run_env, cwd = dict(os.environ), None
            else:
                interpreter = reveal(inputs.get("interpreter")) or ["/bin/sh", "-c"]
                argv = [*interpreter, command]
                run_env, cwd = dict(os.environ) | env, reveal(inputs.get("dir")) or None
            try:
                done = subprocess.run(
                    argv,
                    input=stdin,
                    cwd=cwd,
                    env=run_env,
                    capture_output=True,
                    text=True,
                    timeout=timeout or DEFAULT_TIMEOUT_SECONDS,
                    check=False,
                )
            except subprocess.TimeoutExpired as err:
                raise CommandError(
                    f"running {command!r}: timed out after {err.timeout} s"
                ) from None
        log_out, log_err = _logging(inputs)
        self._log(request.urn, (done.stdout if log_out else "") + (done.stderr if log_err else ""))
        if done.returncode != 0:
            raise CommandError(
                f"exit status {done.returncode}: running {command!r}:\n{done.stdout}{done.stderr}"
            )
        return state | {
            "stdout": done.stdout.removesuffix("\n"),
            "stderr": done.stderr.removesuffix("\n"),
        }

    def _log(self, urn: str, text: str) -> None:
        """util.LogOutput: each line to the engine's log at info, against the resource."""
        if self._engine is None or not text:
            return
        for line in text.splitlines():
            self._engine.Log(engine_pb2.LogRequest(severity=engine_pb2.INFO, message=line, urn=urn))


# --- the plugin ---------------------------------------------------------------------------


def serve(engine: str | None = None) -> None:
    """Serve on a free loopback port and print it (the engine's plugin protocol)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=_GRPC_CHANNEL_OPTIONS)
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(CommandProvider(engine), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    Event().wait()


def launcher_text() -> str:
    root, python = shlex.quote(str(ROOT)), shlex.quote(str(VENV_PYTHON))
    return (
        "#!/bin/sh\n"
        "# Stand-in provider plugin for command (tests/engine/providers/command.py).\n"
        f'PYTHONPATH={root} exec {python} -m tests.engine.providers.command "$@"\n'
    )


def install_command_plugin(pulumi: Path, env: dict[str, str], work: Path) -> None:
    """``pulumi plugin install resource command <version> --file <launcher>`` into the
    PULUMI_HOME of ``env`` (the version the venv's pulumi_command asks for)."""
    work.mkdir(parents=True, exist_ok=True)
    launcher = work / f"pulumi-resource-{PACKAGE}"
    launcher.write_text(launcher_text())
    launcher.chmod(0o755)
    command = [str(pulumi), "plugin", "install", "resource", PACKAGE, plugin_version(PACKAGE)]
    done = subprocess.run(
        [*command, "--file", str(launcher)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed:\n{done.stdout}{done.stderr}")


if __name__ == "__main__":
    serve(sys.argv[1] if len(sys.argv) > 1 else None)

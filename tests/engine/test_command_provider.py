"""The ``command`` stand-in (tests/engine/providers/command.py) called over gRPC as the
engine calls it: what runs, when, with what, and what it returns, per pulumi-command
v1.2.1 (local/commandController.go, local/commandOutputs.go, common/inputs.go,
remote/connection.go)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from scripts.offline import UNKNOWN, is_secret, reveal
from tests.engine.providers.command import LOCAL, REMOTE, CommandProvider, _ssh_argv
from tests.engine.providers.server import from_struct, secret, to_struct
from tests.engine.tools import engine_env, pulumi_binary

Stub = provider_pb2_grpc.ResourceProviderStub


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(CommandProvider(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield Stub(channel)
    channel.close()
    server.stop(None)


def urn(type_: str, name: str) -> str:
    return f"urn:pulumi:test::multicloud::{type_}::{name}"


def create(
    stub: Stub, inputs: dict[str, Any], preview: bool = False, type_: str = LOCAL
) -> tuple[str, dict[str, Any]]:
    checked = stub.Check(
        provider_pb2.CheckRequest(urn=urn(type_, "c"), name="c", type=type_, news=to_struct(inputs))
    )
    assert not checked.failures, checked.failures
    done = stub.Create(
        provider_pb2.CreateRequest(
            urn=urn(type_, "c"), name="c", type=type_, properties=checked.inputs, preview=preview
        )
    )
    return done.id, from_struct(done.properties)


def update(
    stub: Stub, olds: dict[str, Any], news: dict[str, Any], preview: bool = False
) -> dict[str, Any]:
    done = stub.Update(
        provider_pb2.UpdateRequest(
            id="c1",
            urn=urn(LOCAL, "c"),
            name="c",
            type=LOCAL,
            olds=to_struct(olds),
            news=to_struct(news),
            old_inputs=to_struct({k: v for k, v in olds.items() if k not in ("stdout", "stderr")}),
            preview=preview,
        )
    )
    return from_struct(done.properties)


def test_create_runs_the_command_with_its_environment_stdin_and_dir(
    stub: Stub, tmp_path: Path
) -> None:
    id_, out = create(
        stub,
        {
            "create": 'echo "$GREETING $(cat) $(pwd)"; echo oops >&2',
            "environment": {"GREETING": "hello"},
            "stdin": "from-stdin",
            "dir": str(tmp_path),
        },
    )
    assert id_.startswith("c") and len(id_) == 1 + 8  # NewUniqueHex(name, 8, 0)
    assert out["stdout"] == f"hello from-stdin {tmp_path}"  # one trailing newline dropped
    assert out["stderr"] == "oops"


def test_a_preview_runs_nothing_and_its_output_is_unknown(stub: Stub, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    _, out = create(stub, {"create": f"touch {marker}"}, preview=True)
    assert not marker.exists()
    assert out["stdout"] == UNKNOWN and out["stderr"] == UNKNOWN


def test_only_triggers_replace_other_changes_update(stub: Stub) -> None:
    olds = {"create": "echo a", "triggers": ["vm-1"]}

    def diff(news: dict[str, Any]) -> provider_pb2.DiffResponse:
        return stub.Diff(
            provider_pb2.DiffRequest(
                id="c1",
                urn=urn(LOCAL, "c"),
                type=LOCAL,
                olds=to_struct(olds),
                old_inputs=to_struct(olds),
                news=to_struct(news),
            )
        )

    assert diff(olds).changes == provider_pb2.DiffResponse.DIFF_NONE
    changed = diff(olds | {"create": "echo b"})
    assert changed.changes == provider_pb2.DiffResponse.DIFF_SOME
    assert list(changed.diffs) == ["create"] and not changed.replaces
    replaced = diff(olds | {"triggers": ["vm-2"]})
    assert list(replaced.replaces) == ["triggers"]


def test_an_update_without_update_runs_create_with_the_previous_output(stub: Stub) -> None:
    _, first = create(stub, {"create": "echo one"})
    news = {"create": 'echo "two after $PULUMI_COMMAND_STDOUT"'}
    assert update(stub, first, news, preview=True)["stdout"] == "one"  # nothing ran
    assert update(stub, first, news)["stdout"] == "two after one"
    with_update = news | {"update": "echo updated"}
    assert update(stub, first, with_update)["stdout"] == "updated"
    no_previous = news | {"addPreviousOutputInEnv": False}
    assert update(stub, first, no_previous)["stdout"] == "two after "


def test_delete_runs_the_old_states_delete(stub: Stub, tmp_path: Path) -> None:
    marker = tmp_path / "deleted"
    _, state = create(
        stub, {"create": "echo kept", "delete": f'echo "$PULUMI_COMMAND_STDOUT" > {marker}'}
    )
    stub.Delete(
        provider_pb2.DeleteRequest(
            id="c1", urn=urn(LOCAL, "c"), type=LOCAL, properties=to_struct(state)
        )
    )
    assert marker.read_text() == "kept\n"


def test_a_failing_command_fails_the_step_naming_it(stub: Stub) -> None:
    with pytest.raises(grpc.RpcError) as failed:
        create(stub, {"create": "echo to-stderr >&2; exit 3"})
    assert "exit status 3" in str(failed.value.details())
    assert "to-stderr" in str(failed.value.details())


def test_secret_inputs_make_the_output_secret(stub: Stub) -> None:
    _, out = create(stub, {"create": "echo $TOKEN", "environment": secret({"TOKEN": "s3cret"})})
    assert is_secret(out["stdout"]) and reveal(out["stdout"]) == "s3cret"


def test_remote_defaults_and_a_secret_connection(stub: Stub) -> None:
    _, out = create(
        stub, {"create": "true", "connection": {"host": "192.0.2.1"}}, preview=True, type_=REMOTE
    )
    assert is_secret(out["connection"])
    assert reveal(out["connection"]) == {
        "host": "192.0.2.1",
        "user": "root",
        "port": 22,
        "dialErrorLimit": 10,
        "perDialTimeout": 15,
    }
    assert out["stdout"] == UNKNOWN


def test_ssh_gets_the_key_and_command_from_private_files_not_argv(tmp_path: Path) -> None:
    key, host_key = "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret-key\n", "ssh-ed25519 AAAAhost"
    argv = _ssh_argv(
        {"host": "10.1.2.3", "port": 2222, "user": "rke", "privateKey": key, "hostKey": host_key},
        "echo secret-command",
        {"TOKEN": "secret-env"},
        tmp_path,
    )
    assert not any("secret" in arg for arg in argv)
    config = (tmp_path / "ssh_config").read_text()
    assert "secret-command" not in config  # base64 in RemoteCommand
    assert 'SetEnv TOKEN="secret-env"' in config and "HostKeyAlgorithms ssh-ed25519" in config
    assert (tmp_path / "known_hosts").read_text() == f"[10.1.2.3]:2222 {host_key}\n"
    for private in ("id", "ssh_config"):
        assert stat.S_IMODE(os.stat(tmp_path / private).st_mode) == 0o600
    # the real client parses the file as given (-G prints the resolved options, dials nothing)
    resolved = subprocess.run(
        [*argv[:-1], "-G", "target"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert "hostname 10.1.2.3" in resolved and "port 2222" in resolved and "user rke" in resolved


def test_the_real_cli_installs_the_stand_in(tmp_path: Path) -> None:
    from tests.engine.providers.command import install_command_plugin

    pulumi = pulumi_binary()
    env = engine_env(tmp_path / "home", tmp_path / "state")
    install_command_plugin(pulumi, env, tmp_path / "plugins")
    listed = subprocess.run(
        [str(pulumi), "plugin", "ls", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert '"name": "command"' in listed and '"version": "1.2.1"' in listed


PROGRAM = """\
import pulumi
from pulumi_command import local

config = pulumi.Config()
hello = local.Command(
    "hello",
    create='echo "hello $WHO"; echo to-stderr >&2',
    delete='echo "deleted after: $PULUMI_COMMAND_STDOUT" > deleted.txt',
    environment={"WHO": config.require("who")},
    triggers=[config.require("generation")],
)
pulumi.export("stdout", hello.stdout)
"""


def test_the_engine_runs_the_stand_in_through_a_lifecycle(tmp_path: Path) -> None:
    """Through the real engine: create runs `create`, an input change re-runs it as an
    update (no `update` command), a `triggers` change replaces, destroy runs `delete`."""
    from tests.engine.providers.command import install_command_plugin
    from tests.engine.tools import ROOT as REPO

    pulumi = pulumi_binary()
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(
        "name: command-stand-in\nruntime:\n  name: python\n  options:\n"
        f"    toolchain: pip\n    virtualenv: {REPO / 'venv'}\n"
    )
    (project / "__main__.py").write_text(PROGRAM)
    (tmp_path / "state").mkdir()
    env = engine_env(tmp_path / "home", tmp_path / "state")
    install_command_plugin(pulumi, env, tmp_path / "plugins")

    def run(*args: str) -> str:
        done = subprocess.run(
            [str(pulumi), *args, "--non-interactive"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"pulumi {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def stdout() -> str:
        return str(json.loads(run("stack", "output", "--json"))["stdout"])

    run("stack", "init", "t")
    run("config", "set", "who", "world")
    run("config", "set", "generation", "1")
    preview = json.loads(run("preview", "--json"))
    assert not (project / "deleted.txt").exists()
    assert [s["op"] for s in preview["steps"] if "::hello" in s["urn"]] == ["create"]

    printed = run("up", "--yes", "--skip-preview")
    assert stdout() == "hello world"
    assert "to-stderr" in printed  # logging: both streams go to the engine's log

    run("config", "set", "who", "again")
    preview = json.loads(run("preview", "--json"))
    assert [s["op"] for s in preview["steps"] if "::hello" in s["urn"]] == ["update"]
    run("up", "--yes", "--skip-preview")
    assert stdout() == "hello again"

    run("config", "set", "generation", "2")
    preview = json.loads(run("preview", "--json"))
    assert [s["op"] for s in preview["steps"] if "::hello" in s["urn"]] == ["replace"]

    run("destroy", "--yes", "--skip-preview")
    assert (project / "deleted.txt").read_text() == "deleted after: hello again\n"

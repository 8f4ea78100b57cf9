"""The real Pulumi engine runs a Python program end to end (`make tools`, docs/testing.md).

A one-resource program (a ``pulumi.dynamic`` resource) reading the stack's configuration
(a plain and a secret key) goes through `pulumi preview`,
`pulumi up`, `pulumi preview --expect-no-changes` and `pulumi destroy` with the CLI that
`make tools` builds, the project's venv and a file backend in a temporary folder. The
resource's provider runs in the engine's own dynamic-provider plugin
(pulumi-resource-pulumi-python) and leaves a file behind while it exists, so the test sees
what the engine did, not only what it printed. The wall time of each command is printed.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from tests.engine.tools import engine_env, pulumi_binary, python_project

PROGRAM = '''\
"""One dynamic-provider resource: a file in the project folder while it exists."""
from pathlib import Path

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider


class FileProvider(ResourceProvider):
    def create(self, props):
        Path(props["path"]).write_text(props["text"])
        return CreateResult(id_=props["path"], outs={**props, "size": len(props["text"])})

    def diff(self, _id, olds, news):
        changed = [k for k in ("path", "text") if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=changed)

    def delete(self, _id, props):
        Path(props["path"]).unlink()


class File(Resource):
    size: pulumi.Output[int]

    def __init__(self, name, path, text):
        super().__init__(FileProvider(), name, {"path": path, "text": text, "size": None})


config = pulumi.Config()
marker = File("marker", str(Path.cwd() / "marker.txt"), config.require("text"))
pulumi.export("size", marker.size)
pulumi.export("token", config.require_secret("token"))
'''


TEXT = "hello from the real engine"


def _project(folder: Path) -> None:
    python_project(folder, "engine-smoke", PROGRAM)


def test_preview_up_noop_destroy(tmp_path: Path) -> None:
    pulumi = pulumi_binary()
    project = tmp_path / "project"
    project.mkdir()
    _project(project)
    env = engine_env(tmp_path / "home", tmp_path / "state")
    (tmp_path / "state").mkdir()
    marker = project / "marker.txt"
    times: dict[str, float] = {}

    def run(*args: str) -> str:
        started = time.monotonic()
        done = subprocess.run(
            [str(pulumi), *args, "--non-interactive"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        times[" ".join(args)] = time.monotonic() - started
        assert done.returncode == 0, f"pulumi {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    run("stack", "init", "smoke")
    run("config", "set", "text", TEXT)
    run("config", "set", "--secret", "token", "canary-4f1c")

    preview = json.loads(run("preview", "--json"))
    planned = {(s["op"], s["urn"].rsplit("::", 1)[-1]) for s in preview["steps"]}
    assert ("create", "marker") in planned
    assert preview["changeSummary"] == {"create": 2}  # the stack and the file
    assert not marker.exists()  # a preview creates nothing

    run("up", "--yes")
    assert marker.read_text() == TEXT
    outputs = json.loads(run("stack", "output", "--json"))
    assert outputs == {"size": len(TEXT), "token": "[secret]"}
    outputs = json.loads(run("stack", "output", "--json", "--show-secrets"))
    assert outputs["token"] == "canary-4f1c"
    state = json.loads(run("stack", "export"))
    types = [r["type"] for r in state["deployment"]["resources"]]
    assert "pulumi-python:dynamic:Resource" in types

    run("preview", "--expect-no-changes")

    run("destroy", "--yes")
    assert not marker.exists()
    state = json.loads(run("stack", "export"))
    assert not state["deployment"].get("resources")

    print("\nreal engine wall times (s):")
    for command, seconds in times.items():
        print(f"  pulumi {command}: {seconds:.2f}")


def test_program_error_is_reported_once(tmp_path: Path) -> None:
    """A program that raises: the SDK prints the traceback and exits 32, and the language
    host tells the engine to stop without an error of its own (upstream Run's "bail"), so
    the user reads the program's error, not "program exited with non-zero exit code"."""
    pulumi = pulumi_binary()
    project = tmp_path / "project"
    project.mkdir()
    _project(project)
    (project / "__main__.py").write_text('raise ValueError("boom-4f1c")\n')
    (tmp_path / "state").mkdir()
    env = engine_env(tmp_path / "home", tmp_path / "state")
    for args in (["stack", "init", "smoke"], ["preview"]):
        done = subprocess.run(
            [str(pulumi), *args, "--non-interactive"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert done.returncode != 0
    assert "ValueError: boom-4f1c" in done.stdout
    assert "non-zero exit code" not in done.stdout + done.stderr

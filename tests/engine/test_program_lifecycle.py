"""Scenario 7 (issue 19): after `pulumi up` of a new prod stack with RKE and with RKE2
(booted fake VMs, tests/engine/harness.py), through the real engine:

- `pulumi refresh` changes nothing: the stand-ins' Read finds every resource as the update
  left it (the fake cloud sees only reads, the fake Central only GETs), the state after it
  is the state before it, and `pulumi preview --expect-no-changes` passes. One exception,
  bounded: the program's StackReferences to its own stack (the chart versions,
  components/services/cluster_services.py; the boot record, components/boot_outputs.py;
  RKE2's join record, rke2/join.py) hold the
  outputs the stack had when the update started, and a refresh reads the new ones (so
  drift.yml's `refresh --preview-only --expect-no-changes` reports them after an update
  that changed the outputs, unless they are excluded, as drift.yml's command does: it
  passes right after the first update);
- with RKE, `pulumi destroy` stops at the `protect`ed RKE command (rke/component.py) with
  the engine's message naming it and the `pulumi state unprotect` to run, having deleted
  nothing (its preview fails before any step); then the steps of docs/recovery.md,
  "Removing the RKE command on purpose", run as written, tear everything down: no cloud
  resource, no Central network or member, an empty state, and `rke remove` given the
  cluster's cluster.yml from the saved state;
- with RKE2 nothing is protected (docs/rke2.md: `pulumi destroy` removes VMs, members and
  network): `pulumi destroy` completes.

Wall times are printed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.offline import PROJECT
from tests.engine.harness import COMMAND_TIMEOUT, Result, Workspace
from tests.engine.providers.cloud import VM_TYPES, FakeCloud
from tests.engine.test_program_up import _needs_sshd
from tests.engine.tools import ROOT
from tests.support.tools import debian_tool

RKE2 = {f"{PROJECT}:engine": "rke2", f"{PROJECT}:kubernetesVersion": ""}
CASES: dict[str, tuple[str, dict[str, str]]] = {
    "prod": ("prod", {}),
    "prod-rke2": ("prod", RKE2),
}
STACK_REFERENCE = "pulumi:pulumi:StackReference"
RKE_COMMAND_URN = (
    "urn:pulumi:{stack}::multicloud::multicloud:rke:RkeCluster"
    "$command:local:Command::cluster-rke-up"
)


def _resources(export: dict[str, Any]) -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = export["deployment"].get("resources") or []
    return resources


def _by_urn(export: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """What a refresh may change, per resource: id, inputs, outputs (secrets shown)."""
    return {r["urn"]: (r.get("id"), r.get("inputs"), r.get("outputs")) for r in _resources(export)}


def _teardown_script(stack: str) -> str:
    """The shell block of docs/recovery.md, "Removing the RKE command on purpose", as
    written, with the stack's name for ``<stack>``."""
    text = (ROOT / "docs" / "recovery.md").read_text()
    section = text.split("## Removing the RKE command on purpose", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```sh\n(.*?)```", section, re.S)
    assert found, "docs/recovery.md lost its teardown steps"
    return found.group(1).replace("<stack>", stack)


def _drift_command() -> list[str]:
    """drift.yml's `pulumi refresh ...` as its step runs it, without `--stack "$STACK"`
    (the workspace's stack is selected) and the shell's redirections."""
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "drift.yml").read_text())
    (script,) = [
        step["run"]
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if "pulumi refresh --stack" in step.get("run", "")
    ]
    line = script[script.index("pulumi refresh --stack") :].replace("\\\n", " ")
    args = shlex.split(line[: line.index("2>&1")])
    stack = args.index("--stack")
    return args[1:stack] + args[stack + 2 :]


@pytest.mark.parametrize("case", sorted(CASES))
def test_refresh_changes_nothing_and_destroy_follows_the_docs(tmp_path: Path, case: str) -> None:
    _needs_sshd()
    stack, config = CASES[case]
    rke2 = bool(config)
    if not rke2 and debian_tool("jq", "jq") is None:
        pytest.skip("jq is not installed (apt-get install jq): docs/recovery.md's steps use it")
    with Workspace(tmp_path, stack, config=config, nodes=True) as ws:
        assert ws.central is not None and ws.rke is not None
        cloud = FakeCloud(ws.folder / "cloud")
        up = ws.up()
        outputs = ws.run("stack", "output", "--json").json()
        before = ws.run("stack", "export", "--show-secrets").json()
        seen, asked = len(cloud.events()), len(ws.central.requests)
        drift = ws.run("refresh", "--preview-only", "--json")
        nightly = ws.run(*_drift_command(), check=False)
        refresh = ws.refresh()
        after = ws.run("stack", "export", "--show-secrets").json()
        preview = ws.run("preview", "--expect-no-changes")
        refresh_calls = {e.method for e in cloud.events()[seen:]}
        refresh_requests = {method for method, _ in ws.central.requests[asked:]}
        vms = [r for r in cloud.resources().values() if r["type"] in VM_TYPES]
        assert len(vms) == 7 and ws.central.members

        # `pulumi refresh` changes nothing (the self-references aside, above)
        references = {r["urn"] for r in _resources(before) if r["type"] == STACK_REFERENCE}
        assert len(references) == (3 if rke2 else 2)
        summary = drift.json()["changeSummary"]
        assert set(summary) <= {"same", "update"}
        assert summary.get("update", 0) <= len(references)
        assert refresh_calls == {"Read"} and refresh_requests == {"GET"}
        # the first update changed the outputs its self-references read: without the
        # exclusion the nightly check would report drift after every such update
        assert summary.get("update", 0) >= 1
        assert nightly.returncode == 0, f"drift.yml's refresh reports drift:\n{nightly.stdout}"
        old, new = _by_urn(before), _by_urn(after)
        assert set(old) == set(new)
        assert {urn for urn in old if old[urn] != new[urn]} <= references

        seen, asked = len(cloud.events()), len(ws.central.requests)
        if rke2:
            # nothing protected: destroy removes VMs, members and network (docs/rke2.md)
            destroyed = ws.destroy()
            teardown = destroyed
        else:
            destroyed = ws.destroy("--json", check=False)
            stopped_calls = [e.method for e in cloud.events()[seen:]]
            stopped_requests = {method for method, _ in ws.central.requests[asked:]}
            kept = ws.export()
            teardown = _follow_recovery_doc(ws, stack)
        final = ws.export()
        left_in_cloud = cloud.resources()
        networks, members = dict(ws.central.networks), dict(ws.central.members)
        removes = [c for c in ws.rke.calls() if c["tool"] == "rke" and c["args"][:1] == ["remove"]]
        # the node emulator logs each `etcdctl member remove` (tests/engine/providers/nodes.py)
        member_removals = [
            line
            for log in (ws.folder / "cloud" / "nodes").glob("*/docker.jsonl")
            for line in log.read_text().splitlines()
        ]
    print(
        f"\n{case}: up {up.seconds:.1f} s, refresh --preview-only {drift.seconds:.1f} s, "
        f"refresh {refresh.seconds:.1f} s, preview --expect-no-changes {preview.seconds:.1f} s, "
        f"destroy {destroyed.seconds:.1f} s, teardown {teardown.seconds:.1f} s"
    )

    if not rke2:
        # destroy stops at the protected RKE command, says so and how to go on, deletes nothing
        urn = RKE_COMMAND_URN.format(stack=stack)
        assert destroyed.returncode != 0
        # `destroy --json`: the preview's report (an update would stream events after it)
        report, _ = json.JSONDecoder().raw_decode(destroyed.stdout)
        messages = [d["message"] for d in report.get("diagnostics", []) if d.get("urn") == urn]
        assert len(messages) == 1, destroyed.stdout[-3000:]
        assert f'resource "{urn}" cannot be deleted\nbecause it is protected' in messages[0]
        assert f"pulumi state unprotect '{urn}'" in messages[0]
        assert stopped_calls == [] and stopped_requests <= {"GET"}
        assert _by_urn(kept).keys() == _by_urn(after).keys()
        # the docs' `rke remove` got the cluster's cluster.yml, extracted from the saved state
        assert teardown.returncode == 0, teardown.stdout + teardown.stderr
        (remove,) = removes
        addresses = sorted(n["address"] for n in remove["config"]["nodes"])
        assert addresses == sorted(row["sshAddress"] for row in outputs["nodes"])
        # no master's etcd-leave ran: each would remove its member as the VMs go and refuse once
        # the others lost quorum, keeping the VMs (rke/etcd_leave.py); the docs forget them
        assert member_removals == []
        assert not (ws.project / "stack.json").exists()
        assert not (ws.project / "rke-teardown").exists()
    # everything is gone: cloud, Central, state
    assert left_in_cloud == {}, teardown.stdout[-6000:] + teardown.stderr[-3000:]
    assert networks == {} and members == {}
    assert _resources(final) == []


def _follow_recovery_doc(ws: Workspace, stack: str) -> Result:
    """Run docs/recovery.md's teardown block as written, in the project folder, as a user
    with the venv active would: `pulumi` (the workspace's, in its namespace), `python` (the
    venv's), `jq`, and tests/support/fake_rke.py's `rke`. `pulumi destroy` asks to confirm; the
    CLI's
    PULUMI_SKIP_CONFIRMATIONS answers it as `--yes` does (pulumi sdk/v3 go/common/env/env.go
    ``SkipConfirmations``). The fake `rke` records `remove` and refuses it (it models `up`):
    the script goes on to its last line, as a shell does."""
    env = dict(ws.env)
    env["PATH"] = os.pathsep.join([str(ROOT / "venv" / "bin"), env["PATH"]])
    env["PULUMI_SKIP_CONFIRMATIONS"] = "true"
    started = time.monotonic()
    done = subprocess.run(
        [*ws.netns.run_prefix, "sh", "-c", _teardown_script(stack)],
        cwd=ws.project,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    return Result(("sh",), done.returncode, done.stdout, done.stderr, time.monotonic() - started)

"""Scenario 9 (issue 19): what a reviewer reads about a change comes from the real
`pulumi preview` (tests/engine/harness.py: the real CLI, the stand-in providers, the fake
Central) of a new prod stack: `make preview`'s output, and the preview workflow's three
views (.github/workflows/preview.yml): the job summary and the pull-request comment that
pulumi/actions writes from the `preview` job's output, and the `render` job's summary
(scripts/render_summary.py).

How pulumi/actions v7 runs the preview and writes both views (pulumi/actions
``src/main.ts`` ``runAction``, ``src/libs/summary.ts`` ``handleSummaryMessage``,
``src/libs/pr.ts`` ``handlePullRequestMessage``, ``src/config.ts`` ``makeConfig``): the
Node Automation API's ``Stack.preview`` (pulumi/pulumi ``sdk/nodejs/automation/stack.ts``)
runs ``pulumi preview [--diff] [--parallel N] [--color C] --exec-kind auto.local
--event-log FILE --stack S --non-interactive`` with ``PULUMI_DEBUG_COMMANDS=true``
(``runPulumiCmd``; the CLI only accepts ``--event-log`` then: pkg/cmd/pulumi/operations/
preview.go). Its stdout, ANSI codes stripped, is the whole content of the job summary (in
a ``diff`` code block, cut to 1,000,000 bytes) and of the comment (cut to 64,000
characters: from the end, or from the front with ``always-include-summary``); its stderr
only becomes a warning annotation of the run. With ``--diff`` the engine writes every
diagnostic, the program's warnings included, to stderr (pkg/backend/display/diff.go
``ShowDiffEvents``), so they are in the annotation and not in the comment.

One workspace, one preview per view (about 10 s each for prod) and one render per module.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.offline import PROJECT
from scripts.render_summary import checksum_warnings, image_warnings
from scripts.versions import warnings as version_warnings
from tests.engine.harness import Result, Workspace, canary
from tests.engine.tools import ROOT

STACK = "prod"
WORKFLOW = ROOT / ".github" / "workflows" / "preview.yml"
VM_TYPES = ("openstack:compute/instance:Instance", "digitalocean:index/droplet:Droplet")
# pulumi/actions' limits (src/libs/summary.ts, src/libs/pr.ts)
SUMMARY_MAX_BYTES = 1_000_000
COMMENT_MAX_CHARS = 64_000
# pulumi/actions src/libs/utils.ts stripAnsiControlCodes: CSI sequences
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# one line of the "Resources:" block (pkg/backend/display/diff.go renderSummaryEvent:
# four spaces, the step's two-character prefix, the count, "to " in a preview, the op)
_CHANGE_LINE = re.compile(r"^    (?:..)?(\d+) to ([a-z-]+)$")


@dataclass
class Preview:
    result: Result
    events: list[dict[str, Any]]

    def summary_event(self) -> dict[str, Any]:
        (summary,) = (e["summaryEvent"] for e in self.events if "summaryEvent" in e)
        return summary

    def steps(self) -> list[dict[str, Any]]:
        return [e["resourcePreEvent"]["metadata"] for e in self.events if "resourcePreEvent" in e]

    def warnings(self) -> list[str]:
        return [
            e["diagnosticEvent"]["message"].strip()
            for e in self.events
            if e.get("diagnosticEvent", {}).get("severity") == "warning"
        ]


def preview_step() -> dict[str, Any]:
    """The ``pulumi/actions`` step of preview.yml's ``preview`` job."""
    doc = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    (step,) = (s for s in doc["jobs"]["preview"]["steps"] if "pulumi/actions@" in s.get("uses", ""))
    return step


def action_preview_args(inputs: dict[str, Any], event_log: Path) -> list[str]:
    """The CLI arguments pulumi/actions passes for the step's inputs (defaults from its
    action.yml: parallel 2147483647, color auto)."""
    # The inputs this mapping knows; another one may change the command: extend it first.
    known = {"command", "stack-name", "pulumi-version", "diff", "comment-on-pr"}
    known |= {"edit-pr-comment", "comment-on-summary", "always-include-summary"}
    assert set(inputs) <= known, f"pulumi/actions inputs not modelled here: {set(inputs) - known}"
    assert inputs["command"] == "preview"
    args = ["preview"]
    if inputs.get("diff"):
        args.append("--diff")
    args += ["--parallel", "2147483647", "--color", "auto"]
    return [*args, "--exec-kind", "auto.local", "--event-log", str(event_log), "--stack", STACK]


def job_summary(stdout: str) -> str:
    """The job summary pulumi/actions writes (summary.ts ``handleSummaryMessage``)."""
    text = re.sub(r"^ ", "&nbsp;", _ANSI.sub("", stdout), flags=re.M)
    data = text.encode()
    heading = f"Pulumi {PROJECT}/{STACK} results"
    if len(data) > SUMMARY_MAX_BYTES:
        text = data[:SUMMARY_MAX_BYTES].decode(errors="ignore")
        heading += " :warning: **Warn**: The output was too long and trimmed."
    return f"# {heading}\n```diff\n{text}\n```\n"


def pr_comment(stdout: str, always_include_summary: bool) -> str:
    """The pull-request comment pulumi/actions writes (pr.ts ``handlePullRequestMessage``)."""
    text = _ANSI.sub("", stdout)
    over = len(text) - COMMENT_MAX_CHARS
    note = ""
    if over > 0:
        text = text[over:] if always_include_summary else text[:COMMENT_MAX_CHARS]
        note = ":warning: **Warn**: The output was too long and trimmed"
        note += " from the front." if always_include_summary else "."
    heading = f"#### :tropical_drink: `preview` on {PROJECT}/{STACK}"
    details = (
        f"<details>\n<summary>Pulumi report</summary>\n{note}\n<pre>\n{text}\n</pre>\n</details>"
    )
    return f"{heading}\n\n{details}"


def resource_changes(text: str) -> dict[str, int]:
    """The counts of the last "Resources:" block of the CLI's text, by op (none: empty)."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "Resources:"]
    changes: dict[str, int] = {}
    if not starts:
        return changes
    for line in lines[starts[-1] + 1 :]:
        found = _CHANGE_LINE.match(line.replace("&nbsp;", " ", 1))
        if not found:
            break
        changes[found.group(2)] = int(found.group(1))
    return changes


def canaries(ws: Workspace) -> list[str]:
    return [canary(key.split(":", 1)[1]) for key in ws.secret_keys]


# --- one workspace, each view's preview once --------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    with Workspace(tmp_path_factory.mktemp("preview-summary"), STACK) as ws:
        yield ws


@pytest.fixture(scope="module")
def workflow_preview(workspace: Workspace) -> Preview:
    """`pulumi preview` as preview.yml's pulumi/actions step runs it."""
    event_log = workspace.folder / "preview-events.jsonl"
    workspace.env["PULUMI_DEBUG_COMMANDS"] = "true"  # as runPulumiCmd sets it
    try:
        result = workspace.run(*action_preview_args(preview_step()["with"], event_log))
    finally:
        del workspace.env["PULUMI_DEBUG_COMMANDS"]
    events = [json.loads(line) for line in event_log.read_text().splitlines() if line]
    print(f"\nworkflow's `pulumi preview --diff` of a new {STACK} stack: {result.seconds:.1f} s")
    return Preview(result, events)


@pytest.fixture(scope="module")
def make_preview(workspace: Workspace) -> subprocess.CompletedProcess[str]:
    """`make preview STACK=prod` in the workspace's project (its Makefile and scripts are
    the checkout's), on the workspace's backend, inside its network namespace. The venv
    counts as set up (``-o``), as tests/scripts/test_make_stack.py runs make."""
    env = {k: v for k, v in workspace.env.items() if not k.startswith("MAKE")}
    started = time.monotonic()
    make = ["make", "-s", "-C", str(workspace.project), "preview", f"STACK={STACK}"]
    done = subprocess.run(
        [*workspace.netns.run_prefix, *make, "-o", "venv/.installed"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    print(f"\n`make preview STACK={STACK}` of a new stack: {time.monotonic() - started:.1f} s")
    return done


# --- the tests ---------------------------------------------------------------------------------


def test_make_preview_shows_the_engines_changes_and_warnings(
    workspace: Workspace,
    make_preview: subprocess.CompletedProcess[str],
    workflow_preview: Preview,
) -> None:
    run = make_preview
    assert run.returncode == 0, f"{run.stdout[-5000:]}\n{run.stderr[-5000:]}"
    assert f"Pulumi backend: {workspace.env['PULUMI_BACKEND_URL']}" in run.stderr
    assert f"Stack:          {STACK}" in run.stderr
    # the counts the engine reported for the same stack and program
    expected = workflow_preview.summary_event()["resourceChanges"]
    assert resource_changes(run.stdout) == expected
    assert set(expected) == {"create"} and expected["create"] > 100  # a new stack
    # the program's warnings, in the Diagnostics section
    assert workflow_preview.warnings(), "the prod test stack warns (network preflight)"
    diagnostics = run.stdout.split("Diagnostics:", 1)[-1]
    for warning in workflow_preview.warnings():
        assert warning in diagnostics
    assert re.search(r"^\s+kubeconfig\s+: \[secret\]$", run.stdout, re.M)
    for value in canaries(workspace):
        assert value not in run.stdout + run.stderr


def test_the_workflows_job_summary_and_comment_show_the_whole_change(
    workspace: Workspace, workflow_preview: Preview
) -> None:
    result = workflow_preview.result
    summary_event = workflow_preview.summary_event()
    assert summary_event["result"] == "succeeded" and summary_event["isPreview"]
    changes = summary_event["resourceChanges"]
    always_include_summary = bool(preview_step()["with"].get("always-include-summary"))
    summary = job_summary(result.stdout)
    comment = pr_comment(result.stdout, always_include_summary)

    # the job summary: every resource the engine plans to create, by URN (but the engine's
    # default providers, which the display hides), and the counts
    for step in workflow_preview.steps():
        default_provider = step["type"].startswith("pulumi:providers:") and step["urn"].rsplit(
            "::", 1
        )[1].startswith("default")
        if step["op"] == "create" and not default_provider:
            assert f"[urn={step['urn']}]" in summary
    assert "trimmed" not in summary and len(summary.encode()) < SUMMARY_MAX_BYTES
    assert resource_changes(summary) == changes
    # the comment is cut (prod's new stack prints far more than 64,000 characters), but
    # never the counts at its end, nor the outputs
    assert len(result.stdout) > COMMENT_MAX_CHARS
    assert resource_changes(comment) == changes, "the comment lost the Resources: counts"
    assert re.search(r"^\s+kubeconfig\s+: \[secret\]$", comment, re.M)

    # the program's warnings: in the run's annotation (stderr), not in the comment
    for warning in workflow_preview.warnings():
        assert warning in result.stderr

    for value in canaries(workspace):
        assert value not in result.stdout + result.stderr
        assert value not in json.dumps(workflow_preview.events)


def test_the_render_jobs_summary_lists_the_vms_the_engine_creates(
    tmp_path: Path, workflow_preview: Preview
) -> None:
    """The render job: `make render` of the PR head, then render_summary.py over it (as
    preview.yml runs them; ``--out`` keeps the render out of the checkout's build/)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    render = [sys.executable, "-m", "scripts.render", "--stack", STACK, "--out", str(tmp_path)]
    done = subprocess.run(
        render, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-5000:]
    summarize = [sys.executable, str(ROOT / "scripts" / "render_summary.py"), "--stack", STACK]
    done = subprocess.run(
        [*summarize, "--head", str(tmp_path / STACK)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    summary = done.stdout

    # the node table: exactly the VMs the real preview creates
    nodes_section = summary.split("### Nodes (PR head)", 1)[1].split("###", 1)[0]
    table_nodes = {
        cells[2]
        for line in nodes_section.splitlines()
        if line.startswith("|") and len(cells := [c.strip() for c in line.split("|")]) > 3
    } - {"node", "---"}
    engine_vms = {
        step["urn"].rsplit("::", 1)[1]
        for step in workflow_preview.steps()
        if step["op"] == "create" and step["type"] in VM_TYPES
    }
    assert table_nodes == engine_vms
    # the warnings it promises for prod's engine (rke): one block each
    for warning in checksum_warnings("rke"):
        assert f"> [!WARNING]\n> **Checksum not pinned.** {warning}\n" in summary
    for warning in image_warnings():
        assert f"> **Image not pinned by digest.** {warning}\n" in summary
    for warning in version_warnings("rke"):
        assert f"> [!CAUTION]\n> **Outside the upstream support window.** {warning}\n" in summary

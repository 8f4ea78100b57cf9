"""`make render` reads a stack file exactly as the Pulumi CLI does.

The oracle is the CLI's own loader (workspace.LoadProjectStackBytes of the Pulumi SDK the
project pins), built by `make test` from its Go module into .tools/bin (tools/stack-config).
Generated stack files of tricky scalars (numbers in Go's syntaxes, YAML 1.1 booleans,
sexagesimals, dates, nulls) and broken ones go through both; the config strings the
program would get must be the same, and a file the CLI refuses must be refused here with
file, line and column, never a traceback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from scripts import stack_yaml
from scripts.offline import PROJECT
from tests.support.tools import ROOT

GO_MOD = (ROOT / "tools" / "stack-config" / "go.mod").read_text()
PULUMI_SDK = re.search(r"^require github.com/pulumi/pulumi/sdk/v3 (\S+)", GO_MOD, re.M)
ORACLE = ROOT / ".tools" / "bin" / f"stack-config-{PULUMI_SDK[1] if PULUMI_SDK else '?'}"


def pulumi_reads(paths: list[Path]) -> list[dict[str, Any]]:
    """What the Pulumi CLI's loader makes of each file: {"config": ...} or {"error": ...}."""
    if not os.access(ORACLE, os.X_OK):
        pytest.fail(f"{ORACLE} is missing: run `make test` (it builds tools/stack-config)")
    run = subprocess.run(
        [str(ORACLE), PROJECT, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [json.loads(line) for line in run.stdout.splitlines()]


def we_read(path: Path) -> dict[str, Any]:
    """The same through scripts/stack_yaml.py, as scripts/offline.py's stack_config uses it."""
    try:
        config = stack_yaml.config_section(stack_yaml.load_file(path), PROJECT, path)
        values = {}
        for full, value in config.items():
            secure = isinstance(value, dict) and set(value) == {"secure"}
            values[full] = "[secure]" if secure else stack_yaml.config_string(value, full)
        return {"config": values}
    except stack_yaml.StackFileError as err:
        return {"error": str(err)}


# Scalars whose meaning differs between YAML 1.1 (PyYAML), YAML 1.2 and go-yaml v3.
TRICKY = [
    "010", "0o17", "0x1F", "0b101", "-0b11", "+12", "1_000", "1__0", "0.5", ".5", "1.",
    "1e3", "1.5e-7", "2.0", "-0", "00", "08", "09.5", "1:30", "190:20:30", "yes", "no",
    "on", "off", "y", "n", "Yes", "NO", "true", "True", "TRUE", "false", "~", "null",
    "Null", "NULL", "2001-12-14", "2024-02-30", ".inf", "-.Inf", "0x", "1_", "_1", "12e",
    "9223372036854775807", "9223372036854775808", "18446744073709551616", "-9223372036854775809",
    "10.147.0.0/16", "a: b", "#x", "a<b>&c", "!!timestamp 2001-12-14", "!!str 010", "'q'",
    '"d"', "=", "<<", "-", "1-2", '"x\\/y"', '"x\\\\/y"',  # "\/": an escape only PyYAML knows
]  # fmt: skip
scalar = st.one_of(
    st.sampled_from(TRICKY),
    st.from_regex(
        r"[-+]?(0[xob])?[0-9_]{1,6}(\.[0-9]{0,3})?([eE][-+]?[0-9]{1,2})?", fullmatch=True
    ),
    st.from_regex(r"[a-z][a-z0-9.-]{0,10}", fullmatch=True),
)


# Map keys go-yaml decodes as null, numbers and booleans, which the CLI then names with %v.
MAP_KEY = st.sampled_from(["~", "1", "true", "010", "1.5"]) | st.from_regex(
    r"[a-z]{1,4}", fullmatch=True
)


def node(depth: int) -> st.SearchStrategy[str]:
    """One YAML value in flow style (so any nesting fits on one line)."""
    if depth == 0:
        return scalar
    inner = node(depth - 1)
    return st.one_of(
        scalar,
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.dictionaries(MAP_KEY, inner, max_size=3).map(
            lambda d: "{" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "}"
        ),
    )


stack_file = st.dictionaries(
    st.from_regex(r"(multicloud:|aws:)?[a-z][a-zA-Z]{0,8}", fullmatch=True), node(2), max_size=6
).map(lambda values: "config:\n" + "".join(f"  {k}: {v}\n" for k, v in values.items()))


# No shrinking: a failing batch names its file in the message; shrinking 30 files is slow.
# 12 batches of 30 files (one oracle run each): the same 360 files as 6 of 60 would be,
# at half the cost, as a batch of 60 often overran Hypothesis's buffer and was drawn again
# (measured: 2.3 s of generation for 6 of 60, 1.0 s for 12 of 30, with more distinct files).
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.data_too_large, HealthCheck.too_slow],
)
@given(st.lists(stack_file, min_size=30, max_size=30))
def test_generated_stack_files_read_as_the_pulumi_cli_reads_them(texts: list[str]) -> None:
    directory = Path(os.environ.get("TMPDIR", "/tmp")) / f"stack-yaml-{os.getpid()}"
    directory.mkdir(exist_ok=True)
    paths = []
    for i, text in enumerate(texts):
        paths.append(directory / f"Pulumi.s{i}.yaml")
        paths[-1].write_text(text)
    for path, text, theirs in zip(paths, texts, pulumi_reads(paths), strict=True):
        ours = we_read(path)
        if "error" in theirs:
            # The CLI refuses it: so must we (a date-time is refused with a hint to quote it).
            assert "error" in ours, (text, theirs, ours)
            continue
        if "error" in ours:  # a date-time, or a key twice (which one the CLI keeps is random)
            assert "date and time" in ours["error"] or "given twice" in ours["error"], (text, ours)
            continue
        assert ours["config"].keys() == theirs["config"].keys(), text
        for key, value in theirs["config"].items():
            assert ours["config"][key] == value, (text, key, ours["config"][key], value)


def test_the_committed_stack_files_read_as_the_pulumi_cli_reads_them() -> None:
    paths = sorted(ROOT.glob("Pulumi.*.yaml"))
    for path, theirs in zip(paths, pulumi_reads(paths), strict=True):
        assert we_read(path) == theirs, path.name


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("config:\n  a: 1\n  a: 2\n", ":3:3:", "already defined at line 2"),
        ("config:\n\ta: 1\n", ":2:1:", "cannot start any token"),
        ("config:\n  a: [1\n", ":3:1:", ""),
        ("config:\n  a: !!int x\n", ":2:6:", "cannot decode"),
        ("config:\n  a: *nope\n", ":2:6:", "undefined alias"),
        ("config:\n  a: " + "[" * 200 + "]" * 200 + "\n", ":2:", "nested deeper"),
        (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n"
                for p, c in zip("abcdef", "bcdefg", strict=True)
            )
            + "config: {k: *g}\n",
            ":",
            "expands to more than",
        ),
        ("config:\n  a: 2001-12-14 10:00:00\n", ":2:6:", "date and time; quote it"),
    ],
    ids=["duplicate", "tab", "unclosed", "bad-tag", "alias", "deep", "alias-bomb", "datetime"],
)
# Stricter than the CLI on purpose: nesting (go-yaml allows 10,000 levels; no config of this
# program nests past 6) and date-times (which no key of this program takes).
def test_broken_stack_files_are_reported_with_file_line_and_column(
    text: str, where: str, words: str, tmp_path: Path
) -> None:
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text(text)
    with pytest.raises(stack_yaml.StackFileError) as caught:
        stack_yaml.load_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}{where}") and words in message, message
    if words not in ("date and time; quote it", "nested deeper"):
        assert "error" in pulumi_reads([path])[0], "the CLI accepts it too"


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of what `make render` reads (the program, its scripts and reference data,
    Pulumi.yaml; no stack file): the tests put their broken stack files there, never in
    the checkout, where other tests (and `make unit`'s other process) list the stacks."""
    copy = tmp_path_factory.mktemp("checkout")
    ignore = shutil.ignore_patterns("__pycache__")
    for name in ("components", "rke", "rke2", "scripts", "reference"):
        shutil.copytree(ROOT / name, copy / name, ignore=ignore)
    for path in [*ROOT.glob("*.py"), ROOT / "Pulumi.yaml"]:  # __main__.py, engines.py
        shutil.copy(path, copy / path.name)
    return copy


def _bad_stack(checkout: Path, stack: str, edit: Any) -> Path:
    """Pulumi.home.yaml without its sites, ``edit``ed, as stack ``stack`` in ``checkout``."""
    text = (ROOT / "Pulumi.home.yaml").read_text()
    text = edit(re.sub(r"(?m)^  (multicloud:)?sites:\n(    .*\n|\s*\n)*", "", text))
    target = checkout / f"Pulumi.{stack}.yaml"
    target.write_bytes(text.encode("utf-8", "surrogateescape"))  # \udcff: the byte 0xff
    return target


# Errors in the file itself, before the program runs, through a `make render` process; a
# config error the program finds (after ~4 s of CPU importing the Pulumi SDKs in a new
# process) through the same `render.main` in this process, in the next test.
@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (
            lambda text: text.replace("config:\n", "config:\n\tbad: 1\n", 1),
            "cannot start any token",
        ),
        (lambda text: text + "  multicloud:clusterName: m\udcff\n", "not UTF-8"),
    ],
    ids=["yaml-error", "not-utf8"],
)
def test_make_render_reports_a_bad_stack_file_without_a_traceback(
    edit: Any, words: str, checkout: Path, tmp_path: Path
) -> None:
    stack = "yamlcheck"
    target = _bad_stack(checkout, stack, edit)
    run = subprocess.run(
        [str(ROOT / "venv" / "bin" / "python"), "-m", "scripts.render", "--stack", stack,
         "--out", str(tmp_path)],
        cwd=checkout, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert words in run.stderr and "Traceback" not in run.stderr, run.stderr
    if "token" in words:  # a YAML error names the file, line and column
        assert re.match(rf"{re.escape(str(target))}:\d+:\d+: ", run.stderr), run.stderr


@pytest.mark.parametrize("value", ["[1, 2]", "plain"], ids=["sites-a-list", "sites-a-string"])
def test_make_render_reports_a_bad_config_value_without_a_traceback(
    value: str,
    checkout: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """`make render`'s main on the copy, in this process; capfd: all that reaches fd 2."""
    import scripts.offline as offline
    import scripts.render as render

    _bad_stack(checkout, "badsites", lambda text: text + f"  multicloud:sites: {value}\n")
    monkeypatch.setattr(offline, "ROOT", checkout)
    monkeypatch.setattr(render, "ROOT", checkout)
    capfd.readouterr()
    assert render.main(["--stack", "badsites", "--out", str(tmp_path)]) == 1
    err = capfd.readouterr().err
    assert "multicloud:sites" in err and "Traceback" not in err, err


def test_a_nested_secure_value_makes_the_key_secret(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `pulumi config set --path --secret entrypoint.x.y` writes {secure: ...} inside the
    # object; the CLI then treats the whole key as a secret (config/value.go hasSecureValue)
    import scripts.offline as offline
    from scripts.offline import PLACEHOLDER, stack_config

    stack = "nestedsecure"
    text = (ROOT / "Pulumi.home.yaml").read_text()
    (checkout / f"Pulumi.{stack}.yaml").write_text(
        text + "  multicloud:extra:\n    token:\n      secure: v1:abc\n"
    )
    monkeypatch.setattr(offline, "ROOT", checkout)
    config, secret_keys = stack_config(stack)
    assert "multicloud:extra" in secret_keys
    assert json.loads(config["multicloud:extra"]) == {"token": f"{PLACEHOLDER}-extra"}

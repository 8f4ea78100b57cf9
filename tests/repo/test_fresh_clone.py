"""The README's test command on a machine with only what the README lists.

README.md calls Debian's `cloud-init` and `chromium` optional outside CI: the tests that
use them must then fall back (the vendored schema) or skip, never fail. Here those tests
run in a child pytest whose PATH holds every other program of this machine but not the
optional tools, with ``CI`` unset, as on a developer's fresh Debian.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

from tests.support.tools import ROOT

OPTIONAL_TOOLS = {"cloud-init", "chromium", "google-chrome"}  # README.md, "make test"
# Every test that looks for one of the optional tools (tests/support/tools.py debian_tool).
USES_OPTIONAL_TOOLS = (
    "tests/rke2/test_rke2_program.py::test_every_user_data_validates_and_installs_rke2_not_docker",
    "tests/components/boot/test_cloud_init.py::test_user_data_is_valid_and_broken_documents_fail_both_ways",
    "tests/components/boot/test_node_trust.py::test_user_data_installs_the_generated_host_key_and_nothing_else",
    "tests/test_program.py::test_prod_user_data_passes_cloud_init_schema",
)


def path_without(hidden: set[str], into: Path) -> str:
    """A PATH of one directory linking every program on this PATH except ``hidden``."""
    into.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or not Path(directory).is_dir():
            continue
        for program in Path(directory).iterdir():
            link = into / program.name
            if program.name in hidden or link.exists() or not os.access(program, os.X_OK):
                continue
            link.symlink_to(program)
    return str(into)


def test_optional_tools_missing_outside_ci_is_not_a_failure(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = path_without(OPTIONAL_TOOLS, tmp_path / "bin")
    env["CHROMIUM"] = str(tmp_path / "no-chromium")
    report = tmp_path / "report.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    run = subprocess.run(
        [*command, f"--junit-xml={report}", *USES_OPTIONAL_TOOLS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    suite = ElementTree.parse(report).getroot().find("testsuite")
    assert suite is not None
    counts = {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors")}
    assert counts == {"tests": len(USES_OPTIONAL_TOOLS), "failures": 0, "errors": 0}

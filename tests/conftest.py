"""Under ``CI=true`` a skipped test is a failure: CI installs every tool the suite uses."""

from __future__ import annotations

import pytest

from tests.tools import IN_CI


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if IN_CI and skipped and exitstatus == 0:
        for report in skipped:
            print(f"\nskipped under CI=true: {report.nodeid}: {report.longrepr}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

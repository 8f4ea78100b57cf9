"""Suite-wide hooks.

- A test module may define ``prefetch(selected_test_names)`` to start a slow subprocess
  (a browser) right after collection, so it runs beside the tests before its own.
- Under ``CI=true`` a skipped test is a failure: CI installs every tool the suite uses.
"""

from __future__ import annotations

import pytest

from tests.tools import IN_CI


def pytest_collection_finish(session: pytest.Session) -> None:
    selected: dict[object, set[str]] = {}
    for item in session.items:
        module = getattr(item, "module", None)
        if callable(getattr(module, "prefetch", None)):
            selected.setdefault(module, set()).add(getattr(item, "originalname", item.name))
    for module, names in selected.items():
        module.prefetch(names)  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if IN_CI and skipped and exitstatus == 0:
        for report in skipped:
            print(f"\nskipped under CI=true: {report.nodeid}: {report.longrepr}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

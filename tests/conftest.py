"""Suite-wide hooks.

- A test module may define ``prefetch(selected_test_names)`` to start a slow subprocess
  (a browser, a linter) right after collection, so it runs beside the tests before its
  own; the tests it names in ``PREFETCHED`` (a set of test function names) run at the
  end of the session, so on a 2-core machine that subprocess has finished on the other
  core by the time they wait for it. Not in a pytest-xdist worker (`make unit`): every
  worker collects every test but runs only those it is sent, so the tests start their
  subprocess themselves when they need it, once, in the worker that runs them.
- Under ``CI=true`` a skipped test is a failure: CI installs every tool the suite uses.
- Garbage collection is tuned for one long pytest process (see ``_tune_gc``).
"""

from __future__ import annotations

import gc

import pytest

from tests.support.tools import IN_CI


def _tune_gc() -> None:
    """Fewer, cheaper cyclic-GC passes: the suite holds large long-lived heaps (the Pulumi
    SDKs' generated classes, the cached program runs of ``tests.support.program_runs``) that
    CPython's
    default thresholds (700, 10, 10) traversed again and again; measured with
    ``gc.callbacks`` that was ~20 s of a 2-minute run. Only *when* garbage is collected
    changes, not what any test does; cycles are still collected."""
    gc.set_threshold(50_000, 20, 100)


_tune_gc()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput"):
        return  # a pytest-xdist worker prefetches nothing (below)

    def waits_for_prefetch(item: pytest.Item) -> bool:
        names = getattr(getattr(item, "module", None), "PREFETCHED", ())
        return getattr(item, "originalname", item.name) in names

    items[:] = [i for i in items if not waits_for_prefetch(i)] + [
        i for i in items if waits_for_prefetch(i)
    ]


def pytest_collection_finish(session: pytest.Session) -> None:
    # Everything imported during collection lives for the whole session: move it out of
    # the collector's generations so later full collections do not traverse it.
    gc.collect()
    gc.freeze()
    if session.config.option.collectonly or hasattr(session.config, "workerinput"):
        return  # nothing (or maybe another worker) will wait for a prefetched subprocess
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

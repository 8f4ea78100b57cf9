"""Is everything the cluster runs still inside its upstream support window?

Reads ``reference/versions.json`` (one row per component the program installs or depends
on at run time: its pin, and per upstream release line the end of life and the Kubernetes
range, each fact with its source) and gives each (component, engine) row a status as of a
date::

    python -m scripts.versions            # as of the table's own date (`as_of`)
    python -m scripts.versions --today    # as of today's date

Standard library only: ``scripts/render_summary.py`` runs as a plain ``python3`` script in
CI and calls ``warnings()`` from here.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

TABLE = Path(__file__).resolve().parent.parent / "reference" / "versions.json"

SUPPORTED = "supported"
ENDING = "ends within {days} days"
PAST_EOL = "past end of life"
OUTSIDE = "outside the Kubernetes range"
UNKNOWN = "end of life not established"
# Rows with these statuses fail tests/scripts/test_versions.py unless an accepted risk covers them.
FAILING = (PAST_EOL, OUTSIDE)
# The longest an accepted risk may stay accepted: its review_by is at most this far after
# the table's as_of (docs/operations.md, "Keeping versions supported").
MAX_RISK_DAYS = 90
ENGINES = ("rke", "rke2")


@dataclass(frozen=True)
class Risk:
    """An accepted, documented exception to "every pin is supported"."""

    component: str
    engine: str
    reason: str
    way_out: str
    doc: str
    review_by: date


@dataclass(frozen=True)
class Row:
    """One component as one engine runs it, with the facts of its pinned release line."""

    component: str
    name: str
    engine: str
    version: str | None
    line: str
    end_of_life: date | None
    eol_event: str | None
    eol_expected: date | None
    supported_when_read: bool | None
    kubernetes_min: str | None
    kubernetes_max: str | None
    kubernetes: str  # the engine's Kubernetes minor, e.g. "1.30"
    risk: Risk | None

    @property
    def label(self) -> str:
        return f"{self.name} {self.version or f'(bundled, {self.line})'}"


def minor(version: str) -> tuple[int, ...]:
    """``"v1.30.14-rancher1-1"`` -> ``(1, 30)``; ``"1.35"`` -> ``(1, 35)``."""
    match = re.match(r"v?(\d+)\.(\d+)", version)
    if match is None:
        raise ValueError(f"not a Kubernetes version: {version!r}")
    return int(match[1]), int(match[2])


def _date(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


def load(path: Path = TABLE) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def as_of(table: dict[str, Any]) -> date:
    return date.fromisoformat(table["as_of"])


def pin_of(component: dict[str, Any], engine: str) -> dict[str, Any]:
    """The component's pin on ``engine``: ``pins[engine]`` where the engines differ (cert-manager),
    else the one ``pin``."""
    pin: dict[str, Any] = component.get("pins", {}).get(engine) or component["pin"]
    return pin


def rows(table: dict[str, Any]) -> list[Row]:
    """Every (component, engine) row, the engine's Kubernetes minor filled in."""
    kubernetes = {
        engine: ".".join(map(str, minor(pin_of(c, engine)["version"])))
        for c in table["components"]
        if c["kind"] == "kubernetes"
        for engine in c["engines"]
    }
    risks = {
        (r["component"], r["engine"]): Risk(
            r["component"],
            r["engine"],
            r["reason"],
            r["way_out"],
            r["doc"],
            date.fromisoformat(r["review_by"]),
        )
        for r in table.get("accepted_risks", [])
    }
    found = []
    for component in table["components"]:
        for engine in component["engines"]:
            pin = pin_of(component, engine)
            release = component["releases"][pin["line"]]
            eol, k8s = release["end_of_life"], release["kubernetes"]
            found.append(
                Row(
                    component=component["id"],
                    name=component["name"],
                    engine=engine,
                    version=pin["version"],
                    line=pin["line"],
                    end_of_life=_date(eol["date"]),
                    eol_event=eol.get("event"),
                    eol_expected=_date(eol.get("expected")),
                    supported_when_read=eol.get("supported_when_read"),
                    kubernetes_min=k8s["min"],
                    kubernetes_max=k8s["max"],
                    kubernetes=kubernetes[engine],
                    risk=risks.get((component["id"], engine)),
                )
            )
    return found


def in_kubernetes_range(row: Row) -> bool:
    """True when the engine's Kubernetes minor lies in the row's range (open ends allowed;
    no range at all: not applicable, so True)."""
    k8s = minor(row.kubernetes)
    low = row.kubernetes_min is None or minor(row.kubernetes_min) <= k8s
    high = row.kubernetes_max is None or k8s <= minor(row.kubernetes_max)
    return low and high


def status(row: Row, today: date, warn_days: int = 90) -> str:
    """The row's status as of ``today``. An end-of-life date is the first day without
    support (upstream pages say "reached end of life on <date>"), so on that date the row is
    past it. The worst applies: past end of life, outside the Kubernetes range, ending within
    ``warn_days``, end of life not established, supported."""
    if row.end_of_life is not None and today >= row.end_of_life:
        return PAST_EOL
    if not in_kubernetes_range(row):
        return OUTSIDE
    ends = row.end_of_life or row.eol_expected
    if ends is not None and (ends - today).days <= warn_days:
        return ENDING.format(days=warn_days)
    if row.end_of_life is None and not row.supported_when_read:
        return UNKNOWN
    return SUPPORTED


def _ends(row: Row) -> str:
    if row.end_of_life is not None:
        return row.end_of_life.isoformat()
    if row.eol_event:
        expected = f", expected {row.eol_expected.isoformat()}" if row.eol_expected else ""
        return f"{row.eol_event}{expected}"
    return "not established"


def _range(row: Row) -> str:
    if row.kubernetes_min is None and row.kubernetes_max is None:
        return "-"
    return f"{row.kubernetes_min or '…'} → {row.kubernetes_max or '…'}"


def warnings(engine: str, today: date | None = None, path: Path = TABLE) -> list[str]:
    """Human warnings for ``engine``'s rows that are not plainly supported (past end of life,
    outside the engine's Kubernetes range, ending soon), as of ``today`` (default: the real
    date, never earlier than the table's ``as_of``). Each names the component, its end of
    life and the way out. Rows whose end of life is not established are not warned here;
    ``make versions`` lists them."""
    table = load(path)
    when = today or max(as_of(table), date.today())
    warn_days = int(table["warn_days"])
    found = []
    for row in rows(table):
        if row.engine != engine:
            continue
        state = status(row, when, warn_days)
        if state in (SUPPORTED, UNKNOWN):
            continue
        detail = f"{row.label}: {state} (end of life {_ends(row)}"
        if state == OUTSIDE:
            detail += (
                f"; supports Kubernetes {_range(row)}, the {engine} engine runs {row.kubernetes}"
            )
        detail += ")"
        if row.risk is not None:
            detail += f". {row.risk.reason} Way out: {row.risk.way_out} ({row.risk.doc})"
        else:
            detail += ". Move the pin (docs/operations.md, Keeping versions supported)"
        found.append(detail + ".")
    return found


def table_markdown(table: dict[str, Any], today: date) -> str:
    """The status table ``make versions`` prints."""
    warn_days = int(table["warn_days"])
    lines = [
        f"Versions as of {today.isoformat()} (table's as_of {table['as_of']}; "
        f"'ending' = within {warn_days} days)",
        "",
        "| component | engine | pinned | end of life | Kubernetes range (engine's) | status |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows(table):
        state = status(row, today, warn_days)
        if row.risk is not None and state != SUPPORTED:
            state += f" (accepted until {row.risk.review_by.isoformat()})"
        lines.append(
            f"| {row.name} | {row.engine} | {row.version or f'bundled ({row.line})'} | "
            f"{_ends(row)} | {_range(row)} ({row.kubernetes}) | {state} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--today", action="store_true", help="evaluate as of today's date")
    when.add_argument("--date", type=date.fromisoformat, help="evaluate as of YYYY-MM-DD")
    args = parser.parse_args(argv)
    table = load()
    today = date.today() if args.today else args.date or as_of(table)
    sys.stdout.write(table_markdown(table, today))
    for engine in ENGINES:
        for warning in warnings(engine, today):
            print(f"\n{engine}: {warning}")
    return 0


def problems(table: dict[str, Any]) -> list[str]:
    """Why the table may not land, as of its own ``as_of``: a row past end of life or
    outside its engine's Kubernetes range without an accepted risk; an accepted risk that
    has expired, runs more than MAX_RISK_DAYS past ``as_of``, or covers no such row."""
    today, warn_days = as_of(table), int(table["warn_days"])
    limit = today + timedelta(days=MAX_RISK_DAYS)
    found = []
    covered = set()
    for row in rows(table):
        state = status(row, today, warn_days)
        if state not in FAILING:
            continue
        covered.add((row.component, row.engine))
        if row.risk is None:
            found.append(
                f"{row.label} ({row.engine}): {state} as of {today} (end of life {_ends(row)}, "
                f"Kubernetes {_range(row)} vs {row.kubernetes}): move the pin, or record an "
                "accepted risk with its reason and way out"
            )
    for risk in (r for row in rows(table) if (r := row.risk) is not None):
        where = f"accepted risk {risk.component} ({risk.engine})"
        if (risk.component, risk.engine) not in covered:
            found.append(f"{where}: the row is not past end of life nor outside its range: drop it")
        if risk.review_by < today:
            found.append(f"{where}: expired on {risk.review_by}: review it and set a new date")
        if risk.review_by > limit:
            found.append(f"{where}: review_by {risk.review_by} is after {limit} (as_of + 90 days)")
    known = {(row.component, row.engine) for row in rows(table)}
    for r in table.get("accepted_risks", []):
        if (r["component"], r["engine"]) not in known:
            found.append(f"accepted risk {r['component']} ({r['engine']}): no such row")
    return found


if __name__ == "__main__":
    sys.exit(main())

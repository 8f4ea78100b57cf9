"""reference/versions.json: its facts validate, every pin in it is the program's own, and no
pin past end of life or outside its engine's Kubernetes range lands unnoticed."""

from __future__ import annotations

import copy
import json
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from scripts import versions
from scripts.render_summary import build_summary
from tests.repo.test_doc_links import github_anchor

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "reference"


def _json(name: str) -> Any:
    return json.loads((REFERENCE / name).read_text())


Pin = tuple[str | None, str | None]


def _program_pins() -> dict[str, Pin | dict[str, Pin]]:
    """Each row's (version, bundled_with) as the program itself pins them, per engine where
    the engines differ."""
    from components.config.entrypoint import (
        DEFAULT_CERT_MANAGER_CHART,
        DEFAULT_CERT_MANAGER_CHART_RKE,
        DEFAULT_LONGHORN_CHART,
        DEFAULT_UPDATER_IMAGE,
    )
    from rke.config_rules import DEFAULT_KUBERNETES_VERSION
    from rke2.upgrade import SUC_VERSION

    rke2 = _json("rke2-release.json")
    docker = _json("docker-packages.json")
    # `name:tag` or `name:tag@sha256:...`
    updater_tag = DEFAULT_UPDATER_IMAGE.split("@")[0].rsplit(":", 1)[1]
    [debian] = set(re.findall(r"`Debian (\d+)`", (ROOT / "docs/first-deploy.md").read_text()))
    return {
        "kubernetes-rke": (DEFAULT_KUBERNETES_VERSION, None),
        "kubernetes-rke2": (rke2["kubernetes_version"], None),
        "cert-manager": {
            "rke": (DEFAULT_CERT_MANAGER_CHART_RKE, None),
            "rke2": (DEFAULT_CERT_MANAGER_CHART, None),
        },
        "longhorn": (DEFAULT_LONGHORN_CHART, None),
        "cloudflare-ddns": (updater_tag, None),
        "system-upgrade-controller": (SUC_VERSION, None),
        "ingress-rke": (None, DEFAULT_KUBERNETES_VERSION),
        "ingress-rke2": (rke2["charts"]["rke2-ingress-nginx"], rke2["version"]),
        # RKE2's Dockerfile decides this one; the program pins the RKE2 release.
        "containerd-rke2": (None, rke2["version"]),
        "docker": (docker["docker-ce"]["version"], None),
        "containerd-rke": (docker["containerd.io"]["version"], None),
        "zerotier": (_json("zerotier-install.json")["package_version"], None),
        "debian": (debian, None),
    }


def test_the_table_validates_against_its_schema() -> None:
    schema = _json("versions.schema.json")
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(_json("versions.json")),
        key=lambda e: list(e.absolute_path),
    )
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_every_pin_in_the_table_is_the_programs_own() -> None:
    pins = _program_pins()
    components = versions.load()["components"]
    assert {c["id"] for c in components} == set(pins), "a row without a reader, or the reverse"
    wrong = {}
    for component in components:
        for engine in component["engines"]:
            program = pins[component["id"]]
            version, bundled_with = program[engine] if isinstance(program, dict) else program
            pin = versions.pin_of(component, engine)
            table_side = (pin["version"], pin.get("bundled_with"))
            # None: the program does not pin that part itself
            if (version is not None and version != table_side[0]) or (
                bundled_with is not None and bundled_with != table_side[1]
            ):
                wrong[(component["id"], engine)] = (table_side, (version, bundled_with))
    assert not wrong, f"table vs program (table, program): {wrong}"


def test_the_rke_kubernetes_pin_is_one_the_last_rke_release_ships() -> None:
    from rke import releases

    [row] = [c for c in versions.load()["components"] if c["id"] == "kubernetes-rke"]
    pin = versions.pin_of(row, "rke")
    assert releases.latest().name == "v1.8.14"
    assert pin["version"] in (releases.latest().kubernetes_versions or ())


@pytest.mark.parametrize(
    ("component", "engine"),
    [(c["id"], e) for c in versions.load()["components"] for e in c["engines"]],
)
def test_each_pin_falls_in_the_release_line_whose_facts_apply(component: str, engine: str) -> None:
    [row] = [c for c in versions.load()["components"] if c["id"] == component]
    pin = versions.pin_of(row, engine)
    assert pin["line"] in row["releases"]
    if pin["version"] is None:
        assert pin["line"] == pin["bundled_with"]
        return
    bare = re.sub(r"^(\d+:)?v?", "", pin["version"])
    line = pin["line"].removeprefix("v")
    assert bare == line or bare.startswith((f"{line}.", f"{line}-")), (bare, line)


# --- the status of a row, as of a date ---------------------------------------------------

AS_OF = date(2026, 12, 5)


def _table(
    eol: str | None = "2027-01-31",
    k8s: tuple[str | None, str | None] = ("1.30", "1.35"),
    engine_kubernetes: str = "v1.35.7",
    **eol_extra: Any,
) -> dict[str, Any]:
    """A one-component table on the rke2 engine."""
    end: dict[str, Any] = {"date": eol, "source": "s", "read": "2026-12-05", **eol_extra}
    return {
        "as_of": AS_OF.isoformat(),
        "warn_days": 90,
        "accepted_risks": [],
        "components": [
            {
                "id": "kubernetes-rke2",
                "name": "Kubernetes",
                "kind": "kubernetes",
                "engines": ["rke2"],
                "pin": {"version": engine_kubernetes, "line": "k", "from": "f"},
                "releases": {
                    "k": {
                        "released": None,
                        "end_of_life": {"date": "2030-01-01", "source": "s", "read": "2026-12-05"},
                        "kubernetes": {"min": None, "max": None, "source": None, "read": "x"},
                    }
                },
            },
            {
                "id": "thing",
                "name": "thing",
                "kind": "component",
                "engines": ["rke2"],
                "pin": {"version": "1.2.3", "line": "1.2", "from": "f"},
                "releases": {
                    "1.2": {
                        "released": None,
                        "end_of_life": end,
                        "kubernetes": {"min": k8s[0], "max": k8s[1], "source": "s", "read": "x"},
                    }
                },
            },
        ],
    }


def _status(table: dict[str, Any], today: date) -> str:
    [row] = [r for r in versions.rows(table) if r.component == "thing"]
    return versions.status(row, today, 90)


ENDING = versions.ENDING.format(days=90)


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (date(2026, 11, 1), versions.SUPPORTED),  # 91 days before
        (date(2026, 11, 2), ENDING),  # 90 days before
        (date(2027, 1, 30), ENDING),  # the last day of support
        (date(2027, 1, 31), versions.PAST_EOL),  # the end-of-life date itself
        (date(2028, 1, 1), versions.PAST_EOL),
    ],
)
def test_status_around_the_end_of_life_date(today: date, expected: str) -> None:
    assert _status(_table(), today) == expected


@pytest.mark.parametrize(
    ("k8s", "engine_kubernetes", "expected"),
    [
        (("1.32", "1.35"), "v1.35.7", versions.SUPPORTED),  # the upper end is inside
        (("1.35", "1.36"), "v1.35.7", versions.SUPPORTED),  # the lower end too
        (("1.32", "1.35"), "v1.30.14-rancher1-1", versions.OUTSIDE),  # cert-manager on RKE
        (("1.25", "1.32"), "v1.35.7", versions.OUTSIDE),  # 1.16 was never tested on 1.35
        (("1.25", None), "v1.35.7", versions.SUPPORTED),  # Longhorn: a minimum only
        ((None, None), "v1.30.14-rancher1-1", versions.SUPPORTED),  # no range: n/a
    ],
)
def test_status_against_the_engines_kubernetes(
    k8s: tuple[str | None, str | None], engine_kubernetes: str, expected: str
) -> None:
    table = _table(eol="2028-01-01", k8s=k8s, engine_kubernetes=engine_kubernetes)
    assert _status(table, AS_OF) == expected


def test_past_end_of_life_outranks_outside_the_range() -> None:
    table = _table(eol="2026-01-01", k8s=("1.20", "1.21"))
    assert _status(table, AS_OF) == versions.PAST_EOL


def test_status_when_the_end_is_an_event_or_unknown() -> None:
    event = {"event": "release of 1.4", "supported_when_read": True, "note": "n"}
    soon = _table(eol=None, expected="2027-01-15", **event)
    assert _status(soon, AS_OF) == ENDING
    later = _table(eol=None, expected="2027-06-01", **event)
    assert _status(later, AS_OF) == versions.SUPPORTED
    listed = _table(eol=None, expected=None, **event)
    assert _status(listed, AS_OF) == versions.SUPPORTED
    unknown = _table(eol=None, event=None, expected=None, supported_when_read=None, note="n")
    assert _status(unknown, AS_OF) == versions.UNKNOWN


# --- the stale-pin rule ------------------------------------------------------------------


def test_no_pin_is_past_end_of_life_or_outside_its_range_without_an_accepted_risk() -> None:
    """The gate of issue 22: as of the table's own date every row is supported, or an
    accepted risk (reason, way out, doc, review date at most 90 days ahead) covers it."""
    assert versions.problems(versions.load()) == []


def _risk(review_by: date, component: str = "thing") -> dict[str, str]:
    return {
        "component": component,
        "engine": "rke2",
        "reason": "r",
        "way_out": "w",
        "doc": "docs/operations.md#keeping-versions-supported",
        "review_by": review_by.isoformat(),
    }


def test_a_stale_pin_fails_unless_accepted_and_the_acceptance_expires() -> None:
    stale = _table(eol="2026-01-01")
    [message] = versions.problems(stale)
    assert "thing 1.2.3" in message and "past end of life" in message

    accepted = copy.deepcopy(stale)
    accepted["accepted_risks"] = [_risk(AS_OF + timedelta(days=90))]
    assert versions.problems(accepted) == []

    too_long = copy.deepcopy(stale)
    too_long["accepted_risks"] = [_risk(AS_OF + timedelta(days=91))]
    assert any("after 2027-03-05" in p for p in versions.problems(too_long))

    expired = copy.deepcopy(stale)
    expired["accepted_risks"] = [_risk(AS_OF - timedelta(days=1))]
    assert any("expired" in p for p in versions.problems(expired))

    outside = _table(eol="2028-01-01", k8s=("1.32", "1.33"))
    assert any("outside the Kubernetes range" in p for p in versions.problems(outside))


def test_an_accepted_risk_must_cover_a_row_that_needs_it() -> None:
    fine = _table(eol="2028-01-01")
    fine["accepted_risks"] = [_risk(AS_OF + timedelta(days=30))]
    assert any("drop it" in p for p in versions.problems(fine))
    fine["accepted_risks"] = [_risk(AS_OF + timedelta(days=30), component="nothing")]
    assert any("no such row" in p for p in versions.problems(fine))


def test_every_accepted_risk_links_to_a_doc_section_that_exists() -> None:
    for risk in versions.load()["accepted_risks"]:
        path, anchor = risk["doc"].split("#")
        headings = re.findall(r"^#{1,6}\s+(.*?)\s*$", (ROOT / path).read_text(), re.MULTILINE)
        assert anchor in {github_anchor(h) for h in headings}, risk["doc"]


def test_the_rke_engines_cert_manager_is_the_expected_accepted_risk() -> None:
    risks = {(r["component"], r["engine"]) for r in versions.load()["accepted_risks"]}
    assert ("cert-manager", "rke") in risks
    assert ("cert-manager", "rke2") not in risks, "RKE2's Kubernetes has supported releases"


# --- warnings for make render and the preview summary ------------------------------------


def test_warnings_name_the_component_its_end_and_the_way_out_per_engine() -> None:
    table = versions.load()
    as_of = versions.as_of(table)
    rke = versions.warnings("rke", as_of)
    rke2 = versions.warnings("rke2", as_of)
    [cert_manager] = [w for w in rke if w.startswith("cert-manager")]
    assert "no supported cert-manager release covers kubernetes 1.30" in cert_manager.lower()
    assert "docs/rke2.md#moving-an-rke-stack-to-rke2" in cert_manager
    assert "end of life" in cert_manager
    [k8s] = [w for w in rke2 if w.startswith("Kubernetes (RKE2 engine)")]
    assert "ends within 90 days" in k8s and "2027-02-28" in k8s
    assert not any("RKE engine" in w or "nginx ingress addon" in w for w in rke2)
    assert not any(w.startswith("cert-manager") for w in rke2), "v1.21 covers RKE2's 1.35"
    assert not any("RKE2" in w.split(":")[0] for w in rke)
    assert versions.warnings("rke2", date(2026, 1, 1)) != rke2  # evaluated as of the date


def test_no_warnings_when_every_row_is_supported(tmp_path: Path) -> None:
    path = tmp_path / "versions.json"
    path.write_text(json.dumps(_table(eol="2030-01-01")))
    assert versions.warnings("rke2", AS_OF, path) == []
    path.write_text(json.dumps(_table(eol="2026-01-01")))
    [warning] = versions.warnings("rke2", AS_OF, path)
    assert warning.startswith("thing 1.2.3: past end of life (end of life 2026-01-01)")


def test_the_preview_summary_shows_the_support_warnings(tmp_path: Path) -> None:
    head = tmp_path / "head"
    (head / "rke2").mkdir(parents=True)
    for name in ("nodes.md", "architecture.mmd"):
        (head / name).write_text("x\n")
    (head / "rke2" / "node.yaml").write_text("a: 1\n")
    summary = build_summary("prod", None, head)
    for warning in versions.warnings("rke2"):
        assert f"> [!CAUTION]\n> **Outside the upstream support window.** {warning}" in summary
    (head / "cluster.yml").write_text("nodes: []\n")
    summary = build_summary("prod", None, head)
    assert "docs/rke2.md#moving-an-rke-stack-to-rke2" in summary


def test_make_render_prints_the_support_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from scripts import render
    from tests.support.program_runs import committed

    run = committed("prod")  # evaluated once for the session
    monkeypatch.setattr(render, "run_program", lambda config, **_: run)
    assert render.render("prod", tmp_path / "build") == 0
    err = capsys.readouterr().err
    warnings = versions.warnings("rke")
    assert warnings
    for warning in warnings:
        assert f"CAUTION: outside the upstream support window. {warning}" in err


def test_make_versions_prints_a_status_per_row(capsys: pytest.CaptureFixture[str]) -> None:
    assert versions.main([]) == 0
    out = capsys.readouterr().out
    table = versions.load()
    assert f"as of {table['as_of']}" in out
    for row in versions.rows(table):
        assert f"| {row.name} | {row.engine} |" in out
    assert "past end of life (accepted until" in out
    assert versions.main(["--date", "2030-01-01"]) == 0
    assert "Debian 12" in capsys.readouterr().out

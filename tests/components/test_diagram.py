"""The architecture diagram: every edge drawn by the real Mermaid renderer, and what it says.

The committed stacks' diagrams are rendered by mermaid-cli (npm, pinned in
package-lock.json) in Debian's headless Chromium, both in one browser launch
(``scripts/render_mermaid.mjs``). Chromium is optional on a developer's machine and
required under ``CI=true``; without it the structural check still runs: every edge joins
two declared nodes and never a subgraph, which is what made Mermaid draw NaN paths.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from functools import cache
from pathlib import Path
from typing import ClassVar

import pytest

from components.config import ClusterConfig, raw_values
from components.diagram import Diagram, Edge, Group, Node, architecture, architecture_mermaid
from engines import check_stack
from scripts.offline import fake_outputs, reveal, stack_config
from tests.support.program_runs import committed
from tests.support.tools import NODE_MODULES, ROOT, debian_tool, node_package

STACKS = ("home", "prod")
_EDGE = re.compile(r'^\s*(\w+)\s+(-->|---|==>|-\.->)(?:\|"([^"]*)"\|)?\s+(\w+)\s*$')
_NODE = re.compile(r"^\s*(\w+)(?:\(\(|\[\[|\{\{|\[|\()")
_KEYWORDS = {"flowchart", "subgraph", "end", "classDef", "class"}


@cache
def config(stack: str) -> ClusterConfig:
    return check_stack(raw_values(stack_config(stack)[0]))[0]


def parse(text: str) -> tuple[set[str], set[str], list[tuple[str, str, str, str]]]:
    """Declared nodes, subgraphs and edges ``(source, line, label, target)`` of our subset."""
    nodes: set[str] = set()
    groups: set[str] = set()
    edges = []
    for line in text.splitlines()[1:]:
        words = line.split()
        if not words:
            continue
        if words[0] == "subgraph":
            groups.add(re.split(r"[\[\s]", words[1])[0])
        elif m := _EDGE.match(line):
            edges.append((m[1], m[2], m[3] or "", m[4]))
        elif any(arrow in line for arrow in ("--", "==>")):
            pytest.fail(f"an edge the structural check cannot read: {line!r}")
        elif words[0] not in _KEYWORDS:
            m = _NODE.match(line)
            assert m, f"unrecognised line {line!r}"
            nodes.add(m[1])
    return nodes, groups, edges


def structural_problems(text: str) -> list[str]:
    """Every edge end must be a declared node, never a subgraph; no node may be loose."""
    nodes, groups, edges = parse(text)
    problems = [f"{end} is a subgraph" for e in edges for end in (e[0], e[3]) if end in groups]
    problems += [
        f"{end} is not declared" for e in edges for end in (e[0], e[3]) if end not in nodes
    ]
    linked = {end for e in edges for end in (e[0], e[3])}
    problems += [f"{node} has no edge" for node in sorted(nodes - linked)]
    return problems


def drawn_edges(svg: str) -> list[tuple[str, str]]:
    """``(data-id, d)`` of every edge path Mermaid drew (class ``flowchart-link``)."""
    root = ET.fromstring(svg)
    return [
        (el.get("data-id", ""), el.get("d", ""))
        for el in root.iter()
        if el.tag.endswith("path") and "flowchart-link" in (el.get("class") or "")
    ]


def expected_edge_ids(text: str) -> Counter[str]:
    """Mermaid's ids for our edges: ``L_<source>_<target>_<n>``, n counting repeats."""
    seen: Counter[tuple[str, str]] = Counter()
    ids: Counter[str] = Counter()
    for source, _, _, target in parse(text)[2]:
        ids[f"L_{source}_{target}_{seen[source, target]}"] += 1
        seen[source, target] += 1
    return ids


class _Render:
    """The one Chromium render of the committed diagrams, started as early as possible."""

    proc: ClassVar[subprocess.Popen[str] | None] = None
    workdir: ClassVar[Path | None] = None
    diagrams: ClassVar[dict[str, str]] = {}


def _chromium() -> str | None:
    return debian_tool("chromium", "chromium", os.environ.get("CHROMIUM", "/usr/bin/chromium"))


def _start_render() -> None:
    """Start ``scripts/render_mermaid.mjs`` on both stacks (one browser launch), once."""
    if _Render.proc is not None:
        return
    _Render.diagrams = {stack: architecture_mermaid(config(stack)) for stack in STACKS}
    _Render.workdir = Path(tempfile.mkdtemp(prefix="diagram-render-"))
    atexit.register(shutil.rmtree, _Render.workdir, True)
    (_Render.workdir / "in.json").write_text(json.dumps(_Render.diagrams))
    script = ROOT / "scripts" / "render_mermaid.mjs"
    _Render.proc = subprocess.Popen(
        ["node", str(script), _Render.workdir / "in.json", _Render.workdir / "out.json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    atexit.register(_Render.proc.kill)


PREFETCHED = {"test_committed_diagrams_render_with_every_edge_drawn"}  # run last (conftest.py)


def prefetch(selected: set[str]) -> None:
    """Called by conftest.py after collection: when the render test is selected and can run,
    start Chromium now, so its start-up overlaps the tests that run before this one."""
    if not PREFETCHED & selected:
        return
    if shutil.which("node") and (NODE_MODULES / "@mermaid-js" / "mermaid-cli").is_dir():
        with contextlib.suppress(pytest.fail.Exception):
            if _chromium():
                _start_render()


def render() -> tuple[dict[str, dict[str, str]], str]:
    """Every committed diagram rendered by mermaid-cli, and what the browser console said."""
    node_package("@mermaid-js/mermaid-cli")
    _start_render()
    assert _Render.proc is not None and _Render.workdir is not None
    _, console = _Render.proc.communicate(timeout=300)
    assert _Render.proc.returncode == 0, console
    out: dict[str, dict[str, str]] = json.loads((_Render.workdir / "out.json").read_text())
    return out, console


def test_committed_diagrams_render_with_every_edge_drawn() -> None:
    diagrams = {stack: architecture_mermaid(config(stack)) for stack in STACKS}
    for stack, text in diagrams.items():
        assert not structural_problems(text), (stack, structural_problems(text))
    if _chromium() is None:
        return  # the structural check above is what can run without a browser
    results, console = render()
    assert _Render.diagrams == diagrams
    assert "NaN" not in console and "Error" not in console, console
    for stack, text in diagrams.items():
        assert "svg" in results[stack], results[stack].get("error")
        svg = results[stack]["svg"]
        assert "Syntax error" not in svg
        drawn = drawn_edges(svg)
        assert Counter(edge_id for edge_id, _ in drawn) == expected_edge_ids(text), stack
        assert len(drawn) == len(parse(text)[2])
        for edge_id, d in drawn:
            assert d and "NaN" not in d, (stack, edge_id, d)


def test_the_structural_check_catches_a_subgraph_edge() -> None:
    # The committed diagram before this check: `site <--> overlay` edges, drawn as NaN.
    old = 'flowchart TB\n  zt{{"o"}}\n  subgraph home["home"]\n    a["a"]\n  end\n  home --- zt\n'
    assert structural_problems(old) == [
        "home is a subgraph",
        "home is not declared",
        "a has no edge",
    ]
    diagram = Diagram(groups=[Group("home", "home", (Node("a", "a"),))], edges=[Edge("a", "home")])
    with pytest.raises(ValueError, match="'home' is a group"):
        diagram.mermaid()


@pytest.mark.parametrize("stack", STACKS)
def test_the_diagram_shows_overlay_ssh_paths_and_nat(stack: str) -> None:
    parsed = config(stack)
    edges = parse(architecture_mermaid(parsed))[2]
    node_ids = {n.name.replace("-", "_"): n for n in parsed.nodes}
    # the overlay joins every node of every site
    assert {s for s, _, _, t in edges if t == "zt"} == set(node_ids)
    # the deployer reaches every node (not only masters), by the site's sshVia
    ssh = {t: label for s, _, label, t in edges if s == "deployer"}
    assert set(ssh) == set(node_ids)
    for node_id, label in ssh.items():
        node = node_ids[node_id]
        via = parsed.settings.sites[node.site].ssh_via
        assert label == {"public": "SSH · public IP", "private": f"SSH · {node.site} LAN"}.get(
            via, "SSH · overlay"
        ), (node.name, label)
    groups = {g.id: g.label for g in architecture(parsed).groups}
    for name, site in parsed.settings.sites.items():
        assert ("behind NAT" in groups[f"site_{name}"]) == (not site.has_public_address)
    public = architecture(parsed).classes["publicIngress"][1]
    assert set(public) == {i for i, n in node_ids.items() if n.public_ingress}


def test_the_dns_record_starts_on_the_node_the_program_points_it_at() -> None:
    parsed = config("prod")
    edges = parse(architecture_mermaid(parsed))[2]
    (initial,) = [t for s, line, label, t in edges if s == "dns" and line == "==>"]
    run = committed("prod")
    (record,) = [r for r in run.registrations if r.type == "cloudflare:index/dnsRecord:DnsRecord"]
    content = reveal(record.inputs)["content"]
    owners = set()  # which node's public address the record was created with
    for reg in run.registrations:
        outputs = fake_outputs(reg.type, reg.name, reveal(reg.inputs))
        values = [*outputs.get("allFixedIps", []), outputs.get("ipv4Address")]
        if content in values:
            owners.add(reg.name.removesuffix("-port").removesuffix("-fip"))
    assert owners == {initial.replace("_", "-")}
    followers = {t for s, line, _, t in edges if s == "dns" and line == "-.->"}
    public = {n.name.replace("-", "_") for n in parsed.nodes if n.public_ingress}
    assert followers == public - {initial}


def test_the_home_stack_has_no_dns_record_in_its_diagram() -> None:
    nodes, _, edges = parse(architecture_mermaid(config("home")))
    assert "dns" not in nodes and "users" not in nodes
    assert not [e for e in edges if "dns" in (e[0], e[3])]

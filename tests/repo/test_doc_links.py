"""Every relative link in README.md and docs/*.md points at a file that exists and, with a
``#fragment``, at a heading that file has (GitHub's anchors). Pure text: no network."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target) and [text](target "title"); images too. Reference definitions: [x]: target
_INLINE = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFDEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
_CODE_SPAN = re.compile(r"`+[^`]*`+")


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def github_anchor(title: str) -> str:
    """The id GitHub gives a heading: markup dropped, lower case, punctuation other than
    ``-`` and ``_`` dropped, spaces to hyphens (a repeated id gets ``-1``, ``-2``, ...)."""
    title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link keeps its text
    title = title.replace("`", "").replace("*", "")
    keep = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return keep.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading id of a markdown document."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(text):
        match = _HEADING.match(line)
        if not match:
            continue
        base = github_anchor(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(text: str) -> Iterator[tuple[int, str]]:
    """``(line, target)`` of every link outside code blocks and code spans."""
    for number, line in prose_lines(text):
        line = _CODE_SPAN.sub("", line)
        for match in _INLINE.finditer(line):
            yield number, match.group(1)
        ref = _REFDEF.match(line)
        if ref:
            yield number, ref.group(1)


def broken(doc: Path) -> list[str]:
    """What is wrong with ``doc``'s relative links, one line per broken link."""
    problems = []
    for number, target in links(doc.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...
            continue
        path_part, _, fragment = target.partition("#")
        where = f"{doc.relative_to(ROOT)}:{number}: {target}"
        dest = (doc.parent / path_part).resolve() if path_part else doc
        if not dest.exists():
            problems.append(f"{where}: no such file")
            continue
        if not dest.is_relative_to(ROOT):
            problems.append(f"{where}: outside the repository")
            continue
        if (
            fragment
            and dest.suffix == ".md"
            and fragment not in anchors(dest.read_text(encoding="utf-8"))
        ):
            problems.append(f"{where}: {dest.name} has no heading #{fragment}")
    return problems


def test_the_anchor_rules() -> None:
    assert github_anchor("Where the deployer sits: `multicloud:deployer`") == (
        "where-the-deployer-sits-multiclouddeployer"
    )
    assert github_anchor("`sites.<name>` (kind: openstack)") == "sitesname-kind-openstack"
    text = "# A\n## Same\n```\n# not a heading\n```\n## Same\n"
    assert anchors(text) == {"a", "same", "same-1"}
    doc = "see [x](b.md#c) and `[y](nope.md)`\n```\n[z](fenced.md)\n```\n[r]: ref.md\n"
    assert [t for _, t in links(doc)] == ["b.md#c", "ref.md"]


def test_broken_links_are_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "b.md").write_text("# Here\n")
    doc = tmp_path / "a.md"
    doc.write_text("[ok](b.md#here) [gone](c.md) [anchor](b.md#there) [self](#nowhere)\n")
    assert broken(doc) == [
        "a.md:1: c.md: no such file",
        "a.md:1: b.md#there: b.md has no heading #there",
        "a.md:1: #nowhere: a.md has no heading #nowhere",
    ]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    assert broken(doc) == []


# ``docs/<name>.md#<heading>`` in the program's comments and docstrings, where the long
# rationale was moved (one copy, linked from the code).
_CODE_LINK = re.compile(r"docs/([\w-]+\.md)#([\w-]+)")
CODE = sorted(
    path
    for folder in ("components", "rke", "rke2", "scripts")
    for path in (ROOT / folder).rglob("*.py")
) + sorted(ROOT.glob("*.py"))


def broken_code_links(path: Path) -> list[str]:
    """``docs/x.md#section`` references in ``path`` whose file or heading is missing."""
    problems = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        for name, fragment in _CODE_LINK.findall(line):
            doc = ROOT / "docs" / name
            where = f"{path.relative_to(ROOT)}:{number}: docs/{name}#{fragment}"
            if not doc.is_file():
                problems.append(f"{where}: no such file")
            elif fragment not in anchors(doc.read_text(encoding="utf-8")):
                problems.append(f"{where}: {name} has no heading #{fragment}")
    return problems


def test_code_links_to_docs_resolve() -> None:
    assert [p for path in CODE for p in broken_code_links(path)] == []


def test_a_broken_code_link_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Here\n")
    code = tmp_path / "x.py"
    code.write_text("# see docs/a.md#here, docs/a.md#there and docs/nope.md#x\n")
    assert broken_code_links(code) == [
        "x.py:1: docs/a.md#there: a.md has no heading #there",
        "x.py:1: docs/nope.md#x: no such file",
    ]

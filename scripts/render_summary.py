"""Markdown for the job summary of an offline render: base branch vs PR head.

Reads two ``build/<stack>`` directories written by ``make render STACK=<stack>``
and prints the node table, the unified diff of the engine's cluster description
(``cluster.yml`` for rke; every node's ``rke2/<node>.yaml`` for rke2) and the
architecture diagram. Pure apart from reading the two directories::

    python scripts/render_summary.py --stack prod \\
        --base base/build/prod --head head/build/prod >> "$GITHUB_STEP_SUMMARY"

A missing or incomplete base directory (the base branch could not be
rendered, e.g. before ``make render`` existed) is reported, not fatal.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

NODES = "nodes.md"
CLUSTER = "cluster.yml"
RKE2_DIR = "rke2"
RKE2 = "rke2/*.yaml"
DIAGRAM = "architecture.mmd"
# A step summary is capped at 1 MiB; keep every part well below it.
MAX_DIFF_CHARS = 60_000


def fence(text: str, lang: str = "") -> str:
    """``text`` in a code fence longer than any backtick run inside it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    body = text if text.endswith("\n") or not text else text + "\n"
    return f"{ticks}{lang}\n{body}{ticks}\n"


def _read(directory: Path | None, name: str) -> str | None:
    if directory is None:
        return None
    path = directory / name
    return path.read_text(encoding="utf-8") if path.is_file() else None


def cluster_document(directory: Path | None, name: str) -> str | None:
    """The engine's cluster description in a render: ``cluster.yml`` itself, or for
    ``rke2/*.yaml`` every node's file in name order, each under a ``# rke2/<node>.yaml``
    line. None when the render has no such description."""
    if name == CLUSTER:
        return _read(directory, CLUSTER)
    if directory is None or not (directory / RKE2_DIR).is_dir():
        return None
    parts = [
        f"# {RKE2_DIR}/{path.name}\n{path.read_text(encoding='utf-8')}"
        for path in sorted((directory / RKE2_DIR).glob("*.yaml"))
    ]
    return "".join(parts)


def cluster_diff(stack: str, base: str | None, head: str, name: str = CLUSTER) -> str:
    """``diff -u`` of the cluster description, base -> head; empty when identical."""
    lines = difflib.unified_diff(
        (base or "").splitlines(keepends=True),
        head.splitlines(keepends=True),
        fromfile=f"base/build/{stack}/{name}" if base is not None else "/dev/null",
        tofile=f"head/build/{stack}/{name}",
    )
    # Lines without a trailing newline would run together.
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _truncate(text: str, limit: int = MAX_DIFF_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit) + 1 or limit
    return text[:cut] + f"... truncated: {len(text) - cut} more characters\n"


def build_summary(stack: str, base: Path | None, head: Path) -> str:
    """The markdown for one stack. ``head`` must hold a complete render."""
    name = CLUSTER if (head / CLUSTER).is_file() or not (head / RKE2_DIR).is_dir() else RKE2
    missing = [n for n in (NODES, CLUSTER, DIAGRAM) if not (head / n).is_file()]
    if name == RKE2:
        missing.remove(CLUSTER)
    if missing:
        raise FileNotFoundError(f"{head} lacks {', '.join(missing)}: did `make render` run?")
    head_cluster = cluster_document(head, name) or ""
    base_cluster = cluster_document(base, name)

    parts = [f"## Offline render of stack `{stack}`\n"]
    parts.append(f"### Nodes (PR head)\n\n{(head / NODES).read_text(encoding='utf-8').strip()}\n")

    parts.append(f"### `{name}`: base branch -> PR head\n")
    if base_cluster is None:
        parts.append("> The base branch could not be rendered; the whole file is shown as added.\n")
    diff = cluster_diff(stack, base_cluster, head_cluster, name)
    if diff:
        parts.append(fence(_truncate(diff), "diff"))
    else:
        parts.append(f"No change to `{name}`.\n")

    diagram = (head / DIAGRAM).read_text(encoding="utf-8").strip()
    parts.append(f"### Architecture (PR head)\n\n{fence(diagram, 'mermaid')}")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--base", type=Path, help="build/<stack> rendered from the base branch")
    parser.add_argument("--head", type=Path, required=True, help="build/<stack> of the PR head")
    args = parser.parse_args(argv)
    base = args.base if args.base is not None and args.base.is_dir() else None
    sys.stdout.write(build_summary(args.stack, base, args.head))
    return 0


if __name__ == "__main__":
    sys.exit(main())

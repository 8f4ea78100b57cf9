"""Markdown for the job summary of an offline render: base branch vs PR head.

Reads two ``build/<stack>`` directories written by ``make render STACK=<stack>`` and
prints the node table, the unified diff of the engine's cluster description and the
architecture diagram, opened by the warnings ``make render`` prints (unpinned checksums
and images, versions outside their support window). A missing or incomplete base (the
base branch could not be rendered) is reported, not fatal::

    python scripts/render_summary.py --stack prod \\
        --base base/build/prod --head head/build/prod >> "$GITHUB_STEP_SUMMARY"
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as `python3 head/scripts/render_summary.py` (CI), scripts/ itself is on the path;
# components/boot_record.py is the standard library only, imported from the same checkout.
try:
    from scripts.versions import warnings as version_warnings
except ModuleNotFoundError:
    from versions import warnings as version_warnings  # type: ignore[no-redef]

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from components.boot_record import BootRecordError, drift, record_from_output

NODES = "nodes.md"
CLUSTER = "cluster.yml"
RKE2_DIR = "rke2"
RKE2 = "rke2/*.yaml"
DIAGRAM = "architecture.mmd"
BOOT = "boot.json"  # the boot record the render's code writes (scripts/render.py)
# A step summary is capped at 1 MiB; keep every part well below it.
MAX_DIFF_CHARS = 60_000
# The checkout's reference files: this script runs as `python3 head/scripts/...`, so the
# PR head's own (the standard library only, no project imports).
REFERENCE = Path(__file__).resolve().parent.parent / "reference"


def _rke_binary_unpinned(reference: Path) -> list[str]:
    """The rke binary the deploy jobs download (``scripts/fetch_rke.py``)."""
    pin = json.loads((reference / "rke-binary.json").read_text(encoding="utf-8"))
    unpinned = [a["name"] for _, a in sorted(pin["assets"].items()) if not a.get("sha256")]
    if not unpinned:
        return []
    return [
        f"rke {pin['version']}: no sha256 of {', '.join(unpinned)} is pinned in "
        "reference/rke-binary.json, so the deploy job verifies the download against the "
        "release's published sha256sum.txt only (trusting GitHub at deploy time). Run "
        "`make pin-checksums`, review and commit reference/ (docs/first-deploy.md)."
    ]


def _rke2_tarball_unpinned(reference: Path) -> list[str]:
    """The RKE2 tarball every node downloads (``rke2/scripts.py``)."""
    release = json.loads((reference / "rke2-release.json").read_text(encoding="utf-8"))
    artifacts = release["artifacts"]
    if artifacts.get("tarball_sha256"):
        return []
    return [
        f"RKE2 {release['version']}: no sha256 of {artifacts['tarball']} is pinned in "
        f"reference/rke2-release.json, so every node verifies its download against the "
        f"release's published {artifacts['checksums']} only (trusting GitHub at boot "
        "time). Run `make pin-checksums`, review and commit reference/ "
        "(docs/first-deploy.md)."
    ]


@dataclass(frozen=True)
class EngineRender:
    """What this script knows of an engine: the cluster description its render holds and
    what it downloads unpinned."""

    description: str  # CLUSTER, or RKE2: every node's config in a folder named by the engine
    unpinned: Callable[[Path], list[str]]


# By engines.py's engine names (tests/scripts/test_checksums.py checks they agree); this script
# runs on the standard library alone, so it cannot import engines.py.
ENGINES = {
    "rke": EngineRender(CLUSTER, _rke_binary_unpinned),
    "rke2": EngineRender(RKE2, _rke2_tarball_unpinned),
}


def checksum_warnings(engine: str, reference: Path = REFERENCE) -> list[str]:
    """What is downloaded for ``engine`` without a pinned sha256 in ``reference/``. Each
    is then verified against its release's published checksum file only; empty when
    everything is pinned."""
    return ENGINES[engine].unpinned(reference)


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


def image_warnings(images: list[str] | None = None, reference: Path = REFERENCE) -> list[str]:
    """The images the program deploys itself that the cluster pulls by tag: no digest
    recorded in ``reference/images.json`` (nor given in the config). ``images``: the
    configured references (default: every entry of the file). A checkout without the file
    (from before images were pinned) has nothing recorded to check."""
    path = reference / "images.json"
    if not path.is_file():
        return []
    pins = json.loads(path.read_text(encoding="utf-8"))["images"]
    return [
        f"{image}: no digest is recorded in reference/images.json, so the cluster pulls it by "
        "tag (which its publisher can point at other content). Run `make pin-images`, review "
        "and commit reference/images.json (docs/operations.md)."
        for image in (sorted(pins) if images is None else images)
        if "@sha256:" not in image and not (pins.get(image) or {}).get("digest")
    ]


def _boot_record(directory: Path | None) -> dict[str, Any] | None:
    text = _read(directory, BOOT)
    try:
        record = record_from_output(json.loads(text)) if text else None
    except (ValueError, BootRecordError):  # an older render's, or none
        return None
    return None if record is None else {name: entry.inputs for name, entry in record.items()}


def boot_section(base: Path | None, head: Path) -> str:
    """The nodes whose boot inputs this change moves (base branch -> PR head): once merged,
    their running VMs are behind their code until `make roll` replaces them. The running
    nodes' own drift needs the stack's state (the preview job's "Nodes behind their code")."""
    now, before = _boot_record(head), _boot_record(base)
    heading = "### Boot inputs: base branch -> PR head\n\n"
    if now is None:
        return heading + "The PR head's render has no boot record.\n"
    if before is None:
        return heading + "The base branch's render has no boot record to compare with.\n"
    rows = [
        f"| {name} | {'; '.join(reasons)} |"
        for name in sorted(now)
        if name in before and (reasons := drift(before[name], now[name]))
    ]
    if not rows:
        return heading + "No node's image, size or boot document changes.\n"
    return (
        heading
        + f"Once merged, {len(rows)} running node(s) are behind their code until `make roll` "
        'replaces them (docs/operations.md, "Which nodes are behind"):\n\n'
        + "\n".join(["| node | why |", "| --- | --- |", *rows])
        + "\n"
    )


def build_summary(stack: str, base: Path | None, head: Path, reference: Path = REFERENCE) -> str:
    """The markdown for one stack. ``head`` must hold a complete render."""
    name = CLUSTER if (head / CLUSTER).is_file() or not (head / RKE2_DIR).is_dir() else RKE2
    missing = [n for n in (NODES, CLUSTER, DIAGRAM) if not (head / n).is_file()]
    if name == RKE2:
        missing.remove(CLUSTER)
    if missing:
        raise FileNotFoundError(f"{head} lacks {', '.join(missing)}: did `make render` run?")
    head_cluster = cluster_document(head, name) or ""
    base_cluster = cluster_document(base, name)

    [engine] = [e for e, render in ENGINES.items() if render.description == name]
    parts = [f"## Offline render of stack `{stack}`\n"]
    for warning in checksum_warnings(engine, reference):
        parts.append(f"> [!WARNING]\n> **Checksum not pinned.** {warning}\n")
    for warning in image_warnings(reference=reference):
        parts.append(f"> [!WARNING]\n> **Image not pinned by digest.** {warning}\n")
    # The checkout's own support-window table (reference/versions.json), as `make render`.
    for warning in version_warnings(engine):
        parts.append(f"> [!CAUTION]\n> **Outside the upstream support window.** {warning}\n")
    parts.append(f"### Nodes (PR head)\n\n{(head / NODES).read_text(encoding='utf-8').strip()}\n")

    parts.append(f"### `{name}`: base branch -> PR head\n")
    if base_cluster is None:
        parts.append("> The base branch could not be rendered; the whole file is shown as added.\n")
    diff = cluster_diff(stack, base_cluster, head_cluster, name)
    if diff:
        parts.append(fence(_truncate(diff), "diff"))
    else:
        parts.append(f"No change to `{name}`.\n")

    parts.append(boot_section(base, head))

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

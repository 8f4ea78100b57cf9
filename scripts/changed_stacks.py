"""Which Pulumi stacks a change touches, for the CI workflows.

A stack is affected by the program and the ``reference/`` data it reads, its
dependencies, ``Pulumi.yaml`` and its own stack file, never another stack's; with
``--include-ci`` the files that decide how a preview runs count too
(docs/delivery.md#what-a-pull-request-shows). Prints a JSON list; with ``$GITHUB_OUTPUT``
also writes ``stacks=<json>`` and ``unaffected=<json>`` (``[{"stack": name}]`` for a
matrix ``exclude``)::

    python scripts/changed_stacks.py --base <sha> --head <sha> [--include-ci]
    python scripts/changed_stacks.py --all

An empty or all-zero ``--base``, or one git cannot diff, means every stack.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STACK_FILE = re.compile(r"^Pulumi\.(?P<stack>[A-Za-z0-9_.-]+)\.yaml$")
SHARED_FILES = frozenset({"requirements.txt", "requirements.lock", "Pulumi.yaml"})
SHARED_DIRS = ("components/", "rke/", "rke2/", "reference/")
# How a preview runs: changing one of these is a reason to preview again.
CI_FILES = frozenset(
    {
        ".github/workflows/preview.yml",
        ".github/actions/pulumi-runner/action.yml",
        "scripts/changed_stacks.py",
        "scripts/render_summary.py",
        "scripts/preview_drift.py",
    }
)


def stacks_in(root: Path) -> list[str]:
    """The stacks that have a ``Pulumi.<stack>.yaml`` in ``root``, sorted."""
    found = (STACK_FILE.match(p.name) for p in root.glob("Pulumi.*.yaml"))
    return sorted(m["stack"] for m in found if m)


def affects(path: str, stack: str, *, include_ci: bool = False) -> bool:
    """Whether a change to ``path`` (repository-relative, POSIX) affects ``stack``."""
    if path in SHARED_FILES or path.startswith(SHARED_DIRS):
        return True
    if include_ci and path in CI_FILES:
        return True
    if "/" not in path and path.endswith(".py"):
        return True
    return path == f"Pulumi.{stack}.yaml"


def affected_stacks(
    changed: Iterable[str], stacks: Iterable[str], *, include_ci: bool = False
) -> list[str]:
    """The stacks, in the order given, that any of the changed paths affects."""
    paths = list(changed)
    return [s for s in stacks if any(affects(p, s, include_ci=include_ci) for p in paths)]


def matrix_exclude(affected: Iterable[str], stacks: Iterable[str]) -> list[dict[str, str]]:
    """``[{"stack": s}]`` for every stack not in ``affected``: a matrix ``exclude`` list."""
    keep = set(affected)
    return [{"stack": s} for s in stacks if s not in keep]


def git_changed(base: str, head: str, cwd: Path) -> list[str]:
    """Paths changed between the merge base of ``base`` and ``head``, and ``head``."""
    out = subprocess.run(
        ["git", "diff", "--name-only", "--no-renames", f"{base}...{head}"],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line for line in out.splitlines() if line]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="base commit (e.g. the PR base SHA)")
    parser.add_argument("--head", default="HEAD", help="head commit")
    parser.add_argument("--all", action="store_true", help="every stack, regardless of changes")
    parser.add_argument("--include-ci", action="store_true", help="count the preview's own files")
    args = parser.parse_args(argv)

    stacks = stacks_in(REPO)
    if args.all:
        result = stacks
    elif args.base and set(args.base) != {"0"}:
        try:
            changed = git_changed(args.base, args.head, REPO)
            result = affected_stacks(changed, stacks, include_ci=args.include_ci)
        except subprocess.CalledProcessError as exc:  # e.g. base gone after a force push
            print(f"cannot diff {args.base}...{args.head}: {exc.stderr.strip()}", file=sys.stderr)
            result = stacks
    else:  # first push of a branch, or no base given: nothing to compare with
        result = stacks
    encoded = json.dumps(result)
    print(encoded)
    if output := os.environ.get("GITHUB_OUTPUT"):
        with open(output, "a", encoding="utf-8") as fh:
            fh.write(f"stacks={encoded}\n")
            fh.write(f"unaffected={json.dumps(matrix_exclude(result, stacks))}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Print the commit a push to main is compared with to know whether it needs a deploy.

That is the newest ``production`` deployment's ``sha`` if its latest status is
``success`` and it is an ancestor of the head; otherwise an empty line and a warning
(every stack then counts as changed). Why not the push's ``before``:
docs/delivery.md#deploying. GitHub records a deployment for every job naming an
``environment:``
(https://docs.github.com/en/actions/writing-workflows/choosing-what-your-workflow-does/events-that-trigger-workflows#deployment),
read with ``gh api`` (https://docs.github.com/en/rest/deployments/deployments#list-deployments,
https://docs.github.com/en/rest/deployments/statuses#list-deployment-statuses)::

    python3 scripts/last_deployed.py --environment production --head <sha> [--repo owner/name]

``--repo`` defaults to ``$GITHUB_REPOSITORY``; ``gh`` reads its token from ``$GH_TOKEN``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Deployments looked at, newest first (one page of the list): if none of the last 30 to
# the environment succeeded, deploying again is the safe answer anyway.
PER_PAGE = 30

Json = Mapping[str, Any]


class DeploymentsUnavailable(Exception):
    """The deployments could not be read (``gh`` failed or answered something unexpected)."""


def _newest_first(items: Iterable[Json]) -> list[Json]:
    """``items`` (deployments or statuses) newest first, by ``created_at`` then ``id``.

    ``created_at`` is ISO 8601 (GitHub writes UTC, ``2012-07-20T01:19:13Z``), compared as
    times, not text; ``id`` breaks ties within a second. The API's own order is not
    relied on."""

    def key(item: Json) -> tuple[datetime, int]:
        created = datetime.fromisoformat(str(item["created_at"]).replace("Z", "+00:00"))
        if created.tzinfo is None:
            raise ValueError(f"created_at {item['created_at']!r} has no time zone")
        return created, int(item["id"])

    return sorted(items, key=key, reverse=True)


def latest_state(statuses: Iterable[Json]) -> str | None:
    """The ``state`` of the newest status in ``statuses``, or ``None`` if there is none."""
    ordered = _newest_first(statuses)
    return str(ordered[0]["state"]) if ordered else None


def newest_successful(
    deployments: Iterable[Json], statuses_of: Callable[[int], list[Json]]
) -> Json | None:
    """The newest deployment when its latest status is ``success``; otherwise ``None``.

    ``deployments`` are the list API's objects (``id``, ``sha``, ``created_at``);
    ``statuses_of(id)`` returns one deployment's statuses (``id``, ``state``,
    ``created_at``) and is called for the newest deployment only. An older success is
    not a sound base when a newer deployment failed, was cancelled or is still running:
    that ``pulumi up`` may have applied part of its change, and a later push that reverts
    it would diff as "unchanged" against the older success and never put prod back. A
    newest status of ``inactive`` (GitHub's mark for a superseded success outside
    production) does not count either: at worst that deploys again."""
    ordered = _newest_first(deployments)
    if not ordered:
        return None
    newest = ordered[0]
    return newest if latest_state(statuses_of(int(newest["id"]))) == "success" else None


_SHA = re.compile(r"[0-9a-f]{40}")


def diff_base(deployed: str | None, is_ancestor: Callable[[str], bool]) -> tuple[str, str]:
    """``(base, reason)``: the commit to diff the head against, ``""`` for "everything".

    ``deployed`` is the last successfully deployed commit (``None`` if there is none);
    ``is_ancestor(sha)`` says whether it is an ancestor of (or equal to) the head. Only an
    ancestor is a sound base: from any other commit a diff can hide changes."""
    if not deployed:
        return "", "the newest deployment did not succeed (or there is none)"
    if not _SHA.fullmatch(deployed):
        return "", f"the last deployed commit {deployed!r} is not a commit id"
    if not is_ancestor(deployed):
        return "", f"the last deployed commit {deployed} is not an ancestor of the head"
    return deployed, f"last successful deployment: {deployed}"


def gh_api(path: str, **query: str) -> Any:
    """The JSON ``gh api --method GET <path> -f key=value ...`` prints (query string
    parameters, https://cli.github.com/manual/gh_api); ``DeploymentsUnavailable`` if
    ``gh`` is missing, fails or prints something that is not JSON."""
    argv = ["gh", "api", "--method", "GET", path]
    for key, value in query.items():
        argv += ["-f", f"{key}={value}"]
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeploymentsUnavailable(f"gh api {path}: {exc}") from exc
    if run.returncode != 0:
        raise DeploymentsUnavailable(f"gh api {path}: {run.stderr.strip() or run.returncode}")
    try:
        return json.loads(run.stdout)
    except json.JSONDecodeError as exc:
        raise DeploymentsUnavailable(f"gh api {path}: not JSON ({exc})") from exc


def last_deployed_sha(repo: str, environment: str) -> str | None:
    """The ``sha`` of ``environment``'s newest successful deployment in ``repo``, or ``None``."""
    deployments = gh_api(
        f"repos/{repo}/deployments", environment=environment, per_page=str(PER_PAGE)
    )

    def statuses_of(deployment_id: int) -> list[Json]:
        found = gh_api(f"repos/{repo}/deployments/{deployment_id}/statuses", per_page="100")
        if not isinstance(found, list):
            raise DeploymentsUnavailable(f"statuses of deployment {deployment_id}: not a list")
        return found

    if not isinstance(deployments, list):
        raise DeploymentsUnavailable("deployments: not a list")
    try:
        found = newest_successful(deployments, statuses_of)
    except (KeyError, TypeError, ValueError) as exc:
        raise DeploymentsUnavailable(f"unexpected deployment data: {exc!r}") from exc
    return str(found["sha"]) if found else None


def git_is_ancestor(sha: str, head: str, cwd: Path) -> bool:
    """Whether ``sha`` is an ancestor of (or equal to) ``head`` in the clone at ``cwd``.

    ``git merge-base --is-ancestor`` exits 0 if so, 1 if not, and another code for a
    commit the clone does not have (gone after a force push): all but 0 mean no."""
    run = subprocess.run(
        ["git", "merge-base", "--is-ancestor", sha, head], cwd=cwd, capture_output=True
    )
    return run.returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--environment", required=True, help="GitHub environment, e.g. production")
    parser.add_argument("--head", default="HEAD", help="the commit about to be deployed")
    parser.add_argument("--repo", default=os.environ.get("GITHUB_REPOSITORY", ""))
    args = parser.parse_args(argv)

    try:
        if not args.repo:
            raise DeploymentsUnavailable("no --repo and no $GITHUB_REPOSITORY")
        deployed = last_deployed_sha(args.repo, args.environment)
        base, reason = diff_base(deployed, lambda sha: git_is_ancestor(sha, args.head, REPO))
    except Exception as exc:  # fail safe: whatever went wrong, deploy rather than skip
        base, reason = "", f"cannot read the deployments of {args.environment}: {exc}"
    if base:
        print(f"{args.environment}: {reason}", file=sys.stderr)
    else:
        print(f"::warning::{reason}; treating every stack as changed", file=sys.stderr)
    print(base)
    return 0


if __name__ == "__main__":
    sys.exit(main())

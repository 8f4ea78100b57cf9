"""`make pin-checksums`: record the release checksums the deploy verifies downloads against.

Downloads, over https, each pinned release's published checksum file and writes the
listed sha256 into the reference file, to be reviewed and committed:

- ``reference/rke-binary.json``: ``assets.<platform>.sha256`` of every pinned ``rke``
  asset, from the release's ``sha256sum.txt`` (``checksums_url``; RKE's release workflow
  writes it, ``.github/workflows/workflow.yaml`` "Generate sha256 file for release");
- ``reference/rke2-release.json``: ``artifacts.tarball_sha256``, from the release's
  ``sha256sum-amd64.txt`` (the file and line RKE2's ``install.sh`` checks its tarball
  against: ``download_checksums``, ``verify_tarball``).

A checksum file without the artifact's line, or a value that is not 64 hex digits,
changes nothing and exits 1. A value already recorded that the release now lists
differently is refused too (exit 1): a pin changes only by hand, after review.
``--github-url`` replaces ``https://github.com`` in every URL (tests point it at a
loopback server); ``--rke-pin`` and ``--rke2-release`` name other files to write.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from scripts.fetch_rke import MAX_SUMS, PIN, SHA256, https_open, parse_sha256sums

REFERENCE = Path(__file__).resolve().parent.parent / "reference"
RKE2_RELEASE = REFERENCE / "rke2-release.json"
GITHUB = "https://github.com"

Opener = Callable[[str], IO[bytes]]


class PinFailed(Exception):
    """A checksum could not be recorded (exit 1); no file was changed."""


def _rebase(url: str, github_url: str) -> str:
    if not url.startswith("https://"):
        raise PinFailed(f"refusing a checksum file not served over https: {url}")
    if github_url != GITHUB and url.startswith(GITHUB + "/"):
        return github_url.rstrip("/") + url[len(GITHUB) :]
    return url


def published(url: str, names: list[str], github_url: str, opener: Opener) -> dict[str, str]:
    """``{name: sha256}`` for each of ``names`` from the checksum file at ``url``."""
    where = _rebase(url, github_url)
    try:
        with opener(where) as stream:
            text = stream.read(MAX_SUMS).decode("utf-8", "replace")
    except OSError as err:
        raise PinFailed(f"downloading {where} failed: {err}") from None
    sums = parse_sha256sums(text)
    missing = [n for n in names if n not in sums]
    if missing:
        raise PinFailed(f"{where} lists no {', '.join(missing)}; nothing recorded")
    return {n: sums[n] for n in names}


def _keep_or_set(old: Any, new: str, what: str) -> str:
    if not SHA256.fullmatch(new):
        raise PinFailed(f"{what}: the release lists {new!r}, not a sha256")
    if old not in (None, new):
        raise PinFailed(
            f"{what}: recorded {old}, the release now lists {new}. A published checksum "
            "that changed is a reason to stop, not to re-pin: investigate, and edit the "
            "pin by hand only once you know why."
        )
    return new


def pin_rke(doc: dict[str, Any], github_url: str, opener: Opener, today: str) -> list[str]:
    """Fill ``doc`` (``rke-binary.json``) in place; returns what changed."""
    assets = doc["assets"]
    url = str(doc["checksums_url"])
    sums = published(url, [str(a["name"]) for a in assets.values()], github_url, opener)
    changed = []
    for key, asset in sorted(assets.items()):
        value = _keep_or_set(asset.get("sha256"), sums[asset["name"]], f"rke {key}")
        if asset.get("sha256") != value:
            asset["sha256"] = value
            changed.append(f"rke {doc['version']} {asset['name']}: {value}")
    if changed:
        doc["_sha256_status"] = (
            f"Recorded by `make pin-checksums` on {today} from {url}; compare with the "
            "release page from a second network before committing (docs/first-deploy.md)."
        )
    return changed


def pin_rke2(doc: dict[str, Any], github_url: str, opener: Opener, today: str) -> list[str]:
    """Fill ``doc`` (``rke2-release.json``) in place; returns what changed."""
    artifacts = doc["artifacts"]
    url = f"{artifacts['base_url']}/{artifacts['checksums']}"
    name = str(artifacts["tarball"])
    sums = published(url, [name], github_url, opener)
    value = _keep_or_set(artifacts.get("tarball_sha256"), sums[name], f"rke2 {name}")
    if artifacts.get("tarball_sha256") == value:
        return []
    artifacts["tarball_sha256"] = value
    artifacts["tarball_sha256_note"] = (
        f"Recorded by `make pin-checksums` on {today} from {url}; compare with the release "
        "page from a second network before committing (docs/first-deploy.md)."
    )
    return [f"rke2 {doc['version']} {name}: {value}"]


def _write(path: Path, doc: dict[str, Any]) -> None:
    """``doc`` into ``path`` in the file's own layout (rke-binary.json is indented by 2,
    rke2-release.json by 1), atomically."""
    second = path.read_text(encoding="utf-8").split("\n", 2)[1]
    indent = len(second) - len(second.lstrip(" ")) or 2
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None, opener: Opener = https_open) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rke-pin", type=Path, default=PIN)
    parser.add_argument("--rke2-release", type=Path, default=RKE2_RELEASE)
    parser.add_argument("--github-url", default=GITHUB, help="an https base for tests")
    args = parser.parse_args(argv)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    docs = {
        path: json.loads(path.read_text(encoding="utf-8"))
        for path in (args.rke_pin, args.rke2_release)
    }
    try:  # every file is read and checked before any is written
        changes = {
            args.rke_pin: pin_rke(docs[args.rke_pin], args.github_url, opener, today),
            args.rke2_release: pin_rke2(docs[args.rke2_release], args.github_url, opener, today),
        }
    except PinFailed as err:
        print(f"pin-checksums: {err}", file=sys.stderr)
        return 1
    for path, lines in changes.items():
        if lines:
            _write(path, docs[path])
        for line in lines:
            print(line)
    if any(changes.values()):
        print("Review `git diff reference/`, then commit it (docs/first-deploy.md).")
    else:
        print("nothing to change: every checksum is recorded")
    return 0


if __name__ == "__main__":
    sys.exit(main())

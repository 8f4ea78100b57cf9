"""`make pin-images`: record the digest of every image the program deploys itself.

For each entry of ``reference/images.json`` without a digest, asks the image's registry
through its HTTP API (the distribution spec, "Pulling manifests": ``HEAD
/v2/<name>/manifests/<tag>``) for the tag's ``Docker-Content-Digest``, with the Accept
types of the multi-platform index first, so the digest is the one ``docker pull`` resolves
the tag to on every platform. A registry that answers 401 names its token service in
``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` (the distribution token
authentication spec; Docker Hub's realm is ``https://auth.docker.io/token`` and gives
anonymous pull tokens); the token is fetched and the request repeated once.

Writes the digests into the file, to be reviewed and committed; the Deployments then pull
``<image>:<tag>@sha256:...`` (``components/services/workloads.py``, ``image_reference``).
A digest already recorded that the registry now reports differently is refused (exit 1):
a pin changes only by hand, after review. ``--registry-url`` replaces every entry's
registry (tests point it at a loopback server); only https, or http to a loopback address,
is accepted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

IMAGES = Path(__file__).resolve().parent.parent / "reference" / "images.json"
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
TIMEOUT = 30  # seconds per request
MAX_TOKEN = 1 << 20  # bytes of a token answer

Opener = Callable[[urllib.request.Request], Any]


class PinFailed(Exception):
    """A digest could not be recorded (exit 1); no file was changed."""


def _open(request: urllib.request.Request) -> Any:
    return urllib.request.urlopen(request, timeout=TIMEOUT)  # URLs checked by _safe


def _safe(url: str) -> str:
    """``url`` if it is https, or http to a loopback address (tests)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return url
    host = parts.hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if parts.scheme == "http" and loopback:
        return url
    raise PinFailed(f"refusing {url}: only https (or http to a loopback address)")


def _challenge(header: str) -> dict[str, str]:
    """The parameters of a ``Bearer realm="...",service="...",scope="..."`` challenge."""
    if not header.lower().startswith("bearer "):
        raise PinFailed(f"the registry asks for an unsupported authentication: {header!r}")
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def _token(challenge: dict[str, str], repository: str, opener: Opener) -> str:
    realm = challenge.get("realm")
    if not realm:
        raise PinFailed("the registry's challenge names no token realm")
    query = {"scope": challenge.get("scope") or f"repository:{repository}:pull"}
    if challenge.get("service"):
        query["service"] = challenge["service"]
    url = _safe(realm) + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
    try:
        with opener(urllib.request.Request(url)) as answer:
            body = json.loads(answer.read(MAX_TOKEN))
    except (OSError, ValueError) as err:
        raise PinFailed(f"no token from {realm}: {err}") from None
    token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise PinFailed(f"{realm} answered without a token")
    return token


def manifest_digest(registry: str, repository: str, tag: str, opener: Opener = _open) -> str:
    """The registry's ``Docker-Content-Digest`` of ``repository:tag``."""
    url = _safe(f"{registry.rstrip('/')}/v2/{repository}/manifests/{tag}")
    headers = {"Accept": ACCEPT}
    for attempt in range(2):  # anonymous, then once with the token the 401 points to
        request = urllib.request.Request(url, method="HEAD", headers=headers)
        try:
            with opener(request) as answer:
                digest = answer.headers.get("Docker-Content-Digest", "")
        except urllib.error.HTTPError as err:
            if err.code == 401 and attempt == 0:
                challenge = _challenge(err.headers.get("WWW-Authenticate", ""))
                headers["Authorization"] = f"Bearer {_token(challenge, repository, opener)}"
                continue
            raise PinFailed(f"HEAD {url}: HTTP {err.code}") from None
        except OSError as err:
            raise PinFailed(f"HEAD {url}: {err}") from None
        if not DIGEST.fullmatch(digest):
            raise PinFailed(f"HEAD {url}: no sha256 Docker-Content-Digest (got {digest!r})")
        return digest
    raise PinFailed(f"HEAD {url}: still unauthorized with the registry's token")


def pin(path: Path, registry_url: str | None = None, opener: Opener = _open) -> list[str]:
    """Record every missing digest in ``path``; the lines to print."""
    document = json.loads(path.read_text(encoding="utf-8"))
    lines = []
    today = dt.datetime.now(dt.UTC).date().isoformat()
    for name, entry in document["images"].items():
        registry = registry_url or entry["registry"]
        digest = manifest_digest(registry, entry["repository"], entry["tag"], opener)
        if entry.get("digest") and entry["digest"] != digest:
            raise PinFailed(
                f"{name}: the registry now reports {digest}, but {entry['digest']} is "
                "recorded; a tag that moved needs review: change the pin by hand"
            )
        if entry.get("digest") != digest:
            entry.update(
                digest=digest,
                recorded=today,
                source=f"HEAD {entry['registry']}/v2/{entry['repository']}/manifests/"
                f"{entry['tag']}, Docker-Content-Digest (make pin-images)",
            )
        lines.append(f"{name}@{digest}")
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=IMAGES)
    parser.add_argument("--registry-url", help="use this registry for every image (tests)")
    args = parser.parse_args(argv)
    try:
        for line in pin(args.images, args.registry_url):
            print(line)
    except PinFailed as err:
        print(f"pin-images: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.images}: review and commit it", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

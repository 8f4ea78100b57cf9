"""Install the pinned ``rke`` binary, verified by sha256, for one ``pulumi up`` job.

The pin is ``reference/rke-binary.json``; while an asset's sha256 is ``null`` the
release's own ``sha256sum.txt`` is trusted instead, with a loud warning
(docs/delivery.md#pinning-rke). ``install --dest DIR`` downloads, verifies and installs
``DIR/rke`` (deploy.yml puts ``DIR`` first on ``PATH``, so ``rke.runner`` runs exactly
this binary); ``verify FILE`` checks a binary on disk; ``record`` prints each pinned
asset's sha256 for review (``make pin-checksums`` writes the pin).

Exit status: 0 verified, 1 verification or download failed (a mismatch, or a checksum
file without the asset's line), 2 the pin is unusable (no asset for this platform, a URL
that is not https, a malformed sha256).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
PIN = REPO / "reference" / "rke-binary.json"
SHA256 = re.compile(r"[0-9a-f]{64}")
CHUNK = 1 << 20
TIMEOUT_S = 120
MAX_SUMS = 1 << 20  # a checksum file is a few lines; read no more than this

Opener = Callable[[str], IO[bytes]]


class PinError(Exception):
    """The pin cannot be used: no asset for this platform, or no valid sha256 (exit 2)."""


class VerifyError(Exception):
    """A download or a file does not match the pin (exit 1)."""


def load_pin(path: Path = PIN) -> dict[str, Any]:
    """The pin document (see ``reference/rke-binary.json``); raises PinError if malformed."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise PinError(f"{path}: cannot read the rke pin: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("assets"), dict):
        raise PinError(f"{path}: expected an object with 'version' and 'assets'")
    return doc


def platform_key(system: str | None = None, machine: str | None = None) -> str:
    """``linux-amd64`` style key of this machine (the suffix of RKE's asset names)."""
    system = (system or platform.system()).lower()
    machine = (machine or platform.machine()).lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
    return f"{system}-{arch.get(machine, machine)}"


def https_open(url: str) -> IO[bytes]:
    if not url.startswith("https://"):
        raise VerifyError(f"refusing to download over anything but https: {url}")
    response: IO[bytes] = urllib.request.urlopen(url, timeout=TIMEOUT_S)
    final = getattr(response, "url", url)
    if not str(final).startswith("https://"):
        response.close()
        raise VerifyError(f"{url} redirected to a non-https URL: {final}")
    return response


@dataclass(frozen=True)
class Asset:
    """One pinned release asset; ``sha256`` None while no checksum is recorded."""

    key: str
    name: str
    url: str
    sha256: str | None


def asset_for(pin: dict[str, Any], key: str) -> Asset:
    """The pinned asset for platform ``key``.

    Raises PinError when the platform has no asset, the URL is not https, or the sha256
    is neither null (not recorded yet) nor 64 lowercase hex digits.
    """
    version = pin.get("version", "?")
    asset = pin["assets"].get(key)
    if not isinstance(asset, dict):
        known = ", ".join(sorted(pin["assets"]))
        raise PinError(f"rke {version}: no pinned asset for platform {key} (pinned: {known})")
    url, digest = asset.get("url"), asset.get("sha256")
    if not isinstance(url, str) or not url.startswith("https://"):
        raise PinError(f"rke {version} {key}: asset URL must be https, got {url!r}")
    if digest is not None and (not isinstance(digest, str) or not SHA256.fullmatch(digest)):
        raise PinError(
            f"rke {version} {key}: reference/rke-binary.json sha256 must be null or 64 "
            f"lowercase hex digits, got {digest!r}"
        )
    name = asset.get("name") or url.rsplit("/", 1)[-1]
    return Asset(key, str(name), url, digest)


def checksums_url(pin: dict[str, Any], asset: Asset) -> str:
    """The release's ``sha256sum.txt``: https, and in the same release as the asset."""
    url = pin.get("checksums_url")
    if not isinstance(url, str) or not url.startswith("https://"):
        raise PinError(f"rke {pin.get('version')}: checksums_url must be https, got {url!r}")
    if url.rsplit("/", 1)[0] != asset.url.rsplit("/", 1)[0]:
        raise PinError(f"{url} is not in the release of {asset.url}")
    return url


def published_sha256(pin: dict[str, Any], asset: Asset, *, opener: Opener = https_open) -> str:
    """The asset's sha256 as the release's ``sha256sum.txt`` lists it: RKE's release
    workflow writes it beside the binaries (rancher/rke ``.github/workflows/workflow.yaml``,
    "Generate sha256 file for release"), as RKE2's ``install.sh`` verifies its tarball
    (``download_checksums``, ``verify_tarball``).

    Raises VerifyError when the file cannot be downloaded or has no line for the asset.
    """
    url = checksums_url(pin, asset)
    try:
        with opener(url) as stream:
            text = stream.read(MAX_SUMS).decode("utf-8", "replace")
    except OSError as err:
        raise VerifyError(f"downloading {url} failed: {err}") from None
    listed = parse_sha256sums(text).get(asset.name)
    if listed is None:
        raise VerifyError(f"{url} lists no {asset.name}: nothing to verify it against")
    return listed


def unpinned_warning(pin: dict[str, Any], asset: Asset) -> str:
    return (
        f"WARNING: reference/rke-binary.json records no sha256 for rke {pin.get('version')} "
        f"{asset.key}: {asset.name} is verified against the release's published "
        f"{pin.get('checksums_url')} only (trusting GitHub at download time, not a reviewed "
        "pin). Record the pin: `make pin-checksums`, review and commit the result "
        "(docs/first-deploy.md)."
    )


def _warn(text: str) -> None:
    print(text, file=sys.stderr)
    if os.environ.get("GITHUB_ACTIONS") == "true":  # an annotation on the run's summary
        print(f"::warning title=rke checksum not pinned::{text}", file=sys.stderr)


def expected_sha256(
    pin: dict[str, Any],
    asset: Asset,
    *,
    opener: Opener = https_open,
    warn: Callable[[str], None] = _warn,
) -> str:
    """The sha256 ``asset`` must have: the pinned one, which takes precedence (the
    release's file is then not even read); else the release's published one, warned."""
    if asset.sha256 is not None:
        return asset.sha256
    digest = published_sha256(pin, asset, opener=opener)
    warn(unpinned_warning(pin, asset))
    return digest


def sha256_of(stream: IO[bytes], sink: IO[bytes] | None = None) -> str:
    """Hex sha256 of everything read from ``stream``, copying it to ``sink`` if given."""
    digest = hashlib.sha256()
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        if sink is not None:
            sink.write(chunk)
    return digest.hexdigest()


def check_version(binary: Path, version: str) -> str:
    """Run ``binary --version`` and return its output.

    Raises VerifyError unless the output names ``version`` (e.g. ``rke version v1.8.14``).
    """
    try:
        run = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise VerifyError(f"{binary} --version did not run: {err}") from None
    out = (run.stdout + run.stderr).strip()
    if run.returncode != 0 or not re.search(rf"(^|\s){re.escape(version)}(\s|$)", out):
        raise VerifyError(f"{binary} --version printed {out!r}, expected {version}")
    return out


def install(
    dest: Path,
    *,
    pin: dict[str, Any],
    key: str | None = None,
    opener: Opener = https_open,
    version_check: bool = True,
    warn: Callable[[str], None] = _warn,
) -> Path:
    """Download, verify and install the pinned rke as ``dest/rke``; return its path.

    The download goes to a temporary file in ``dest`` and replaces ``dest/rke`` only
    after its sha256 matched, so a failed or tampered download never lands on PATH.
    Raises PinError (no usable pin) or VerifyError (mismatch, download failure).
    """
    asset = asset_for(pin, key or platform_key())
    url = asset.url
    expected = expected_sha256(pin, asset, opener=opener, warn=warn)
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = dest / "rke"
    fd, tmp_name = tempfile.mkstemp(prefix=".rke-", dir=dest)
    tmp = Path(tmp_name)
    try:
        try:
            with os.fdopen(fd, "wb") as sink, opener(url) as stream:
                actual = sha256_of(stream, sink)
        except OSError as err:
            raise VerifyError(f"downloading {url} failed: {err}") from None
        if not hmac.compare_digest(actual, expected):
            raise VerifyError(
                f"{url}: sha256 {actual} does not match the "
                f"{'pinned' if asset.sha256 else 'published'} {expected}; "
                "the download was discarded"
            )
        tmp.chmod(0o755)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    if version_check:
        check_version(target, str(pin.get("version")))
    return target


def verify(
    path: Path,
    *,
    pin: dict[str, Any],
    key: str | None = None,
    opener: Opener = https_open,
    warn: Callable[[str], None] = _warn,
) -> str:
    """Check a local binary against the pin (or, unpinned, the release's published
    sha256); return its sha256. Raises PinError/VerifyError."""
    asset = asset_for(pin, key or platform_key())
    expected = expected_sha256(pin, asset, opener=opener, warn=warn)
    with path.open("rb") as stream:
        actual = sha256_of(stream)
    if not hmac.compare_digest(actual, expected):
        which = "pinned" if asset.sha256 else "published"
        raise VerifyError(f"{path}: sha256 {actual} does not match the {which} {expected}")
    return actual


def parse_sha256sums(text: str) -> dict[str, str]:
    """``{file name: sha256}`` from a checksum file: ``sha256sum``'s ``<hex>  <name>`` or
    ``<hex> *<name>`` (RKE2's ``scripts/checksum``), and RKE's ``<hex> <name>`` with one
    space (its release workflow writes ``echo "$sum $file"``)."""
    sums: dict[str, str] = {}
    for line in text.splitlines():
        match = re.fullmatch(r"([0-9a-fA-F]{64}) [ *]?(?:\./)?(\S+)\s*", line)
        if match:
            sums[match[2]] = match[1].lower()
    return sums


def record(pin: dict[str, Any], *, opener: Opener = https_open) -> dict[str, str]:
    """``{platform: sha256}`` of every pinned asset, each checked against ``sha256sum.txt``.

    This only proves that the asset and the release's checksum file agree; the
    maintainer reviews the result before committing it (docs/delivery.md, 'Pinning rke').
    """
    with opener(str(pin["checksums_url"])) as stream:
        sums = parse_sha256sums(stream.read().decode("utf-8"))
    found: dict[str, str] = {}
    for key, asset in sorted(pin["assets"].items()):
        listed = sums.get(asset["name"])
        if listed is None:
            raise VerifyError(f"{pin['checksums_url']} lists no {asset['name']}")
        with opener(asset["url"]) as stream:
            actual = sha256_of(stream)
        if not hmac.compare_digest(actual, listed):
            raise VerifyError(f"{asset['url']}: sha256 {actual}, sha256sum.txt says {listed}")
        found[key] = actual
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pin", type=Path, default=PIN, help="pin file (default: %(default)s)")
    parser.add_argument("--platform", help="asset key, e.g. linux-amd64 (default: this machine)")
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="download, verify and install DEST/rke")
    inst.add_argument("--dest", type=Path, required=True)
    chk = sub.add_parser("verify", help="check a local rke binary against the pin")
    chk.add_argument("file", type=Path)
    sub.add_parser("record", help="print the sha256 of each pinned asset, checked upstream")
    args = parser.parse_args(argv)

    try:
        pin = load_pin(args.pin)
        if args.command == "install":
            path = install(args.dest, pin=pin, key=args.platform)
            print(f"installed {path} (rke {pin['version']}, sha256 verified)")
        elif args.command == "verify":
            digest = verify(args.file, pin=pin, key=args.platform)
            print(f"{args.file}: sha256 {digest} matches")
        else:
            print(json.dumps(record(pin), indent=2))
    except PinError as err:
        print(f"fetch_rke: {err}", file=sys.stderr)
        return 2
    except VerifyError as err:
        print(f"fetch_rke: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

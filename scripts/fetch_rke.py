"""Install the pinned ``rke`` binary, verified by sha256, for one ``pulumi up`` job.

The pin is ``reference/rke-binary.json``: RKE's release version and, per platform,
the asset URL and its sha256. Nothing is trusted that the pin does not name:

- ``install --dest DIR`` downloads the asset for this machine over https, refuses it
  unless its sha256 equals the pinned one, installs it as ``DIR/rke`` (0755) and checks
  that ``rke --version`` names the pinned version. A pin without a sha256 fails before
  anything is downloaded (fail closed). deploy.yml runs this before every ``pulumi up``
  and puts ``DIR`` first on ``PATH``, so ``rke/runner.py`` (``shutil.which("rke")``)
  runs exactly this binary.
- ``verify FILE`` checks a binary already on disk (a laptop, a prepared runner image).
- ``record`` prints the sha256 of each pinned asset after checking it against the
  release's own ``sha256sum.txt``, for a maintainer to review and copy into the pin.

Exit status: 0 verified, 1 verification or download failed, 2 the pin has no usable
sha256 (or no asset for this platform).
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
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
PIN = REPO / "reference" / "rke-binary.json"
SHA256 = re.compile(r"[0-9a-f]{64}")
CHUNK = 1 << 20
TIMEOUT_S = 120

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


def asset_for(pin: dict[str, Any], key: str) -> tuple[str, str]:
    """``(url, sha256)`` of the pinned asset for ``key``.

    Raises PinError when the platform has no asset, the URL is not https, or the sha256
    is missing or not 64 lowercase hex digits: nothing is downloaded without a hash.
    """
    version = pin.get("version", "?")
    asset = pin["assets"].get(key)
    if not isinstance(asset, dict):
        known = ", ".join(sorted(pin["assets"]))
        raise PinError(f"rke {version}: no pinned asset for platform {key} (pinned: {known})")
    url, digest = asset.get("url"), asset.get("sha256")
    if not isinstance(url, str) or not url.startswith("https://"):
        raise PinError(f"rke {version} {key}: asset URL must be https, got {url!r}")
    if not isinstance(digest, str) or not SHA256.fullmatch(digest):
        raise PinError(
            f"rke {version} {key}: reference/rke-binary.json records no verified sha256 "
            f"(got {digest!r}), so rke is not installed and `pulumi up` does not run. "
            "Record the sha256 from the release's sha256sum.txt as docs/delivery.md "
            "('Pinning rke') describes: `python scripts/fetch_rke.py record`."
        )
    return url, digest


def sha256_of(stream: IO[bytes], sink: IO[bytes] | None = None) -> str:
    """Hex sha256 of everything read from ``stream``, copying it to ``sink`` if given."""
    digest = hashlib.sha256()
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        if sink is not None:
            sink.write(chunk)
    return digest.hexdigest()


def _https_open(url: str) -> IO[bytes]:
    if not url.startswith("https://"):
        raise VerifyError(f"refusing to download over anything but https: {url}")
    response: IO[bytes] = urllib.request.urlopen(url, timeout=TIMEOUT_S)
    final = getattr(response, "url", url)
    if not str(final).startswith("https://"):
        response.close()
        raise VerifyError(f"{url} redirected to a non-https URL: {final}")
    return response


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
    opener: Opener = _https_open,
    version_check: bool = True,
) -> Path:
    """Download, verify and install the pinned rke as ``dest/rke``; return its path.

    The download goes to a temporary file in ``dest`` and replaces ``dest/rke`` only
    after its sha256 matched, so a failed or tampered download never lands on PATH.
    Raises PinError (no usable pin) or VerifyError (mismatch, download failure).
    """
    url, expected = asset_for(pin, key or platform_key())
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
                f"{url}: sha256 {actual} does not match the pinned {expected}; "
                "the download was discarded"
            )
        tmp.chmod(0o755)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    if version_check:
        check_version(target, str(pin.get("version")))
    return target


def verify(path: Path, *, pin: dict[str, Any], key: str | None = None) -> str:
    """Check a local binary against the pin; return its sha256. Raises PinError/VerifyError."""
    _, expected = asset_for(pin, key or platform_key())
    with path.open("rb") as stream:
        actual = sha256_of(stream)
    if not hmac.compare_digest(actual, expected):
        raise VerifyError(f"{path}: sha256 {actual} does not match the pinned {expected}")
    return actual


def parse_sha256sums(text: str) -> dict[str, str]:
    """``{file name: sha256}`` from ``sha256sum`` output: ``<hex>  <name>`` or ``<hex> *<name>``."""
    sums: dict[str, str] = {}
    for line in text.splitlines():
        match = re.fullmatch(r"([0-9a-fA-F]{64}) [ *](?:\./)?(\S+)\s*", line)
        if match:
            sums[match[2]] = match[1].lower()
    return sums


def record(pin: dict[str, Any], *, opener: Opener = _https_open) -> dict[str, str]:
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
            print(f"{args.file}: sha256 {digest} matches the pin")
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

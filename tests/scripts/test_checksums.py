"""Release checksums: what the deploy downloads is verified, pinned or not (issue 18, item 10).

Everything runs against an HTTPS server on loopback with a test CA (``SSL_CERT_FILE`` for
Python, ``CURL_CA_BUNDLE`` for curl), serving a release laid out as GitHub serves it:
``scripts/fetch_rke.py`` and the RKE2 node install script (taken from the user-data of a
rendered stack) run as they do on a deploy runner and on a node; ``scripts/pin_checksums.py``
(``make pin-checksums``) writes the pins. Formats of the published files: RKE's release
workflow writes ``<sha256> <name>`` (one space, ``.github/workflows/workflow.yaml`` of
rancher/rke); RKE2's ``scripts/checksum`` is ``sha256sum`` output (two spaces).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import http.server
import io
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.render_summary import build_summary, checksum_warnings
from tests.support.tools import debian_tool

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "reference"
GITHUB = "https://github.com"
FAKE_RKE = b"#!/bin/sh\necho 'rke version v1.8.14'\n"
RKE2_TARBALL = "rke2.linux-amd64.tar.gz"


# --- a release on an HTTPS server on loopback -------------------------------------------


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A CA and a certificate for 127.0.0.1 signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    out = tmp_path_factory.mktemp("tls")
    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("test CA")).issuer_name(name("test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False,
        ), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    tls = Tls(out / "ca.pem", out / "cert.pem", out / "key.pem")
    tls.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    tls.cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    tls.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return tls


@dataclass
class Release:
    """What the server serves: ``files`` by raw request path; ``requests`` it answered."""

    base: str
    ca: Path
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def serve(self, github_url: str, body: bytes) -> None:
        assert github_url.startswith(GITHUB + "/"), github_url
        self.files[github_url[len(GITHUB) :]] = body

    def url(self, github_url: str) -> str:
        return self.base + github_url[len(GITHUB) :]

    def env(self, **extra: str) -> dict[str, str]:
        """A process environment that trusts the test CA and has no proxy."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.ca.parent),
            "SSL_CERT_FILE": str(self.ca),
            "CURL_CA_BUNDLE": str(self.ca),
            **extra,
        }


@pytest.fixture
def release(tls: Tls) -> Iterator[Release]:
    served: Release

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.requests.append(self.path)
            body = served.files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert, tls.key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    served = Release(f"https://127.0.0.1:{httpd.server_address[1]}", tls.ca)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the rke binary on a deploy runner: scripts/fetch_rke.py ------------------------------


def rke_pin(tmp_path: Path, release: Release, sha256_value: str | None) -> Path:
    """reference/rke-binary.json with its URLs on the loopback server."""
    pin = json.loads((REFERENCE / "rke-binary.json").read_text())
    pin["checksums_url"] = release.url(pin["checksums_url"])
    for asset in pin["assets"].values():
        asset["url"] = release.url(asset["url"])
        asset["sha256"] = sha256_value
    path = tmp_path / "rke-binary.json"
    path.write_text(json.dumps(pin))
    return path


def serve_rke(release: Release, sums: str | None, binary: bytes = FAKE_RKE) -> None:
    pin = json.loads((REFERENCE / "rke-binary.json").read_text())
    release.serve(pin["assets"]["linux-amd64"]["url"], binary)
    if sums is not None:
        release.serve(pin["checksums_url"], sums.encode())


def rke_sums(amd64: str) -> str:
    """sha256sum.txt as RKE's release workflow writes it: `echo "$sum $file"`."""
    return f"{'1' * 64} rke_darwin-amd64\n{amd64} rke_linux-amd64\n{'2' * 64} rke_linux-arm64\n"


def fetch_rke(pin: Path, dest: Path, release: Release) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(ROOT / "scripts" / "fetch_rke.py"), "--pin", str(pin)]
    argv += ["--platform", "linux-amd64", "install", "--dest", str(dest)]
    return subprocess.run(
        argv, env=release.env(), capture_output=True, text=True, timeout=120, check=False
    )


def test_unpinned_rke_is_installed_after_checking_the_published_sha256(
    tmp_path: Path, release: Release
) -> None:
    serve_rke(release, rke_sums(sha256(FAKE_RKE)))
    result = fetch_rke(rke_pin(tmp_path, release, None), tmp_path / "bin", release)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "bin" / "rke").read_bytes() == FAKE_RKE
    assert "WARNING" in result.stderr and "make pin-checksums" in result.stderr
    assert any(p.endswith("/sha256sum.txt") for p in release.requests)


@pytest.mark.parametrize(
    ("sums", "message"),
    [
        (rke_sums("3" * 64), "does not match the published"),  # another binary
        (f"{'1' * 64} rke_darwin-amd64\n", "lists no rke_linux-amd64"),  # no line for it
        (None, "404"),  # no checksum file at all
    ],
    ids=["mismatch", "no-line", "no-file"],
)
def test_unpinned_rke_is_refused_unless_the_published_sha256_matches(
    tmp_path: Path, release: Release, sums: str | None, message: str
) -> None:
    serve_rke(release, sums)
    result = fetch_rke(rke_pin(tmp_path, release, None), tmp_path / "bin", release)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    bin_dir = tmp_path / "bin"
    assert not bin_dir.exists() or not list(bin_dir.iterdir())  # no partial download left


def test_the_pinned_rke_sha256_takes_precedence(tmp_path: Path, release: Release) -> None:
    serve_rke(release, rke_sums("3" * 64))  # the published file says something else
    good = fetch_rke(rke_pin(tmp_path, release, sha256(FAKE_RKE)), tmp_path / "bin", release)
    assert good.returncode == 0, good.stderr
    assert "WARNING" not in good.stderr
    assert not any(p.endswith("/sha256sum.txt") for p in release.requests)  # not even read

    serve_rke(release, rke_sums(sha256(FAKE_RKE)))  # the release agrees with the download
    bad = fetch_rke(rke_pin(tmp_path, release, "4" * 64), tmp_path / "bin2", release)
    assert bad.returncode == 1 and "does not match the pinned" in bad.stderr
    assert not (tmp_path / "bin2" / "rke").exists()


def test_rke_checksums_only_over_https_from_the_same_release(
    tmp_path: Path, release: Release
) -> None:
    serve_rke(release, rke_sums(sha256(FAKE_RKE)))
    pin_path = rke_pin(tmp_path, release, None)
    pin = json.loads(pin_path.read_text())
    for wrong in (
        pin["checksums_url"].replace("https://", "http://"),
        pin["checksums_url"].replace("/v1.8.14/", "/v1.8.13/"),
    ):
        pin_path.write_text(json.dumps({**pin, "checksums_url": wrong}))
        result = fetch_rke(pin_path, tmp_path / "bin", release)
        assert result.returncode == 2, result.stderr
        assert not (tmp_path / "bin" / "rke").exists()


# --- the RKE2 tarball on a node: the install script of the rendered user-data ----------


def rke2_tarball() -> bytes:
    data = b"#!/bin/sh\necho rke2\n"
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        info = tarfile.TarInfo("bin/rke2")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


TARBALL = rke2_tarball()


def rendered_install_script() -> str:
    """The install script an RKE2 node of the committed prod stack boots with."""
    from rke2.boot import RKE2_INSTALL
    from scripts.offline import reveal
    from tests.support.program_runs import committed_rke2, vms

    vm = vms(committed_rke2("prod"))[0]
    user_data = yaml.safe_load(str(reveal(vm.inputs["userData"])))
    (item,) = (f for f in user_data["write_files"] if f["path"] == RKE2_INSTALL)
    return str(item["content"])


def rke2_urls() -> tuple[str, str]:
    artifacts = json.loads((REFERENCE / "rke2-release.json").read_text())["artifacts"]
    return (
        f"{artifacts['base_url']}/{RKE2_TARBALL}",
        f"{artifacts['base_url']}/{artifacts['checksums']}",
    )


def serve_rke2(release: Release, sums: str | None) -> None:
    tarball, checksums = rke2_urls()
    release.serve(tarball, TARBALL)
    if sums is not None:
        release.serve(checksums, sums.encode())


def rke2_sums(value: str) -> str:
    """sha256sum-amd64.txt as RKE2's scripts/checksum writes it (sha256sum output)."""
    return f"{'5' * 64}  rke2-images.linux-amd64.tar.zst\n{value}  {RKE2_TARBALL}\n"


def run_install(
    script: str, tmp_path: Path, release: Release, scheme: str = "https"
) -> subprocess.CompletedProcess[str]:
    debian_tool("curl", "curl")  # the node image's curl; fails under CI=true when missing
    tarball, checksums = rke2_urls()
    env = release.env(
        PATH="/usr/bin:/bin",
        PREFIX=str(tmp_path / "prefix"),
        MULTICLOUD_NO_START="1",
        TARBALL_URL=release.url(tarball).replace("https://", f"{scheme}://"),
        SUMS_URL=release.url(checksums).replace("https://", f"{scheme}://"),
    )
    return subprocess.run(
        ["sh", "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def unpinned_script() -> str:
    if json.loads((REFERENCE / "rke2-release.json").read_text())["artifacts"]["tarball_sha256"]:
        pytest.skip("the RKE2 checksum is pinned: the pinned path is tested below")
    return rendered_install_script()


def test_an_unpinned_node_installs_rke2_after_checking_the_published_sha256(
    tmp_path: Path, release: Release, unpinned_script: str
) -> None:
    serve_rke2(release, rke2_sums(sha256(TARBALL)))
    result = run_install(unpinned_script, tmp_path, release)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "prefix" / "bin" / "rke2").exists()
    assert "WARNING" in result.stderr and "make pin-checksums" in result.stderr
    assert any(p.endswith("/sha256sum-amd64.txt") for p in release.requests)


@pytest.mark.parametrize(
    ("sums", "message"),
    [
        (rke2_sums("6" * 64), "differs from the release's"),
        (f"{'5' * 64}  rke2-images.linux-amd64.tar.zst\n", f"does not list {RKE2_TARBALL}"),
        (None, ""),  # curl: (22) The requested URL returned error: 404
    ],
    ids=["mismatch", "no-line", "no-file"],
)
def test_an_unpinned_node_refuses_rke2_unless_the_published_sha256_matches(
    tmp_path: Path, release: Release, unpinned_script: str, sums: str | None, message: str
) -> None:
    serve_rke2(release, sums)
    result = run_install(unpinned_script, tmp_path, release)
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "prefix").exists()


def test_a_node_downloads_over_https_only(
    tmp_path: Path, release: Release, unpinned_script: str
) -> None:
    serve_rke2(release, rke2_sums(sha256(TARBALL)))
    result = run_install(unpinned_script, tmp_path, release, scheme="http")
    assert result.returncode != 0 and not (tmp_path / "prefix").exists()
    assert release.requests == []  # curl refused before connecting


def test_the_pinned_rke2_sha256_takes_precedence(
    tmp_path: Path, release: Release, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rke2 import release as rke2_release
    from rke2 import scripts

    version = rke2_release.pinned_version()
    serve_rke2(release, rke2_sums("6" * 64))  # the published file says something else
    monkeypatch.setattr(scripts, "tarball_sha256", lambda v: sha256(TARBALL))
    good = run_install(scripts.install_script(version, "agent", "10.147.1.50"), tmp_path, release)
    assert good.returncode == 0, good.stderr
    assert "WARNING" not in good.stderr
    assert not any(p.endswith("/sha256sum-amd64.txt") for p in release.requests)

    serve_rke2(release, rke2_sums(sha256(TARBALL)))
    monkeypatch.setattr(scripts, "tarball_sha256", lambda v: "7" * 64)
    other = tmp_path / "other"
    other.mkdir()
    bad = run_install(scripts.install_script(version, "agent", "10.147.1.50"), other, release)
    assert bad.returncode != 0 and "differs from the pinned" in bad.stderr
    assert not (other / "prefix").exists()


# --- make pin-checksums: scripts/pin_checksums.py -------------------------------------------


def copies(tmp_path: Path) -> tuple[Path, Path]:
    rke, rke2 = tmp_path / "rke-binary.json", tmp_path / "rke2-release.json"
    rke.write_bytes((REFERENCE / "rke-binary.json").read_bytes())
    rke2.write_bytes((REFERENCE / "rke2-release.json").read_bytes())
    for path in (rke, rke2):  # start from "not recorded", whatever the checkout holds
        doc = json.loads(path.read_text())
        for asset in doc.get("assets", {}).values():
            asset["sha256"] = None
        if "artifacts" in doc:
            doc["artifacts"]["tarball_sha256"] = None
        indent = 2 if path is rke else 1
        path.write_text(json.dumps(doc, indent=indent, ensure_ascii=False) + "\n")
    return rke, rke2


def pin_checksums(release: Release, rke: Path, rke2: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "scripts.pin_checksums", "--rke-pin", str(rke)]
    argv += ["--rke2-release", str(rke2), "--github-url", release.base]
    return subprocess.run(
        argv, cwd=ROOT, env=release.env(), capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def without_pins(doc: dict[str, Any]) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    doc.pop("_sha256_status", None)
    for asset in doc.get("assets", {}).values():
        asset.pop("sha256")
    for key in ("tarball_sha256", "tarball_sha256_note"):
        doc.get("artifacts", {}).pop(key, None)
    return doc


def test_pin_checksums_records_the_published_sha256s(tmp_path: Path, release: Release) -> None:
    rke, rke2 = copies(tmp_path)
    before = {p: json.loads(p.read_text()) for p in (rke, rke2)}
    rke_pin_doc = before[rke]
    release.serve(
        rke_pin_doc["checksums_url"],
        f"{'a' * 64} rke_darwin-amd64\n{'b' * 64} rke_linux-amd64\n{'c' * 64} rke_linux-arm64\n"
        .encode(),
    )  # fmt: skip
    _, checksums = rke2_urls()
    release.serve(checksums, rke2_sums("d" * 64).encode())
    result = pin_checksums(release, rke, rke2)
    assert result.returncode == 0, result.stderr
    pinned = {p: json.loads(p.read_text()) for p in (rke, rke2)}
    assert {k: a["sha256"] for k, a in pinned[rke]["assets"].items()} == {
        "linux-amd64": "b" * 64, "linux-arm64": "c" * 64,
    }  # fmt: skip
    assert pinned[rke2]["artifacts"]["tarball_sha256"] == "d" * 64
    for path in (rke, rke2):  # nothing else moved, and the layout is the file's own
        assert without_pins(pinned[path]) == without_pins(before[path])
        indent = 2 if path is rke else 1
        assert (
            path.read_text() == json.dumps(pinned[path], indent=indent, ensure_ascii=False) + "\n"
        )
    # what the program reads from the pin: the installs now verify against it
    assert "Recorded by `make pin-checksums`" in pinned[rke2]["artifacts"]["tarball_sha256_note"]
    assert checksum_warnings("rke", tmp_path) == checksum_warnings("rke2", tmp_path) == []

    texts = {p: p.read_text() for p in (rke, rke2)}
    again = pin_checksums(release, rke, rke2)
    assert again.returncode == 0 and "nothing to change" in again.stdout
    assert {p: p.read_text() for p in (rke, rke2)} == texts

    release.serve(checksums, rke2_sums("e" * 64).encode())  # the release changed its file
    changed = pin_checksums(release, rke, rke2)
    assert changed.returncode == 1 and "investigate" in changed.stderr
    assert {p: p.read_text() for p in (rke, rke2)} == texts


def test_pin_checksums_changes_nothing_when_a_line_is_missing(
    tmp_path: Path, release: Release
) -> None:
    rke, rke2 = copies(tmp_path)
    texts = {p: p.read_text() for p in (rke, rke2)}
    release.serve(
        json.loads(rke.read_text())["checksums_url"],
        f"{'b' * 64} rke_linux-amd64\n{'c' * 64} rke_linux-arm64\n".encode(),
    )
    _, checksums = rke2_urls()
    release.serve(checksums, f"{'5' * 64}  rke2-images.linux-amd64.tar.zst\n".encode())
    result = pin_checksums(release, rke, rke2)
    assert result.returncode == 1 and f"lists no {RKE2_TARBALL}" in result.stderr
    assert {p: p.read_text() for p in (rke, rke2)} == texts  # the rke pin was not written


# --- the warnings: make render and the preview summary ------------------------------------


def test_unpinned_checksums_are_warned_in_the_render_and_the_preview_summary(
    tmp_path: Path,
) -> None:
    rke, _ = copies(tmp_path)
    [rke_warning] = checksum_warnings("rke", tmp_path)
    [rke2_warning] = checksum_warnings("rke2", tmp_path)
    assert "rke_linux-amd64" in rke_warning and "sha256sum.txt" in rke_warning
    assert RKE2_TARBALL in rke2_warning and "sha256sum-amd64.txt" in rke2_warning
    head = tmp_path / "head"
    (head / "rke2").mkdir(parents=True)
    for name in ("nodes.md", "architecture.mmd"):
        (head / name).write_text("x\n")
    (head / "rke2" / "node.yaml").write_text("a: 1\n")
    summary = build_summary("prod", None, head, reference=tmp_path)
    assert "> [!WARNING]" in summary and rke2_warning in summary
    (head / "cluster.yml").write_text("nodes: []\n")
    assert rke_warning in build_summary("prod", None, head, reference=tmp_path)

    pinned = json.loads(rke.read_text())
    for asset in pinned["assets"].values():
        asset["sha256"] = "f" * 64
    rke.write_text(json.dumps(pinned))
    assert "[!WARNING]" not in build_summary("prod", None, head, reference=tmp_path)


@pytest.mark.parametrize("engine", ["rke", "rke2"])
def test_make_render_warns_while_a_checksum_is_not_pinned(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from scripts import render
    from tests.support.program_runs import committed, committed_rke2

    run = (committed_rke2 if engine == "rke2" else committed)("prod")  # evaluated once
    monkeypatch.setattr(render, "run_program", lambda config, **_: run)
    reference = tmp_path / "reference"
    reference.mkdir()
    rke, rke2 = copies(reference)
    monkeypatch.setattr(
        render, "checksum_warnings", lambda e: checksum_warnings(e, reference=reference)
    )
    monkeypatch.setattr(render, "image_warnings", lambda images: [])  # tests/scripts/test_images.py
    assert render.render("prod", tmp_path / "build", "rke2" if engine == "rke2" else None) == 0
    err = capsys.readouterr().err
    [warning] = checksum_warnings(engine, reference)
    assert f"WARNING: checksum not pinned. {warning}" in err

    for path in (rke, rke2):  # pinned: silent
        doc = json.loads(path.read_text())
        for asset in doc.get("assets", {}).values():
            asset["sha256"] = "f" * 64
        if "artifacts" in doc:
            doc["artifacts"]["tarball_sha256"] = "f" * 64
        path.write_text(json.dumps(doc))
    assert render.render("prod", tmp_path / "build", "rke2" if engine == "rke2" else None) == 0
    assert "WARNING" not in capsys.readouterr().err


def test_the_render_summary_knows_the_engines_the_program_installs() -> None:
    """scripts/render_summary.py runs on the standard library alone, so it keeps its own
    table of engines: it must name the same ones as engines.py."""
    from engines import ENGINES
    from scripts import render_summary

    assert set(render_summary.ENGINES) == set(ENGINES)

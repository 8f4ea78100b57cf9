"""Images the program deploys itself run by digest once `make pin-images` recorded it.

`scripts/pin_images.py` is run as the Makefile runs it, against a registry on 127.0.0.1
that speaks the parts of the distribution API it uses, as Docker Hub does: an anonymous
``HEAD /v2/<name>/manifests/<tag>`` is answered 401 with ``WWW-Authenticate: Bearer
realm=...,service=...,scope=...`` (distribution's token authentication spec), the realm
hands out a token for that scope, and the authorized HEAD carries ``Docker-Content-Digest``.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.services import workloads
from scripts.offline import reveal, run_program, stack_config
from scripts.render_summary import build_summary, image_warnings
from tests.support.program_runs import committed
from tests.support.reference import REFERENCE

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
TOKEN = "anonymous-pull-token-5d1e"


def _digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


class Registry:
    """Manifests by ``repository:tag``; the requests it saw."""

    def __init__(self) -> None:
        self.manifests: dict[str, str] = {}
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # the token realm
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                registry.seen.append(("GET", self.path, dict(self.headers)))
                if url.path != "/token" or query.get("service") != "fake-registry":
                    self.send_error(404)
                    return
                body = json.dumps({"token": TOKEN, "scope": query.get("scope")}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_HEAD(self) -> None:  # the registry API
                registry.seen.append(("HEAD", self.path, dict(self.headers)))
                parts = self.path.split("/")  # /v2/<ns>/<name>/manifests/<tag>
                repository, tag = "/".join(parts[2:-2]), parts[-1]
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
                    self.send_response(401)
                    self.send_header(
                        "WWW-Authenticate",
                        f'Bearer realm="{realm}",service="fake-registry",'
                        f'scope="repository:{repository}:pull"',
                    )
                    self.end_headers()
                    return
                digest = registry.manifests.get(f"{repository}:{tag}")
                if digest is None or "image.index" not in self.headers.get("Accept", ""):
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Docker-Content-Digest", digest)
                self.send_header("Content-Type", "application/vnd.oci.image.index.v1+json")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def registry() -> Iterator[Registry]:
    fake = Registry()
    for name in json.loads((REFERENCE / "images.json").read_text())["images"]:
        fake.manifests[name] = _digest(name)
    # a short poll: shutdown() waits for serve_forever's next poll (0.5 s by default)
    thread = threading.Thread(target=fake.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def _pin(images: Path, registry_url: str) -> subprocess.CompletedProcess[str]:
    """`make pin-images` (python3 -m scripts.pin_images) on ``images``, against the URL."""
    command = [sys.executable, "-m", "scripts.pin_images", "--images", str(images)]
    return subprocess.run(
        [*command, "--registry-url", registry_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_pin_images_records_each_digest_from_the_registry(
    tmp_path: Path, registry: Registry
) -> None:
    images = tmp_path / "images.json"
    shutil.copy(REFERENCE / "images.json", images)
    result = _pin(images, registry.url)
    assert result.returncode == 0, result.stderr
    pinned = json.loads(images.read_text())["images"]
    for name, entry in pinned.items():
        assert entry["digest"] == _digest(name)
        assert entry["recorded"] and "Docker-Content-Digest" in entry["source"]
    # anonymous first, then the token the challenge pointed to, for that repository
    tokens = [path for method, path, _ in registry.seen if method == "GET"]
    assert any("scope=repository%3Afavonia%2Fcloudflare-ddns%3Apull" in p for p in tokens)


def test_a_digest_that_moved_is_not_overwritten(tmp_path: Path, registry: Registry) -> None:
    images = tmp_path / "images.json"
    shutil.copy(REFERENCE / "images.json", images)
    assert _pin(images, registry.url).returncode == 0
    before = images.read_text()
    registry.manifests["favonia/cloudflare-ddns:1.17.0"] = _digest("moved")
    result = _pin(images, registry.url)
    assert result.returncode == 1
    assert "change the pin by hand" in result.stderr
    assert images.read_text() == before


def test_plain_http_to_a_non_loopback_registry_is_refused(tmp_path: Path) -> None:
    images = tmp_path / "images.json"
    shutil.copy(REFERENCE / "images.json", images)
    result = _pin(images, "http://registry.example")  # refused before any request
    assert result.returncode == 1 and "only https" in result.stderr


def test_the_deployments_pull_by_digest_once_recorded(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = tmp_path / "images.json"
    shutil.copy(REFERENCE / "images.json", images)
    assert _pin(images, registry.url).returncode == 0
    monkeypatch.setattr(workloads, "IMAGES_FILE", images, raising=False)
    config, secrets = stack_config("prod")
    run = run_program(config, secret_keys=secrets, stack="prod")
    assert run.error is None, run.error
    pulled = {
        container["image"]
        for deployment in run.of_type(DEPLOYMENT)
        for container in reveal(deployment.inputs)["spec"]["template"]["spec"]["containers"]
    }
    assert f"favonia/cloudflare-ddns:1.17.0@{_digest('favonia/cloudflare-ddns:1.17.0')}" in pulled
    assert f"traefik/whoami:v1.10.3@{_digest('traefik/whoami:v1.10.3')}" in pulled
    assert image_warnings(sorted(pulled)) == []
    assert image_warnings(reference=tmp_path) == []  # the summary's view of the file


def test_until_recorded_the_tag_is_pulled_and_render_warns() -> None:
    pins = json.loads((REFERENCE / "images.json").read_text())["images"]
    unrecorded = sorted(name for name, entry in pins.items() if not entry["digest"])
    run = committed("prod")
    pulled = {
        container["image"]
        for deployment in run.of_type(DEPLOYMENT)
        for container in reveal(deployment.inputs)["spec"]["template"]["spec"]["containers"]
    }
    for name in unrecorded:
        if name in pulled:
            [warning] = image_warnings([name])
            assert "make pin-images" in warning
    assert image_warnings(["favonia/cloudflare-ddns:1.17.0@" + _digest("x")]) == []


def test_render_prints_the_image_warning(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from scripts import render

    pins = json.loads((REFERENCE / "images.json").read_text())["images"]
    if all(entry["digest"] for entry in pins.values()):
        pytest.fail("every image is pinned: this test needs an unpinned reference copy")
    assert render.render("prod", tmp_path) == 0
    err = capsys.readouterr().err
    assert "WARNING: image not pinned by digest. favonia/cloudflare-ddns:1.17.0" in err


def test_the_preview_summary_warns_until_recorded(tmp_path: Path, registry: Registry) -> None:
    head = tmp_path / "head"
    head.mkdir()
    for name in ("nodes.md", "architecture.mmd", "cluster.yml"):
        (head / name).write_text("x\n")
    summary = build_summary("prod", None, head)
    assert "**Image not pinned by digest.** favonia/cloudflare-ddns:1.17.0" in summary
    pinned = tmp_path / "reference"
    shutil.copytree(REFERENCE, pinned)
    assert _pin(pinned / "images.json", registry.url).returncode == 0
    assert "Image not pinned by digest" not in build_summary("prod", None, head, pinned)

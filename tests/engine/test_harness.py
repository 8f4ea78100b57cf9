"""The engine tests' harness (tests/engine/harness.py): the network namespace its commands
run in, and the fake Central answering there over HTTPS as the program's client reaches it
(components/overlay/zerotier/central.py, trust from SSL_CERT_FILE)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.harness import (
    CENTRAL_URL,
    HttpsCentral,
    NetworkNamespace,
    make_test_ca,
)
from tests.engine.tools import ROOT

CREATE_NETWORK = f"""
from components.overlay.zerotier.central import CentralClient
print(CentralClient("tok-1", {CENTRAL_URL!r}).create_network({{"config": {{"name": "n"}}}})["id"])
"""


@pytest.fixture
def netns() -> Iterator[NetworkNamespace]:
    ns = NetworkNamespace()
    yield ns
    ns.close()


def _client(netns: NetworkNamespace, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*netns.run_prefix, str(ROOT / "venv" / "bin" / "python"), "-c", CREATE_NETWORK],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_fake_central_answers_https_in_the_namespace_only(
    netns: NetworkNamespace, tmp_path: Path
) -> None:
    ca, cert, key = make_test_ca(tmp_path)
    central = HttpsCentral("tok-1", netns.listen("127.0.0.1", 443), cert, key)
    central.start()
    try:
        env = {k: v for k, v in os.environ.items() if k != "SSL_CERT_FILE"}
        trusted = _client(netns, env | {"SSL_CERT_FILE": str(ca)})
        assert trusted.returncode == 0, trusted.stderr
        assert trusted.stdout.strip() in central.networks
        assert central.requests == [("POST", "/api/v1/network")]
        untrusted = _client(netns, env)  # the system's CAs do not know the test CA
        assert untrusted.returncode != 0
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
    finally:
        central.stop()


def test_the_namespace_reaches_nothing_but_loopback(netns: NetworkNamespace) -> None:
    routes = subprocess.run(
        [*netns.run_prefix, "ip", "-o", "route", "show"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert routes.strip() == ""  # no default route, no interface but lo
    links = subprocess.run(
        [*netns.run_prefix, "ip", "-o", "link", "show"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]

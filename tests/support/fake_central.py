"""A fake ZeroTier Central: a real HTTP server on 127.0.0.1 with networks and members.

Use the ``central`` fixture (import ``central_fixture`` into a test module). It also
shortens the client's retry policy so retries cost milliseconds. ``fail_next(status, n)``
makes the next n requests answer ``status`` (429s carry ``Retry-After: 0``);
``stall_next(method, path, seconds)`` holds the answer to the next such request that long (a
client timeout shorter than it times out).
"""

import copy
import json
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from components.overlay.zerotier import central as central_module

TOKEN = "fake-central-token-4b1d"
_NETWORK = re.compile(r"/api/v1/network/([^/]+)")
_MEMBER = re.compile(r"/api/v1/network/([^/]+)/member/([^/]+)")


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    """Merge like Central: nested objects field by field, everything else replaced."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


class FakeCentral:
    """State and request log of the fake; ``url`` is the base URL for CentralClient."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.networks: dict[str, dict[str, Any]] = {}
        self.members: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.authorizations: list[str] = []
        self._failures: deque[int] = deque()
        self._stalls: list[tuple[str, str, float, bool]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def fail_next(self, status: int, count: int = 1) -> None:
        with self._lock:
            self._failures.extend([status] * count)

    def stall_next(self, method: str, path: str, seconds: float, *, applied: bool = True) -> None:
        """Answer the next ``method path`` request (e.g. ``POST /api/v1/network``) only after
        ``seconds``; ``applied``: the request takes effect first, as when Central did the work
        and only its answer was lost, else the connection is closed unanswered."""
        with self._lock:
            self._stalls.append((method, path, seconds, applied))

    def take_stall(self, method: str, path: str) -> tuple[float, bool]:
        """(seconds, applied) of a stall waiting for this request, else (0, True); a request
        stalled unapplied is logged here (``handle`` logs the others)."""
        with self._lock:
            for index, (m, p, seconds, applied) in enumerate(self._stalls):
                if (m, p) == (method, path):
                    del self._stalls[index]
                    if not applied:
                        self.requests.append((method, path))
                    return seconds, applied
        return 0.0, True

    def add_network(self, network_id: str | None = None, **config: Any) -> str:
        with self._lock:
            return self._create_network({"config": config}, network_id)

    def _create_network(self, body: dict[str, Any], network_id: str | None = None) -> str:
        network_id = network_id or secrets.token_hex(8)
        network: dict[str, Any] = {
            "id": network_id,
            "description": "",
            "config": {
                "id": network_id,
                "creationTime": int(time.time() * 1000),  # Central's stamp, in ms
                "name": "",
                "private": True,
                "mtu": 2800,
                "routes": [],
                "ipAssignmentPools": [],
                "v4AssignMode": {"zt": True},
            },
        }
        _merge(network, body)
        self.networks[network_id] = network
        return network_id

    def handle(self, method: str, path: str, auth: str, body: Any) -> tuple[int, Any, bool]:
        """(status, JSON answer, whether it is a 429 to send Retry-After with)."""
        with self._lock:
            self.requests.append((method, path))
            self.authorizations.append(auth)
            if self._failures:
                status = self._failures.popleft()
                return status, {"message": "injected failure"}, status == 429
            scheme, _, token = auth.partition(" ")
            if scheme.lower() not in ("token", "bearer") or token != self.token:
                return 401, {"message": "unauthorized"}, False
            return (*self._route(method, path, body), False)

    def _route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if path == "/api/v1/network" and method == "POST":
            return 200, self.networks[self._create_network(body)]
        if path == "/api/v1/network" and method == "GET":
            return 200, list(self.networks.values())
        if match := _MEMBER.fullmatch(path):
            return self._member(method, match[1], match[2], body)
        if match := _NETWORK.fullmatch(path):
            network_id = match[1]
            if network_id not in self.networks:
                return 404, {"message": "network not found"}
            if method == "POST":
                _merge(self.networks[network_id], body)
            elif method == "DELETE":
                self.members = {k: v for k, v in self.members.items() if k[0] != network_id}
                return 200, self.networks.pop(network_id)
            return 200, self.networks[network_id]
        return 404, {"message": "no such route"}

    def _member(self, method: str, network_id: str, node_id: str, body: Any) -> tuple[int, Any]:
        key = (network_id, node_id)
        if network_id not in self.networks:
            return 404, {"message": "network not found"}
        if method == "POST":
            member = self.members.setdefault(
                key,
                {
                    "id": f"{network_id}-{node_id}",
                    "networkId": network_id,
                    "nodeId": node_id,
                    "name": "",
                    "description": "",
                    "config": {"authorized": False, "ipAssignments": [], "noAutoAssignIps": False},
                },
            )
            _merge(member, body)
            return 200, member
        if key not in self.members:
            return 404, {"message": "member not found"}
        if method == "DELETE":
            return 200, self.members.pop(key)
        return 200, self.members[key]


def _handler(fake: FakeCentral) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else {}
            auth = self.headers.get("Authorization", "")
            stall, applied = fake.take_stall(self.command, self.path)
            if not applied:
                time.sleep(stall)
                self.close_connection = True
                return
            status, answer, rate_limited = fake.handle(self.command, self.path, auth, body)
            data = json.dumps(answer).encode()
            time.sleep(stall)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if rate_limited:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up waiting (a stall) and closed the connection
                self.close_connection = True

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

    return Handler


FAST_RETRY = central_module.RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.01)


@pytest.fixture(name="central")
def central_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCentral]:
    """A running fake; clients created without a retry policy retry fast meanwhile."""
    monkeypatch.setattr(central_module, "DEFAULT_RETRY", FAST_RETRY)
    fake = FakeCentral()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()

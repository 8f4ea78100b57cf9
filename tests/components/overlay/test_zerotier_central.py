"""The Central client against a fake Central over real HTTP."""

import socket
import urllib.request

import pytest

from components.overlay.zerotier.central import (
    CentralAuthError,
    CentralClient,
    CentralError,
    CentralNotFoundError,
    CentralRateLimitError,
    CentralRequestError,
    CentralServerError,
    CentralUnreachableError,
    NetworkNotFoundError,
    RetryPolicy,
)
from tests.support.fake_central import TOKEN, FakeCentral, central_fixture  # noqa: F401

NODE = "8e4df28b72"


def client(central: FakeCentral, token: str = TOKEN) -> tuple[CentralClient, list[float]]:
    sleeps: list[float] = []
    return CentralClient(token, central.url, timeout=5, sleep=sleeps.append), sleeps


def test_token_is_sent_and_network_read(central: FakeCentral) -> None:
    network_id = central.add_network(name="overlay")
    api, _ = client(central)
    assert api.get_network(network_id)["config"]["name"] == "overlay"
    assert central.authorizations == [f"token {TOKEN}"]


def test_fake_accepts_bearer_too(central: FakeCentral) -> None:
    network_id = central.add_network()
    request = urllib.request.Request(f"{central.url}/network/{network_id}")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def test_bad_token_is_an_auth_error_without_the_token(central: FakeCentral) -> None:
    network_id = central.add_network()
    wrong = "wrong-token-9f8e7d"
    api, sleeps = client(central, wrong)
    with pytest.raises(CentralAuthError, match="refused the API token") as caught:
        api.get_network(network_id)
    assert wrong not in str(caught.value) and wrong not in repr(api)
    assert sleeps == []  # not retried


def test_unknown_network(central: FakeCentral) -> None:
    api, _ = client(central)
    with pytest.raises(NetworkNotFoundError, match=r"0123456789abcdef.*does not exist"):
        api.get_network("0123456789abcdef")
    with pytest.raises(NetworkNotFoundError):
        api.upsert_member("0123456789abcdef", NODE, ip="10.147.0.10")
    assert api.get_member("0123456789abcdef", NODE) is None


def test_member_upsert_merges_and_get_member_is_none_when_missing(central: FakeCentral) -> None:
    network_id = central.add_network()
    api, _ = client(central)
    assert api.get_member(network_id, NODE) is None
    api.upsert_member(network_id, NODE, ip="10.147.0.10", name="n1", description="d")
    api.upsert_member(network_id, NODE, authorized=False)
    member = api.get_member(network_id, NODE)
    assert member is not None
    assert member["name"] == "n1" and member["description"] == "d"
    assert member["config"] == {
        "authorized": False,
        "ipAssignments": ["10.147.0.10"],
        "noAutoAssignIps": True,
    }
    api.delete_member(network_id, NODE)
    with pytest.raises(CentralNotFoundError, match=f"member {NODE}"):
        api.delete_member(network_id, NODE)


def test_network_create_update_delete(central: FakeCentral) -> None:
    api, _ = client(central)
    network_id = api.create_network({"config": {"name": "a", "mtu": 2800}})["id"]
    api.update_network(network_id, {"config": {"name": "b"}, "description": "x"})
    network = api.get_network(network_id)
    assert (network["config"]["name"], network["config"]["mtu"]) == ("b", 2800)
    assert network["description"] == "x"
    api.delete_network(network_id)
    assert network_id not in central.networks


def test_rate_limit_burst_is_retried_honouring_retry_after(central: FakeCentral) -> None:
    network_id = central.add_network()
    api, sleeps = client(central)
    central.fail_next(429, 3)
    api.upsert_member(network_id, NODE, ip="10.147.0.10")
    assert sleeps == [0.0, 0.0, 0.0]
    assert central.members[(network_id, NODE)]["config"]["authorized"] is True


def test_server_errors_are_retried_with_backoff(central: FakeCentral) -> None:
    network_id = central.add_network()
    api, sleeps = client(central)
    central.fail_next(503, 2)
    assert api.get_network(network_id)["id"] == network_id
    assert len(sleeps) == 2 and all(0 < s <= api.retry.max_delay for s in sleeps)


def test_rate_limit_exhausted(central: FakeCentral) -> None:
    network_id = central.add_network()
    api, sleeps = client(central)
    central.fail_next(429, 10)
    with pytest.raises(CentralRateLimitError, match=r"rate limited.*429.*after 4 attempts") as e:
        api.get_network(network_id)
    assert TOKEN not in str(e.value)
    assert len(sleeps) == 3 and len(central.requests) == 4


def test_server_error_exhausted(central: FakeCentral) -> None:
    network_id = central.add_network()
    api, _ = client(central)
    central.fail_next(500, 10)
    with pytest.raises(CentralServerError, match="HTTP 500") as caught:
        api.delete_network(network_id)
    assert TOKEN not in str(caught.value)


def test_create_network_is_not_retried_after_a_server_error(central: FakeCentral) -> None:
    api, _ = client(central)
    central.fail_next(502)
    with pytest.raises(CentralServerError, match="not retried"):
        api.create_network({"config": {"name": "a"}})
    assert len(central.requests) == 1


def test_other_client_errors_are_not_retried(central: FakeCentral) -> None:
    api, sleeps = client(central)
    central.fail_next(400)
    with pytest.raises(CentralRequestError, match=r"HTTP 400.*injected failure"):
        api.get_network(central.add_network())
    assert sleeps == []


def test_unreachable_is_retried_then_reported() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps: list[float] = []
    api = CentralClient(
        TOKEN,
        f"http://127.0.0.1:{port}/api/v1",
        timeout=2,
        retry=RetryPolicy(attempts=2, base_delay=0.0),
        sleep=sleeps.append,
    )
    with pytest.raises(CentralUnreachableError, match="no answer") as caught:
        api.get_network("0123456789abcdef")
    assert TOKEN not in str(caught.value) and len(sleeps) == 1


def test_ids_are_validated_before_building_a_path(central: FakeCentral) -> None:
    api, _ = client(central)
    with pytest.raises(ValueError, match="network id"):
        api.get_network("../../network")
    with pytest.raises(ValueError, match="node id"):
        api.get_member("0123456789abcdef", "x/../y")


def test_retry_delays_are_bounded() -> None:
    policy = RetryPolicy(attempts=10, base_delay=1.0, max_delay=5.0)
    assert all(0.5 <= policy.delay(0, None) <= 1.0 for _ in range(20))
    assert policy.delay(9, None) <= 5.0
    assert policy.delay(0, 120.0) == 5.0
    assert policy.delay(3, 0.0) == 0.0


def test_an_empty_token_is_refused_up_front() -> None:
    with pytest.raises(CentralError, match="no ZeroTier Central API token"):
        CentralClient("")


def test_a_redirect_never_carries_the_token_to_another_host() -> None:
    # Central at host A answers 302 to host B: urllib follows it, and B must not get the
    # token (urllib copies ordinary headers to the redirect target, whatever its host).
    import http.server
    import threading

    seen: list[str | None] = []

    class Target(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            body = b'{"id": "x", "config": {"name": "elsewhere"}}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    target = http.server.HTTPServer(("127.0.0.1", 0), Target)

    class Redirect(Target):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{target.server_port}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()

    origin = http.server.HTTPServer(("127.0.0.1", 0), Redirect)
    threads = [  # a short poll: shutdown() waits for the next one (0.5 s by default)
        threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True)
        for s in (target, origin)
    ]
    for t in threads:
        t.start()
    try:
        api = CentralClient(TOKEN, f"http://127.0.0.1:{origin.server_port}", timeout=5)
        api.get_network("8056c2e21c000001")
    finally:
        for server in (target, origin):
            server.shutdown()
            server.server_close()
    assert seen == [f"token {TOKEN}", None]

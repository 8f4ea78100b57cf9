"""A small client for the ZeroTier Central API (stdlib only).

Retries 429 and 5xx answers and network failures with bounded exponential backoff,
honouring Retry-After. Every failure is a CentralError whose message says what was
being done and why it failed; the API token never appears in one.
"""

import email.utils
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .naming import is_network_id, is_node_id

DEFAULT_BASE_URL = "https://api.zerotier.com/api/v1"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry: ``attempts`` tries in all, delays doubling from
    ``base_delay`` (with jitter) and never above ``max_delay``, Retry-After included."""

    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, retry: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        backoff = min(self.base_delay * 2**retry, self.max_delay)
        return backoff * random.uniform(0.5, 1.0)


DEFAULT_RETRY = RetryPolicy()
"""Read when a client is created without a policy; tests shorten it."""


class CentralError(Exception):
    """A ZeroTier Central API call failed."""


class CentralAuthError(CentralError):
    """Central refused the token (HTTP 401/403)."""


class CentralNotFoundError(CentralError):
    """The network or member does not exist (HTTP 404)."""


class NetworkNotFoundError(CentralNotFoundError):
    """The network does not exist, or the token cannot see it."""


class CentralRateLimitError(CentralError):
    """Still rate limited (HTTP 429) after every retry."""


class CentralServerError(CentralError):
    """Central kept failing (HTTP 5xx) after every retry."""


class CentralRequestError(CentralError):
    """Central rejected the request (another HTTP 4xx)."""


class CentralUnreachableError(CentralError):
    """Central could not be reached or did not answer in time, after every retry."""


class _Retryable(Exception):
    def __init__(self, error: CentralError, retry_after: float | None = None) -> None:
        self.error = error
        self.retry_after = retry_after


class CentralClient:
    """ZeroTier Central, authenticated with an API token.

    Create-network is not retried after a server error or timeout: a retry could create
    a second network. Everything else is idempotent and retried.
    """

    def __init__(
        self,
        token: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not token:
            raise CentralAuthError("no ZeroTier Central API token was given")
        self._token = token
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry or DEFAULT_RETRY
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"CentralClient(base_url={self.base_url!r})"

    def get_network(self, network_id: str) -> dict[str, Any]:
        return self._call("GET", _network_path(network_id), what=f"read network {network_id}")

    def list_networks(self) -> list[dict[str, Any]]:
        """Every network the token can see (``GET /network``, Central's getNetworkList)."""
        networks: list[dict[str, Any]] = self._call("GET", "/network", what="list networks") or []
        return networks

    def create_network(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a network from ``{"config": {...}, "description": ...}``; returns it with id."""
        return self._call("POST", "/network", body, what="create a network", idempotent=False)

    def update_network(self, network_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``body`` into the network's settings."""
        path = _network_path(network_id)
        return self._call("POST", path, body, what=f"update network {network_id}")

    def delete_network(self, network_id: str) -> None:
        path = _network_path(network_id)
        self._call("DELETE", path, what=f"delete network {network_id}")

    def get_member(self, network_id: str, node_id: str) -> dict[str, Any] | None:
        """The member, or None if Central has no such member."""
        what = f"read member {node_id} of network {network_id}"
        try:
            return self._call("GET", _member_path(network_id, node_id), what=what, member=True)
        except CentralNotFoundError:
            return None

    def upsert_member(
        self,
        network_id: str,
        node_id: str,
        *,
        authorized: bool = True,
        ip: str | None = None,
        name: str | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Create or update a member; it need not have joined yet. Unset fields are kept.

        With ``ip``, the member gets exactly that address and no auto-assigned ones.
        """
        config: dict[str, Any] = {"authorized": authorized}
        if ip is not None:
            config |= {"ipAssignments": [ip], "noAutoAssignIps": True}
        body: dict[str, Any] = {"config": config}
        if name is not None:
            body["name"] = name
        if description is not None:
            body["description"] = description
        what = f"authorize member {node_id} of network {network_id}"
        return self._call("POST", _member_path(network_id, node_id), body, what=what)

    def delete_member(self, network_id: str, node_id: str) -> None:
        what = f"delete member {node_id} of network {network_id}"
        self._call("DELETE", _member_path(network_id, node_id), what=what, member=True)

    def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        what: str,
        idempotent: bool = True,
        member: bool = False,
    ) -> Any:
        retry = 0
        while True:
            try:
                return self._once(method, path, body, what, idempotent, member)
            except _Retryable as failure:
                if retry + 1 >= self.retry.attempts:
                    raise failure.error from None
                self._sleep(self.retry.delay(retry, failure.retry_after))
                retry += 1

    def _once(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        what: str,
        idempotent: bool,
        member: bool,
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        # Unredirected: urllib's HTTPRedirectHandler.redirect_request copies req.headers to
        # the new request, whatever its host (even https -> http); the token must go only
        # to zerotierCentralUrl's host, so a redirect arrives there without it.
        request.add_unredirected_header("Authorization", f"token {self._token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            raise self._http_error(error, what, idempotent, member) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            failure = CentralUnreachableError(
                self._redact(f"cannot {what}: no answer from {self.base_url} ({reason})")
            )
            if idempotent:
                raise _Retryable(failure) from None
            raise failure from None
        return json.loads(text) if text.strip() else None

    def _http_error(
        self, error: urllib.error.HTTPError, what: str, idempotent: bool, member: bool
    ) -> Exception:
        status = error.code
        detail = _detail(error)
        if status in (401, 403):
            return CentralAuthError(
                f"cannot {what}: ZeroTier Central refused the API token (HTTP {status}); "
                "check that it is valid and can manage this network"
            )
        if status == 404:
            if member:
                return CentralNotFoundError(f"cannot {what}: no such member (HTTP 404)")
            return NetworkNotFoundError(
                f"cannot {what}: the network does not exist or the token cannot see it (HTTP 404)"
            )
        attempts = self.retry.attempts
        if status == 429:
            message = f"cannot {what}: still rate limited by ZeroTier Central (HTTP 429)"
            failure: CentralError = CentralRateLimitError(f"{message} after {attempts} attempts")
            return _Retryable(failure, _retry_after(error))
        if status >= 500:
            message = f"cannot {what}: ZeroTier Central server error (HTTP {status}{detail})"
            if not idempotent:
                return CentralServerError(self._redact(message + "; not retried"))
            failure = CentralServerError(self._redact(f"{message} after {attempts} attempts"))
            return _Retryable(failure, _retry_after(error))
        return CentralRequestError(
            self._redact(f"cannot {what}: ZeroTier Central rejected it (HTTP {status}{detail})")
        )

    def _redact(self, message: str) -> str:
        return message.replace(self._token, "[token]")


def _network_path(network_id: str) -> str:
    if not is_network_id(network_id):
        raise ValueError(f"ZeroTier network id {network_id!r} is not 16 lower-case hex digits")
    return f"/network/{network_id}"


def _member_path(network_id: str, node_id: str) -> str:
    if not is_node_id(node_id):
        raise ValueError(f"ZeroTier node id {node_id!r} is not 10 lower-case hex digits")
    return f"{_network_path(network_id)}/member/{node_id}"


def _detail(error: urllib.error.HTTPError) -> str:
    """A short excerpt of Central's explanation, if it gave one."""
    try:
        text = error.read(300).decode(errors="replace").strip()
    except OSError:
        return ""
    return f": {text}" if text else ""


def _retry_after(error: urllib.error.HTTPError) -> float | None:
    value = error.headers.get("Retry-After") if error.headers else None
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)

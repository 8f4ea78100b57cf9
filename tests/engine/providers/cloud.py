"""The fake cloud every stand-in provider process shares: a JSON state file, an event log
and injected faults, all in one directory (``$MULTICLOUD_FAKE_CLOUD_DIR``).

- ``state.json``: ``{"resources": {id: {...}}, "counters": {name: n}}``: the live resources
  (type, name, urn, provider, outputs) and, per resource name, how many were ever created,
  so a replacement gets a new id.
- ``events.jsonl``: one JSON object a line, appended for every Create/Update/Delete/Read
  (time, provider, method, type, name, urn, id): the order the engine drove the clouds in.
- ``faults.json`` (written by a test): a list of ``{"method", "name" or "urn" or "type",
  "times", "code", "message"}``; a matching call fails with that gRPC status (``UNKNOWN``
  by default, as a provider reports a cloud's HTTP 500) and ``times`` counts down.
- ``nodes/<vm id>/``: a booted VM's sshd and node emulator (tests/engine/providers/nodes.py),
  when ``$MULTICLOUD_FAKE_NODES`` is set.

Every read-modify-write holds an exclusive ``flock`` on ``state.lock``: the engine runs one
process per provider and calls them concurrently.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.offline import reveal
from tests.engine.providers import nodes

ENV = "MULTICLOUD_FAKE_CLOUD_DIR"
VM_TYPES = ("openstack:compute/instance:Instance", "digitalocean:index/droplet:Droplet")
# A ZeroTier identity.secret: "<10-hex address>:0:<public 128 hex>:<private 128 hex>"
# (ZeroTierOne node/Identity.cpp toString(true)); the public form lacks the last field.
_IDENTITY_SECRET = re.compile(r"\b([0-9a-f]{10}):0:[0-9a-f]{128}:[0-9a-f]{128}\b")


class CloudError(Exception):
    """A call the fake cloud refuses; ``code`` is the gRPC status name to answer with."""

    def __init__(self, message: str, code: str = "UNKNOWN") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Event:
    time: float
    provider: str
    method: str
    type: str
    name: str
    urn: str
    id: str


def zerotier_addresses(user_data: Any) -> set[str]:
    """The ZeroTier addresses whose identity.secret a VM's user-data installs."""
    text = reveal(user_data)
    return set(_IDENTITY_SECRET.findall(text)) if isinstance(text, str) else set()


class FakeCloud:
    def __init__(self, directory: Path | str | None = None) -> None:
        found = directory if directory is not None else os.environ.get(ENV)
        if not found:
            raise CloudError(f"{ENV} is not set: the stand-in providers need a fake cloud folder")
        self.dir = Path(found)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_path = self.dir / "state.json"
        self.events_path = self.dir / "events.jsonl"
        self.faults_path = self.dir / "faults.json"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.dir / "state.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> dict[str, Any]:
        if not self.state_path.exists():
            return {"resources": {}, "counters": {}}
        data: dict[str, Any] = json.loads(self.state_path.read_text())
        return data

    def _save(self, state: Mapping[str, Any]) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        tmp.replace(self.state_path)

    def _log(self, provider: str, method: str, type_: str, name: str, urn: str, id_: str) -> None:
        event = {"time": time.time(), "provider": provider, "method": method, "type": type_}
        event |= {"name": name, "urn": urn, "id": id_}
        with open(self.events_path, "a") as log:
            log.write(json.dumps(event) + "\n")

    def _fault(self, method: str, type_: str, name: str, urn: str) -> None:
        """Raise the first injected fault matching this call (and count it down)."""
        if not self.faults_path.exists():
            return
        faults: list[dict[str, Any]] = json.loads(self.faults_path.read_text())
        for fault in faults:
            wanted = {k: fault[k] for k in ("name", "urn", "type") if k in fault}
            actual = {"name": name, "urn": urn, "type": type_}
            if fault.get("method", method) != method or fault.get("times", 1) <= 0:
                continue
            if all(actual[k] == v for k, v in wanted.items()):
                fault["times"] = fault.get("times", 1) - 1
                self.faults_path.write_text(json.dumps(faults, indent=1))
                message = fault.get("message", "500 Internal Server Error (injected fault)")
                raise CloudError(
                    f"fake cloud: {method} {name}: {message}", fault.get("code", "UNKNOWN")
                )

    # --- what the providers call -------------------------------------------------------

    def create(
        self, provider: str, type_: str, name: str, urn: str, outputs: Mapping[str, Any]
    ) -> str:
        """Store a new resource; returns its id (name plus a per-name counter)."""
        with self._locked():
            self._fault("Create", type_, name, urn)
            state = self._load()
            if type_ in VM_TYPES:
                self._check_identities(state, name, outputs)
            count = state["counters"].get(name, 0) + 1
            state["counters"][name] = count
            id_ = f"{name}-{count}"
            state["resources"][id_] = {
                "type": type_,
                "name": name,
                "urn": urn,
                "provider": provider,
                "outputs": dict(outputs),
            }
            self._save(state)
            self._log(provider, "Create", type_, name, urn, id_)
            if type_ in VM_TYPES and os.environ.get(nodes.ENV):
                settings = json.loads(Path(os.environ[nodes.ENV]).read_text())
                nodes.boot(self.dir / "nodes", id_, outputs, state["resources"], settings)
            return id_

    def update(
        self, provider: str, type_: str, name: str, urn: str, id_: str, outputs: Mapping[str, Any]
    ) -> None:
        with self._locked():
            self._fault("Update", type_, name, urn)
            state = self._load()
            if id_ not in state["resources"]:
                raise CloudError(f"fake cloud: {type_} {id_} not found (404)", "NOT_FOUND")
            state["resources"][id_]["outputs"] = dict(outputs)
            self._save(state)
            self._log(provider, "Update", type_, name, urn, id_)

    def delete(self, provider: str, type_: str, name: str, urn: str, id_: str) -> None:
        """Delete; a resource already gone is fine (the providers treat a 404 as deleted)."""
        with self._locked():
            self._fault("Delete", type_, name, urn)
            state = self._load()
            state["resources"].pop(id_, None)
            self._save(state)
            self._log(provider, "Delete", type_, name, urn, id_)
            if type_ in VM_TYPES:
                nodes.halt(self.dir / "nodes", id_)

    def read(
        self, provider: str, type_: str, name: str, urn: str, id_: str
    ) -> dict[str, Any] | None:
        """The resource's stored outputs, or None when it no longer exists."""
        with self._locked():
            self._fault("Read", type_, name, urn)
            found = self._load()["resources"].get(id_)
            self._log(provider, "Read", type_, name, urn, id_)
        return dict(found["outputs"]) if found else None

    def created(self, name: str) -> int:
        """How many resources named ``name`` were created so far."""
        with self._locked():
            count: int = self._load()["counters"].get(name, 0)
        return count

    def _check_identities(
        self, state: Mapping[str, Any], name: str, outputs: Mapping[str, Any]
    ) -> None:
        """Refuse a VM whose ZeroTier identity a live VM already runs: two members with one
        address cannot both be on the network, so the program must delete the old VM first
        (issue 19's scenario 5 asserts it through this refusal)."""
        mine = zerotier_addresses(outputs.get("userData"))
        for id_, other in state["resources"].items():
            if other["type"] in VM_TYPES:
                shared = mine & zerotier_addresses(other["outputs"].get("userData"))
                if shared:
                    raise CloudError(
                        f"fake cloud: VM {name} would run ZeroTier identity {sorted(shared)[0]} "
                        f"that VM {other['name']} ({id_}) still runs",
                        "FAILED_PRECONDITION",
                    )

    # --- what tests read ---------------------------------------------------------------

    def resources(self) -> dict[str, dict[str, Any]]:
        with self._locked():
            resources: dict[str, dict[str, Any]] = self._load()["resources"]
        return resources

    def events(self) -> list[Event]:
        if not self.events_path.exists():
            return []
        lines = self.events_path.read_text().splitlines()
        return [Event(**json.loads(line)) for line in lines if line]

    def inject(self, faults: list[dict[str, Any]]) -> None:
        with self._locked():
            self.faults_path.write_text(json.dumps(faults, indent=1))

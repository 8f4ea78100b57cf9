"""The RKE state the runner carries: checked, encoded for Pulumi, and kept on disk until stored.

``cluster.rkestate`` is RKE's ``cluster.FullState`` as JSON (``cluster/state.go``); it
holds the cluster CA with its private key (``certificatesBundle["kube-ca"]``,
``pki/constants.go``), so an ``rke up`` without it mints a new CA. Its three homes
(Pulumi's secret stdout, xz-compressed: ``encode_result``/``parse_previous``; the local
copy: ``StateStore``; the cluster's Secret: ``newest_certificate`` orders the two) and why
each: docs/recovery.md#where-the-rke-state-lives.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import lzma
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from components.private_files import private_dir, write_private

STATE_PREFIX = "xz+b64:"
FORMAT_VERSION = 2
# One environment string may hold at most MAX_ARG_STRLEN = 32 pages = 131072 bytes,
# counting "NAME=" and the terminating NUL (include/uapi/linux/binfmts.h).
ENV_STRING_LIMIT = 131_072
STDOUT_ENV_NAME = "PULUMI_COMMAND_STDOUT"
# pulumi-command trims one trailing newline of stdout before storing it.
STDOUT_LIMIT = ENV_STRING_LIMIT - len(STDOUT_ENV_NAME) - 2
CA_NAME = "kube-ca"  # pki.CACertName


class StateError(ValueError):
    """Text that is not an RKE state (or not this runner's output); says why."""


def short_ids(ids: Mapping[str, str]) -> dict[str, str]:
    """Machine ids cut to 12 hex digits (48 bits): enough to tell a replaced machine,
    and a third of the bytes in the state a 600-node cluster carries."""
    return {name: str(value)[:12] for name, value in ids.items()}


def now() -> str:
    """A UTC timestamp with microseconds, comparable as text."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def digest(text: str) -> str:
    """sha256 hex of a state text: how runs and copies refer to one state."""
    return hashlib.sha256(text.encode()).hexdigest()


# -- RKE's state file ----------------------------------------------------------------------


def check_rkestate(text: str) -> dict[str, Any]:
    """Parse ``cluster.rkestate`` text and check it holds a cluster CA with its key.

    Returns the parsed document. Raises ``StateError`` for anything else: not JSON,
    ``null``/``{}``/``[]``, no ``desiredState.certificatesBundle["kube-ca"]`` with a PEM
    certificate and a PEM private key. ``currentState`` may be empty: RKE writes the
    state first from ``ClusterInit`` (``cmd/common.go``) with only ``desiredState``.
    """
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise StateError(f"not JSON ({err.__class__.__name__})") from None
    if not isinstance(doc, dict) or not doc:
        raise StateError(f"a {type(doc).__name__} where an RKE FullState object belongs")
    desired = doc.get("desiredState")
    if not isinstance(desired, dict):
        raise StateError("no desiredState")
    bundle = desired.get("certificatesBundle")
    if not isinstance(bundle, dict) or not isinstance(bundle.get(CA_NAME), dict):
        raise StateError(f"desiredState.certificatesBundle has no {CA_NAME!r} (the cluster CA)")
    ca = bundle[CA_NAME]
    if "-----BEGIN CERTIFICATE-----" not in str(ca.get("certificatePEM") or ""):
        raise StateError(f"the {CA_NAME} entry has no PEM certificate")
    if not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", str(ca.get("keyPEM") or "")):
        raise StateError(f"the {CA_NAME} entry has no PEM private key")
    current = doc.get("currentState")
    if current is not None and not isinstance(current, dict):
        raise StateError("currentState is not an object")
    return doc


def ca_fingerprint(doc: Mapping[str, Any]) -> str:
    """sha256 of the cluster CA certificate (whitespace-insensitive) of a checked state."""
    pem = doc["desiredState"]["certificatesBundle"][CA_NAME]["certificatePEM"]
    return pem_fingerprint(pem)


def pem_fingerprint(pem: str) -> str:
    """sha256 of PEM text with whitespace removed (a node's kube-ca.pem compares equal)."""
    return hashlib.sha256("".join(pem.split()).encode()).hexdigest()


def applied_nodes(doc: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """``currentState.rkeConfig.nodes``: the hosts RKE compares the next cluster.yml with
    (``GetClusterState`` in ``cluster/state.go``). None when nothing was applied yet."""
    config = (doc.get("currentState") or {}).get("rkeConfig")
    if not isinstance(config, dict):
        return None
    nodes = config.get("nodes")
    return list(nodes) if isinstance(nodes, list) else []


def same_state(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two parsed states are the same ``FullState``, whatever their layout: RKE
    writes the state file with ``json.MarshalIndent`` (``WriteStateFile``) and the
    ``full-cluster-state`` Secret with ``json.Marshal`` (``SaveFullStateToK8s``), both
    in ``cluster/state.go``; parsed, the two compare equal."""
    return a == b


def newest_certificate(doc: Mapping[str, Any]) -> datetime | None:
    """When the newest certificate of a parsed state was issued, as its ``notAfter`` (UTC).

    Looks at every ``certificatePEM`` in ``desiredState`` and ``currentState``
    ``.certificatesBundle``; entries that do not parse as X.509 are skipped. None when
    none parses. RKE's ``notBefore`` says nothing about when a certificate was issued:
    every certificate it signs copies the CA's (``newSignedCert`` in ``pki/util.go``,
    rancher/rke release/v1.7: ``NotBefore: caCert.NotBefore``), so under one CA all
    ``notBefore`` are the CA's creation time. Its ``notAfter`` is the signing time plus a
    fixed ten years (same function: ``time.Now().Add(duration365d * 10)``; the CAs, in
    ``NewSelfSignedCACert`` in ``pki/cert/cert.go``, likewise), so the latest ``notAfter``
    orders states by the last certificate RKE issued for them (second resolution).
    RKE's ``FullState`` carries no generation or timestamp of its own
    (``cluster/state.go``: ``FullState{DesiredState, CurrentState}``, ``State{rkeConfig,
    certificatesBundle, encryptionConfig}``).
    """
    from cryptography import x509  # imported here: only this comparison needs it

    newest: datetime | None = None
    for part in ("desiredState", "currentState"):
        bundle = (doc.get(part) or {}).get("certificatesBundle") or {}
        for entry in bundle.values() if isinstance(bundle, dict) else ():
            pem = entry.get("certificatePEM") if isinstance(entry, dict) else None
            if not isinstance(pem, str) or "BEGIN CERTIFICATE" not in pem:
                continue
            try:
                when = x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc
            except ValueError:
                continue
            if newest is None or when > newest:
                newest = when
    return newest


def certificate_pems(doc: Mapping[str, Any]) -> dict[str, str]:
    """``desiredState.certificatesBundle`` as {name: certificate PEM without whitespace}:
    what an ``rke up`` started from this state deploys to the nodes."""
    bundle = (doc.get("desiredState") or {}).get("certificatesBundle") or {}
    return {
        name: "".join(str(entry.get("certificatePEM") or "").split())
        for name, entry in bundle.items()
        if isinstance(entry, dict)
    }


def admin_kubeconfig(doc: Mapping[str, Any]) -> str | None:
    """kube-admin's kubeconfig kept in a checked state (``certificatesBundle["kube-admin"]
    .config``, current state first), the file RKE writes as kube_config_cluster.yml;
    None when the state carries none."""
    for part in ("currentState", "desiredState"):
        bundle = (doc.get(part) or {}).get("certificatesBundle") or {}
        config = (bundle.get("kube-admin") or {}).get("config")
        if isinstance(config, str) and config.strip():
            return config
    return None


# -- what the runner prints ----------------------------------------------------------------


def _pack(data: Mapping[str, Any]) -> str:
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    # Preset 2: as small as the default (6) on these states (certificates do not
    # compress; node lists compress at any level) in a fifth of the time.
    return STATE_PREFIX + base64.b64encode(lzma.compress(raw, preset=2)).decode()


def _unpack(value: str) -> Any:
    if not value.startswith(STATE_PREFIX):
        raise StateError("payload is not xz+b64")
    return json.loads(lzma.decompress(base64.b64decode(value[len(STATE_PREFIX) :])))


def decode_state(value: str) -> str:
    """Format 1's ``rkestate`` field: ``xz+b64:`` text or plain JSON."""
    if value.startswith(STATE_PREFIX):
        return lzma.decompress(base64.b64decode(value[len(STATE_PREFIX) :])).decode()
    return value


@dataclass(frozen=True)
class Result:
    """What a successful run leaves for the next one. ``restored`` names the snapshot
    restore this state comes from (kept while ``rke.restore`` asks for the same one)."""

    rkestate: str
    kubeconfig: str
    cluster_yml: str
    node_ids: Mapping[str, str] = field(default_factory=dict)
    state_time: str | None = None
    restored: Mapping[str, Any] | None = None


def encode_result(result: Result) -> str:
    """The one JSON line the runner prints: ``{"payload": "xz+b64:...", "version": 2}``."""
    return json.dumps(
        {
            "payload": _pack(
                {
                    "clusterYml": result.cluster_yml,
                    "kubeconfig": result.kubeconfig,
                    "nodeIds": dict(sorted(short_ids(result.node_ids).items())),
                    "restored": dict(result.restored) if result.restored else None,
                    "rkestate": result.rkestate,
                    "stateTime": result.state_time,
                }
            ),
            "version": FORMAT_VERSION,
        },
        sort_keys=True,
    )


def parse_previous(stdout: str | None) -> Result | None:
    """The previous run's stdout (``PULUMI_COMMAND_STDOUT``): None when unset or empty,
    a checked ``Result`` otherwise. Reads format 1 (plain fields) and 2 (xz payload).
    Raises ``StateError`` for anything that is not this runner's output with a state."""
    if not stdout or not stdout.strip():
        return None
    try:
        data = json.loads(stdout)
        if not isinstance(data, dict):
            raise StateError(f"a JSON {type(data).__name__}, not the runner's object")
        if data.get("version") == FORMAT_VERSION:
            data = _unpack(data["payload"])
            rkestate = data["rkestate"]
        else:
            rkestate = decode_state(data["rkestate"])
        check_rkestate(rkestate)
        return Result(
            rkestate=rkestate,
            kubeconfig=data.get("kubeconfig") or "",
            cluster_yml=data.get("clusterYml") or "",
            node_ids=dict(data.get("nodeIds") or {}),
            state_time=data.get("stateTime"),
            restored=data.get("restored"),
        )
    except StateError:
        raise
    except (ValueError, KeyError, TypeError, lzma.LZMAError) as err:
        raise StateError(f"{type(err).__name__}: not the runner's output") from None


def kubeconfig_of(stdout: str | None) -> str:
    """The kubeconfig in a runner stdout (any format); empty when there is none."""
    if not stdout:
        return ""
    data = json.loads(stdout)
    if data.get("version") == FORMAT_VERSION:
        return str(_unpack(data["payload"]).get("kubeconfig") or "")
    return str(data.get("kubeconfig") or "")


# -- the private local copy ----------------------------------------------------------------

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def state_home(env: Mapping[str, str]) -> Path:
    """``$XDG_STATE_HOME`` or ``~/.local/state`` (XDG Base Directory specification)."""
    base = env.get("XDG_STATE_HOME")
    if base and os.path.isabs(base):
        return Path(base)
    return Path(env.get("HOME") or os.path.expanduser("~")) / ".local" / "state"


def key_dir(key: str) -> str:
    """A directory name for a stack key (``project/stack``): readable and collision-free."""
    readable = "-".join(_SAFE.sub("_", part) for part in key.split("/") if part)[:80]
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class LocalCopy:
    """The newest state RKE wrote on this machine for one stack, with what it belongs to.

    ``base_hash`` is the digest of the state the run started from (None when it started
    without one); ``node_ids`` are the machine ids valid for the state's applied nodes.
    """

    key: str
    rkestate: str
    kubeconfig: str | None
    cluster_yml: str | None
    node_ids: Mapping[str, str]
    base_hash: str | None
    state_time: str
    origin: str
    restored: Mapping[str, Any] | None = None

    def as_result(self) -> Result:
        return Result(
            rkestate=self.rkestate,
            kubeconfig=self.kubeconfig or "",
            cluster_yml=self.cluster_yml or "",
            node_ids=self.node_ids,
            state_time=self.state_time,
            restored=self.restored,
        )


class StateStore:
    """``<state home>/multicloud/<key>/``: ``rkestate.json`` (0600) and a lock, in 0700 dirs."""

    FILE = "rkestate.json"

    def __init__(self, key: str, env: Mapping[str, str]) -> None:
        self.key = key
        self.root = state_home(env) / "multicloud" / key_dir(key)

    def ensure_dir(self) -> Path:
        """Create the stack's directory (and ``multicloud/``) 0700; returns it."""
        private_dir(self.root.parent)
        return private_dir(self.root)

    def load(self) -> LocalCopy | None:
        """The kept copy, or None. Raises ``StateError`` for a copy that is damaged
        or belongs to another key (never silently dropped: it may hold the only CA)."""
        path = self.root / self.FILE
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
            copy = LocalCopy(
                key=data["key"],
                rkestate=data["rkestate"],
                kubeconfig=data.get("kubeconfig"),
                cluster_yml=data.get("clusterYml"),
                node_ids=dict(data.get("nodeIds") or {}),
                base_hash=data.get("baseHash"),
                state_time=data["stateTime"],
                origin=data.get("origin", ""),
                restored=data.get("restored"),
            )
            check_rkestate(copy.rkestate)
        except (ValueError, KeyError, TypeError) as err:
            raise StateError(f"the local copy {path} is damaged ({err})") from None
        if copy.key != self.key:
            raise StateError(f"the local copy {path} belongs to {copy.key!r}, not {self.key!r}")
        return copy

    def save(self, copy: LocalCopy) -> Path:
        """Replace the kept copy atomically; returns its path."""
        path = self.ensure_dir() / self.FILE
        write_private(
            path,
            json.dumps(
                {
                    "baseHash": copy.base_hash,
                    "clusterYml": copy.cluster_yml,
                    "key": copy.key,
                    "kubeconfig": copy.kubeconfig,
                    "nodeIds": dict(copy.node_ids),
                    "origin": copy.origin,
                    "restored": dict(copy.restored) if copy.restored else None,
                    "rkestate": copy.rkestate,
                    "stateTime": copy.state_time,
                },
                indent=1,
                sort_keys=True,
            ),
        )
        return path

    def update(self, copy: LocalCopy | None, **changes: Any) -> LocalCopy | None:
        """Save ``copy`` with ``changes`` applied (no-op for None); returns the new copy."""
        if copy is None:
            return None
        new = replace(copy, **changes)
        self.save(new)
        return new

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / self.FILE).unlink()

    @contextlib.contextmanager
    def locked(self, wait_seconds: float) -> Iterator[None]:
        """Hold the stack's lock (one runner per stack at a time on this machine)."""
        fd = os.open(self.ensure_dir() / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if not try_lock(fd, wait_seconds):
                raise StateError(
                    f"another rke.runner for {self.key} holds {self.root / 'lock'}; "
                    "wait for it to finish"
                )
            yield
        finally:
            os.close(fd)


def try_lock(fd: int, wait_seconds: float) -> bool:
    """flock(LOCK_EX) on ``fd``, retrying for up to ``wait_seconds``; False on timeout."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

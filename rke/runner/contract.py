"""The RKE command's environment: what ``rke.component`` writes and the runner reads.

``CommandEnv`` is what the component sets (each value an encoded string, or a Pulumi
input of one on the component's side); ``RunnerEnv`` is the runner's checked reading of
it, plus the previous stdout pulumi-command passes and the operator's knobs. Read where
they are used: ``RKE_RUNNER_TMPDIR`` (``rke.workdir``) and ``XDG_STATE_HOME``
(``rke.state``). cluster.yml comes on standard input instead: one variable holds at
most 128 KiB (docs/architecture.md, "RKE runs from one local.Command").
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Generic, TypeVar

from rke.state import STDOUT_ENV_NAME

V = TypeVar("V")

# field -> variable; the component writes them in this order
NAMES = {
    "state_key": "RKE_STATE_KEY",
    "node_ids": "RKE_NODE_IDS",
    "host_keys": "RKE_HOST_KEYS",
    "restore": "RKE_RESTORE",
    "ssh_private_key": "RKE_SSH_PRIVATE_KEY",
    "s3_access_key": "RKE_S3_ACCESS_KEY",
    "s3_secret_key": "RKE_S3_SECRET_KEY",
}
SECRETS = ("ssh_private_key", "s3_access_key", "s3_secret_key")  # Pulumi secrets
SECRET_ENV = tuple(NAMES[f] for f in SECRETS)

DEFAULT_ETCD_HEALTH_TIMEOUT = 90.0  # RKE's own isEtcdHealthy bound: 18 x 5 s
DEFAULT_INGRESS_TIMEOUT = 600.0
DEFAULT_INGRESS_POLL = 5.0
DEFAULT_LEFTOVER_WAIT = 30.0


class EnvError(ValueError):
    """A variable of the contract holds what it cannot."""


@dataclass(frozen=True)
class CommandEnv(Generic[V]):
    """The variables ``rke.component`` sets on the RKE command."""

    state_key: V  # <project>/<stack>: names the stack's private local copy
    node_ids: V  # JSON {node name: machine id} from the readiness gates
    host_keys: V  # JSON {address: "ssh-ed25519 ..."} the readiness gates pinned
    restore: V | None = None  # JSON {"snapshot": name, "s3": bool}: restore once
    ssh_private_key: V | None = None  # else RKE and ssh use the agent (SSH_AUTH_SOCK)
    s3_access_key: V | None = None  # for cluster.yml's s3backupconfig on disk
    s3_secret_key: V | None = None

    def to_env(self) -> dict[str, V]:
        """The command's ``environment``: every variable that has a value."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {NAMES[name]: value for name, value in values.items() if value is not None}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CommandEnv[str]:
        """The variables as the runner finds them; unset or empty optional ones are None."""
        return CommandEnv(
            state_key=env.get(NAMES["state_key"]) or "",
            node_ids=env.get(NAMES["node_ids"]) or "",
            host_keys=env.get(NAMES["host_keys"]) or "",
            restore=env.get(NAMES["restore"]) or None,
            ssh_private_key=env.get(NAMES["ssh_private_key"]) or None,
            s3_access_key=env.get(NAMES["s3_access_key"]) or None,
            s3_secret_key=env.get(NAMES["s3_secret_key"]) or None,
        )


def encode_map(values: Mapping[str, str]) -> str:
    """``RKE_NODE_IDS`` and ``RKE_HOST_KEYS``: a JSON object with sorted keys."""
    return json.dumps(dict(values), sort_keys=True)


@dataclass(frozen=True)
class RestoreRequest:
    """``rke.restore`` as the runner gets it (``RKE_RESTORE``)."""

    snapshot: str
    s3: bool

    def as_dict(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot, "s3": self.s3}

    def encode(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    @classmethod
    def decode(cls, value: str | None) -> RestoreRequest | None:
        if not value:
            return None
        try:
            data = json.loads(value)
            return cls(str(data["snapshot"]), bool(data.get("s3", False)))
        except (ValueError, KeyError, TypeError):
            raise EnvError(
                f"RKE_RESTORE is not {{'snapshot': ..., 's3': ...}}: {value!r}"
            ) from None


@dataclass(frozen=True)
class RunnerEnv:
    """The runner's environment, checked: the component's variables decoded, the
    previous stdout pulumi-command passes, and the operator's knobs."""

    state_key: str
    node_ids: dict[str, str]
    host_keys: dict[str, str]
    restore: RestoreRequest | None
    ssh_private_key: str | None
    s3_access_key: str | None
    s3_secret_key: str | None
    previous_stdout: str | None  # PULUMI_COMMAND_STDOUT: the previous state
    skip_drain: bool  # RKE_SKIP_DRAIN=1: remove workers undrained (dead nodes)
    etcd_health_timeout: float  # RKE_ETCD_HEALTH_TIMEOUT, seconds after an etcd step
    ingress_timeout: float  # RKE_INGRESS_TIMEOUT, seconds for ingress-nginx after `rke up`
    ingress_poll: float  # RKE_INGRESS_POLL, seconds between looks
    leftover_wait: float  # RKE_LEFTOVER_WAIT, seconds for a previous run to end

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RunnerEnv:
        """Raises ``EnvError`` naming the variable that is wrong."""
        given = CommandEnv.from_env(env)
        if not re.fullmatch(r"[^/\s]+/[^/\s]+", given.state_key):
            raise EnvError(
                "RKE_STATE_KEY must be <project>/<stack> (the RKE command sets it); "
                f"got {given.state_key!r}"
            )
        try:
            node_ids: dict[str, str] = dict(json.loads(given.node_ids or "{}"))
        except (ValueError, TypeError):
            raise EnvError("RKE_NODE_IDS is not a JSON object of node name -> id") from None
        restore = RestoreRequest.decode(given.restore)
        try:
            host_keys = {
                str(k): str(v).strip() for k, v in json.loads(given.host_keys or "{}").items() if v
            }
        except (ValueError, TypeError, AttributeError):
            raise EnvError("RKE_HOST_KEYS is not a JSON object of address -> key") from None
        return cls(
            state_key=given.state_key,
            node_ids=node_ids,
            host_keys=host_keys,
            restore=restore,
            ssh_private_key=given.ssh_private_key,
            s3_access_key=given.s3_access_key,
            s3_secret_key=given.s3_secret_key,
            previous_stdout=env.get(STDOUT_ENV_NAME),
            skip_drain=env.get("RKE_SKIP_DRAIN") == "1",
            etcd_health_timeout=_seconds(
                env, "RKE_ETCD_HEALTH_TIMEOUT", DEFAULT_ETCD_HEALTH_TIMEOUT
            ),
            ingress_timeout=_seconds(env, "RKE_INGRESS_TIMEOUT", DEFAULT_INGRESS_TIMEOUT),
            ingress_poll=_seconds(env, "RKE_INGRESS_POLL", DEFAULT_INGRESS_POLL),
            leftover_wait=_seconds(env, "RKE_LEFTOVER_WAIT", DEFAULT_LEFTOVER_WAIT),
        )


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise EnvError(f"{name} is not a number of seconds: {value!r}") from None

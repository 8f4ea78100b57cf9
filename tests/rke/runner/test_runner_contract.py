"""rke.runner.contract: the RKE command's environment, written by the component and read
by the runner; each wrong value is refused naming its variable."""

from __future__ import annotations

import pytest

from rke.runner.contract import CommandEnv, EnvError, RestoreRequest, RunnerEnv, encode_map

WRITTEN = CommandEnv(
    state_key="multicloud/prod",
    node_ids=encode_map({"mc-do-master-0": "a" * 32}),
    host_keys=encode_map({"203.0.113.4": "ssh-ed25519 AAAA"}),
    restore=RestoreRequest("rke_etcd_snapshot_x", True).encode(),
    ssh_private_key="KEY",
)


def test_what_the_component_writes_the_runner_reads() -> None:
    env = WRITTEN.to_env()
    assert "RKE_S3_ACCESS_KEY" not in env  # no value, no variable
    assert CommandEnv.from_env(env) == WRITTEN
    given = RunnerEnv.from_env({**env, "RKE_SKIP_DRAIN": "1", "RKE_INGRESS_POLL": "0.5"})
    assert given.node_ids == {"mc-do-master-0": "a" * 32}
    assert given.host_keys == {"203.0.113.4": "ssh-ed25519 AAAA"}
    assert given.restore == RestoreRequest("rke_etcd_snapshot_x", True)
    assert given.skip_drain and given.ingress_poll == 0.5 and given.ingress_timeout == 600.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RKE_STATE_KEY", "prod"),
        ("RKE_NODE_IDS", "[1]"),
        ("RKE_HOST_KEYS", "[]"),
        ("RKE_RESTORE", '{"s3": true}'),
        ("RKE_INGRESS_TIMEOUT", "ten"),
    ],
)
def test_a_wrong_value_is_refused_naming_its_variable(name: str, value: str) -> None:
    with pytest.raises(EnvError, match=name):
        RunnerEnv.from_env({**WRITTEN.to_env(), name: value})

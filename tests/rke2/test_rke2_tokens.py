"""RKE2's two tokens: servers hold the server token, agents only the agent token.

The whole program is rendered with ``engine: rke2`` and every node's user-data (what the
cloud hands the VM at boot, and what root on the node can read back) is searched, and so
are all other resources' inputs (the commands run over SSH among them). What each token
lets its holder do is RKE2's supervisor (K3s ``pkg/server/handlers/router.go``,
``NewHandler``): the user ``server`` (password: the server token) gets the cluster's CA
keys (``/server-bootstrap``), the user ``node`` (password: the agent token, or the server
token when a server has no ``agent-token``: ``pkg/daemons/control/deps/deps.go``,
``genUsers``/``getNodePass``) gets a node's certificates. ``supervisor_passwords`` models
those two lines, so the tests check what a node can authenticate as, not which keys a
file has.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import yaml

from components.config import raw_values
from engines import check_stack
from rke2 import config_yaml
from rke2.component import RECORD_OUTPUT, SEPARATE_AGENT_TOKEN
from scripts.offline import Registration, Run, is_secret, reveal, run_program
from tests.support.program_runs import committed_rke2, rke2_config, vms
from tests.support.tools import load_yaml

STACKS = ("home", "prod")
PASSWORD = "random:index/randomPassword:RandomPassword"
ROLES = ("server", "agent")


def generated(run: Run, name: str) -> str | None:
    """The value a ``pulumi_random`` password of the run resolved to (the stand-in gives
    each one a distinct value derived from its name: a canary), None when there is none."""
    found = [r for r in run.of_type(PASSWORD) if r.name == name]
    return str(reveal(found[0].outputs)["result"]) if found else None


def roles(stack: str) -> dict[str, str]:
    """Node name -> ``server`` or ``agent``, from the stack as the program parses it."""
    parsed = check_stack(raw_values(rke2_config(stack)[0]))[0]
    return {n.name: config_yaml.role(n) for n in parsed.nodes}


def user_data_text(vm: Registration) -> str:
    """The node's whole user-data as the cloud hands it to the VM."""
    assert is_secret(vm.inputs["userData"]), vm.name
    return str(reveal(vm.inputs["userData"]))


def rke2_config_of(vm: Registration) -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(user_data_text(vm))
    [content] = [
        f["content"] for f in document["write_files"] if f["path"] == config_yaml.CONFIG_PATH
    ]
    parsed: dict[str, Any] = yaml.safe_load(content)
    return parsed


def supervisor_passwords(server: dict[str, Any]) -> dict[str, str]:
    """What a server started from this config.yaml accepts, per supervisor user (K3s
    ``genUsers``: ``server`` is the token; ``node`` is ``agent-token``, else the token)."""
    return {"server": server["token"], "node": server.get("agent-token") or server["token"]}


def check_tokens(run: Run, stack: str, *, separate: bool) -> None:
    token = generated(run, "rke2-token")
    assert token, "the program must generate the server token"
    kinds = roles(stack)
    texts = {vm.name: user_data_text(vm) for vm in vms(run)}
    configs = {vm.name: rke2_config_of(vm) for vm in vms(run)}
    agents = sorted(n for n in configs if kinds[n] == "agent")
    servers = sorted(n for n in configs if kinds[n] == "server")
    assert agents and servers, stack
    if separate:
        # The server token appears nowhere in an agent's boot document.
        assert [n for n in agents if token in texts[n]] == []
    agent_token = generated(run, "rke2-agent-token")
    assert agent_token, "the program must generate an agent token"
    assert token not in agent_token and agent_token not in token  # distinct canaries
    accepted = [supervisor_passwords(configs[s]) for s in servers]
    for server in servers:
        assert configs[server]["token"] == token, server
        assert config_yaml.unknown_keys(configs[server], "server") == [], server
    for agent in agents:
        config = configs[agent]
        assert config_yaml.unknown_keys(config, "agent") == [], agent
        # Every server lets the agent in as ``node`` ...
        assert all(config["token"] == passwords["node"] for passwords in accepted), agent
        # ... and, with separate tokens, none as ``server`` (the CA keys).
        as_server = [p for p in accepted if config["token"] == p["server"]]
        assert (as_server == []) == separate, agent
    if separate:
        assert {configs[s].get("agent-token") for s in servers} == {agent_token}
        assert all(configs[a]["token"] == agent_token for a in agents)
    else:
        assert all("agent-token" not in configs[s] for s in servers)


@pytest.mark.parametrize("stack", STACKS)
def test_agents_hold_only_the_agent_token(stack: str) -> None:
    """A new cluster: servers get the server token and the agent token, agents only the
    agent token, so root on an agent cannot join as a server and read the CA keys."""
    run = committed_rke2(stack)
    check_tokens(run, stack, separate=True)
    assert run.outputs[RECORD_OUTPUT][SEPARATE_AGENT_TOKEN] is True  # later updates keep it
    # Nothing else carries the server token to a machine either (no command, no script):
    # it reaches the servers' VMs and no other resource.
    token = generated(run, "rke2-token")
    assert token
    carriers = {r.name for r in run.registrations if token in json.dumps(reveal(r.inputs))}
    assert carriers == {n for n, kind in roles(stack).items() if kind == "server"}


def test_a_later_update_keeps_the_tokens_separate() -> None:
    """The record read back from the first update: added and rebuilt nodes get the same
    split, so they join servers whose ``node`` password is the agent token."""
    first = committed_rke2("prod")
    config, secrets = rke2_config("prod")
    later = run_program(
        config,
        secret_keys=secrets,
        stack="prod",
        previous_outputs={RECORD_OUTPUT: first.outputs[RECORD_OUTPUT]},
    )
    assert later.error is None, later.error
    check_tokens(later, "prod", separate=True)
    assert later.outputs[RECORD_OUTPUT][SEPARATE_AGENT_TOKEN] is True


def test_a_cluster_from_before_the_split_keeps_joining_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A record without the mark: the cluster's servers booted without ``agent-token`` and
    accept only the server token as ``node`` (their config is boot-only), so new agents
    must keep it to join, servers get no ``agent-token``, and the update warns."""
    first = committed_rke2("prod")
    old = {k: v for k, v in first.outputs[RECORD_OUTPUT].items() if k != SEPARATE_AGENT_TOKEN}
    config, secrets = rke2_config("prod")
    with caplog.at_level(logging.WARNING):
        later = run_program(
            config, secret_keys=secrets, stack="prod", previous_outputs={RECORD_OUTPUT: old}
        )
    assert later.error is None, later.error
    check_tokens(later, "prod", separate=False)
    assert SEPARATE_AGENT_TOKEN not in later.outputs[RECORD_OUTPUT]  # stays what it is
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert [w for w in warned if "server token" in w and "docs/rke2.md" in w], warned


def test_node_config_gives_each_role_its_tokens() -> None:
    parsed = check_stack(raw_values(rke2_config("home")[0]))[0]
    cluster = config_yaml.ConfigYamlSettings("c", parsed.settings.rke, False)
    server, agent = (next(n for n in parsed.nodes if config_yaml.role(n) == r) for r in ROLES)
    url = "https://10.147.1.10:9345"
    s = config_yaml.node_config(
        server, cluster, token="srv-1", agent_token="agt-2", server_url=None
    )
    a = config_yaml.node_config(agent, cluster, token="srv-1", agent_token="agt-2", server_url=url)
    assert (s["token"], s["agent-token"]) == ("srv-1", "agt-2")
    assert a["token"] == "agt-2" and "srv-1" not in config_yaml.render(a)
    assert "agent-token" not in a  # not an `rke2 agent` flag (reference/rke2-cli-flags.json)
    assert "agent-token" in config_yaml.SECRET_KEYS
    # A cluster from before the split (agent_token None): agents keep the server token.
    legacy = config_yaml.node_config(
        agent, cluster, token="srv-1", agent_token=None, server_url=url
    )
    assert legacy["token"] == "srv-1"
    for bad in ("", "srv-1"):  # empty, or the server token again: no separation at all
        with pytest.raises(ValueError, match="token"):
            config_yaml.node_config(agent, cluster, token="srv-1", agent_token=bad, server_url=url)

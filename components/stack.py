"""The stack, checked before anything is registered, in two stages: the config parsed
with the chosen engine's rules (``components.config``), then the network preflight over
it (``components.preflight``). The engines' rules come in as data (``engines.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

from components.config import (
    ClusterConfig,
    ConfigError,
    EngineRules,
    Secrets,
    parse_config,
    read_raw,
    read_secrets,
)
from components.config.failover import check_failover
from components.config.model import NAMESPACE
from components.preflight import NetworkPlan, plan_network, require_reachable


def check_stack(
    raw: Mapping[str, Any], engines: Mapping[str, EngineRules]
) -> tuple[ClusterConfig, NetworkPlan]:
    """The validated config and its network plan; ``ConfigError`` for bad input or a
    broken path (pure: plain values in). ``engines``: each engine's rules by name."""
    config = parse_config(raw, engines)
    network = plan_network(config)
    require_reachable(network.paths)
    check_failover(config)  # after the paths: a record with no target explains it better
    return config, network


def load_stack(engines: Mapping[str, EngineRules]) -> tuple[ClusterConfig, NetworkPlan, Secrets]:
    """Read and check the whole stack through Pulumi, log the preflight's warnings, and
    read the secrets; a problem stops the program with a readable error, no stack trace."""
    try:
        config, network = check_stack(read_raw(), engines)
        for path in network.paths:  # broken paths stopped check_stack already
            if path.verdict == "warn":
                pulumi.log.warn(f"network preflight: {NAMESPACE}:{path.key}: {path.note}")
        return config, network, read_secrets(config)
    except ConfigError as err:
        raise pulumi.RunError(str(err)) from None

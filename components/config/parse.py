"""``parse_config``: the stack's plain values in, a validated ``ClusterConfig`` out (pure).

It raises ``ConfigError`` naming the key path and what was expected. The install engine's
own rules (its versions, what it cannot install) come in as data (``EngineRules``), so the
config layer imports no engine. The network preflight is the next stage, and the failover
bound (``failover.check_failover``) is checked after it: a broken path, such as a record
with no target, explains the failure better (``components/stack.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from components.config.checks import (
    check_admin_ranges,
    check_sites,
    check_topology,
    node_specs,
    resolve_deployer,
)
from components.config.model import NAMESPACE, ConfigError, fail
from components.config.ranges import check_address_ranges
from components.config.rules import EngineRules
from components.config.settings import ClusterConfig, ClusterSettings

# What pydantic adds to an error's location for the member of a union it tried
# (`int | str`: "int", "str", "function-before[_whole_number(), int]").
_UNION_MEMBER = re.compile(r"str|int|float|bool|none|[a-z-]+\[.*\]")


def _location(loc: Sequence[int | str]) -> str:
    """Pydantic's error location as the key path a person types with --path."""
    parts: list[str] = []
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
            continue
        # the discriminated union puts the kind tag after the site name; drop it
        if i == 2 and loc[0] == "sites" and item in ("openstack", "digitalocean"):
            continue
        if i > 0 and not (i == 1 and loc[0] == "sites") and _UNION_MEMBER.fullmatch(item):
            continue  # a union member's tag, not a key
        parts.append(("." if parts else "") + item)
    return "".join(parts)


def _format(err: ValidationError) -> str:
    lines: list[str] = []
    for issue in err.errors():
        path = _location(issue["loc"])
        message = issue["msg"].removeprefix("Value error, ")
        key = re.match(r"^([a-zA-Z]+): ", message)
        if not path and key:  # a whole-model check names its key first
            path, message = key.group(1), message[key.end() :]
        item = re.match(r"^(\[\d+\]): ", message)
        if item:  # a whole-list check names the entry
            path, message = path + item.group(1), message[item.end() :]
        if issue["type"] == "extra_forbidden":
            message = "unknown key (check its spelling against docs/config-reference.md)"
        elif issue["type"] == "union_tag_invalid":
            path += ".kind"
            message = "expected 'openstack' or 'digitalocean'"
        elif issue["type"] == "union_tag_not_found":
            path += ".kind"
            message = "missing: expected 'openstack' or 'digitalocean'"
        elif issue["type"] == "missing":
            message = "missing: this key is required"
        if not any(line.startswith(f"{NAMESPACE}:{path}: ") for line in lines):
            lines.append(f"{NAMESPACE}:{path}: {message}")  # a union's first member speaks
    return "invalid stack config:\n  " + "\n  ".join(lines)


def parse_config(raw: Mapping[str, Any], engines: Mapping[str, EngineRules]) -> ClusterConfig:
    """Validate plain config values (keys without namespace) into a ``ClusterConfig``;
    ``engines`` holds each install engine's rules by its ``engine`` value."""
    try:
        settings = ClusterSettings.model_validate(dict(raw))
    except ValidationError as err:
        raise ConfigError(_format(err)) from None
    rules = engines[settings.engine]
    _kubernetes_version(settings, rules)
    check_sites(settings)
    check_admin_ranges(settings)
    nodes = node_specs(settings)
    check_topology(settings, nodes)
    check_address_ranges(settings)
    rules.check(settings)
    deployer = resolve_deployer(settings)
    return ClusterConfig(settings=settings, nodes=nodes, deployer=deployer, engine=rules.facts)


def _kubernetes_version(settings: ClusterSettings, rules: EngineRules) -> None:
    """``kubernetesVersion`` in the chosen engine's format; unset takes its default."""
    if not settings.kubernetes_version:
        object.__setattr__(settings, "kubernetes_version", rules.default_version)
        return
    problem = rules.version_problem(settings.kubernetes_version)
    if problem:
        raise fail("kubernetesVersion", problem)

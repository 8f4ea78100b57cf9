"""The install engines by the stack's ``engine`` value, and the stack checked with their
config rules. The one module besides ``__main__.py`` that knows both engines: a third
engine is one new folder and one line here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components import stack
from components.config import ClusterConfig, EngineRules, Secrets
from components.engine import Engine
from components.preflight import NetworkPlan
from rke.engine import ENGINE as RKE
from rke2.engine import ENGINE as RKE2

ENGINES: Mapping[str, Engine] = {engine.name: engine for engine in (RKE, RKE2)}
RULES: Mapping[str, EngineRules] = {name: engine.rules for name, engine in ENGINES.items()}


def check_stack(raw: Mapping[str, Any]) -> tuple[ClusterConfig, NetworkPlan]:
    """``components.stack.check_stack`` with every engine's rules."""
    return stack.check_stack(raw, RULES)


def load_stack() -> tuple[ClusterConfig, NetworkPlan, Secrets]:
    """``components.stack.load_stack`` with every engine's rules."""
    return stack.load_stack(RULES)

"""What an install engine requires of the stack beyond the generic models.

Each engine provides its rules (``rke/config_rules.py``, ``rke2/config_rules.py``) and the
program hands them to ``parse_config`` by engine name, so the config layer imports no engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from components.config.engine_facts import EngineFacts
from components.config.settings import ClusterSettings


@dataclass(frozen=True)
class EngineRules:
    """One engine's config rules: its default ``kubernetesVersion``, why it refuses a
    version (None: accepted), and its whole-stack check (raises ``ConfigError``); and its
    facts, which the parsed config carries (``ClusterConfig.engine``)."""

    default_version: str
    version_problem: Callable[[str], str | None]
    check: Callable[[ClusterSettings], None]
    facts: EngineFacts

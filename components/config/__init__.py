"""The stack config: typed models, the whole-stack checks, and reading it from Pulumi.

``stack`` holds the models and ``parse_config`` (pure), ``entrypoint`` the
``multicloud:entrypoint`` section, ``deployer`` the ``multicloud:deployer`` one,
``ranges`` the address-range check, ``model`` the base every section derives from.

The names below load ``stack`` on first use (PEP 562): ``components.config.cluster`` derives from
``model`` and ``stack`` imports ``components.config.cluster``, so importing ``stack`` eagerly here
would make ``import components.config.cluster`` (or ``rke.cluster_yml``) fail when it comes first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from components.config.stack import (
        CONDITIONAL_SECRETS,
        DECLARED_SECRETS,
        DEFAULT_KUBERNETES_VERSION,
        RKE_KUBERNETES_VERSIONS,
        ClusterConfig,
        ClusterSettings,
        ConfigError,
        DigitalOceanSiteConfig,
        OpenStackSiteConfig,
        Secrets,
        SiteBase,
        load_config,
        openstack_secret_key,
        parse_config,
        raw_values,
        stack_failover_budget,
    )

__all__ = [
    "CONDITIONAL_SECRETS",
    "DECLARED_SECRETS",
    "DEFAULT_KUBERNETES_VERSION",
    "RKE_KUBERNETES_VERSIONS",
    "ClusterConfig",
    "ClusterSettings",
    "ConfigError",
    "DigitalOceanSiteConfig",
    "OpenStackSiteConfig",
    "Secrets",
    "SiteBase",
    "load_config",
    "openstack_secret_key",
    "parse_config",
    "raw_values",
    "stack_failover_budget",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("components.config.stack"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The stack config: typed models and the whole-stack checks (a leaf: it imports no site,
service, preflight or engine).

``parse`` holds ``parse_config`` (pure), ``settings`` the top-level models, ``sites``,
``cluster`` (the ``rke`` section both engines read), ``entrypoint``, ``deployer`` the
sections, ``checks``, ``ranges`` and ``failover`` the whole-stack checks, ``rules`` the
engines' rules it is handed, ``read`` the reading through Pulumi, ``model`` the base.
"""

from components.config.failover import stack_failover_budget
from components.config.model import ConfigError
from components.config.parse import parse_config
from components.config.read import (
    CONDITIONAL_SECRETS,
    DECLARED_SECRETS,
    Secrets,
    openstack_secret_key,
    raw_values,
    read_raw,
    read_secrets,
)
from components.config.rules import EngineRules
from components.config.settings import ClusterConfig, ClusterSettings
from components.config.sites import DigitalOceanSiteConfig, OpenStackSiteConfig, SiteBase

__all__ = [
    "CONDITIONAL_SECRETS",
    "DECLARED_SECRETS",
    "ClusterConfig",
    "ClusterSettings",
    "ConfigError",
    "DigitalOceanSiteConfig",
    "EngineRules",
    "OpenStackSiteConfig",
    "Secrets",
    "SiteBase",
    "openstack_secret_key",
    "parse_config",
    "raw_values",
    "read_raw",
    "read_secrets",
    "stack_failover_budget",
]

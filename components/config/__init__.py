"""The stack config: typed models, the whole-stack checks, and reading it from Pulumi.

``stack`` holds the models and ``parse_config`` (pure), ``entrypoint`` the
``multicloud:entrypoint`` section, ``model`` the base every section derives from.
"""

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
]

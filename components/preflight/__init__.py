"""The reachability preflight: the plan checked as a network before anything is created.

``plan_network`` is pure: from the validated config it renders each site's firewall
policy (``components/sites/firewall.py``, the same objects the sites register) and runs
every path family over it, in this order; docs/network.md describes each path.
``require_reachable`` raises ``ConfigError`` with one line per broken path, naming the
config key to change and the fix. Both run right after the config is parsed
(``components/stack.py``), so a broken path stops ``pulumi preview``, ``pulumi up`` and
``make render`` before any registration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from components.config import ClusterConfig
from components.preflight.cluster import in_cluster_paths, quota_paths
from components.preflight.context import PlanContext
from components.preflight.deployer import deployer_paths
from components.preflight.ingress import ingress_paths
from components.preflight.overlay import cluster_port_paths, overlay_paths
from components.preflight.paths import NetworkPath, NetworkPlan, require_reachable
from components.preflight.record import record_paths
from components.sites.firewall import SitePolicy, site_policy

__all__ = [
    "FAMILIES",
    "NetworkPath",
    "NetworkPlan",
    "plan_network",
    "preflight",
    "require_reachable",
]

# Each family: the paths of one concern, from the frozen plan context.
FAMILIES: tuple[Callable[[PlanContext], Sequence[NetworkPath]], ...] = (
    deployer_paths,  # ssh, kube-api
    overlay_paths,  # zerotier-central, overlay
    cluster_port_paths,  # rke2-* (the engine's node-to-node ports)
    ingress_paths,  # ingress, lan-ingress
    record_paths,  # dns-record, acme-http01 / acme-dns01
    in_cluster_paths,  # ingress-controller, longhorn
    quota_paths,  # openstack-quota
)


def plan_network(config: ClusterConfig) -> NetworkPlan:
    """Each site's firewall policy and the preflight's paths over it (pure, no I/O)."""
    settings = config.settings
    cloudflare = settings.entrypoint.cloudflare if settings.entrypoint else None
    proxied = bool(cloudflare and cloudflare.proxied)
    firewall = {
        name: site_policy(
            name, site, config.deployer, settings.admin_cidrs, config.site_nodes(name), proxied
        )
        for name, site in settings.sites.items()
    }
    return NetworkPlan(config.deployer, firewall, preflight(config, firewall))


def preflight(config: ClusterConfig, firewall: Mapping[str, SitePolicy]) -> tuple[NetworkPath, ...]:
    """Every path of the deployment with its verdict, family by family."""
    context = PlanContext(config, firewall)
    return tuple(path for family in FAMILIES for path in family(context))

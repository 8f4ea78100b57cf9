"""The site component for one ``sites.<name>`` entry, whichever cloud it is on."""

from __future__ import annotations

from components.config import ClusterConfig, DigitalOceanSiteConfig, Secrets
from components.sites.base import CloudSite, SiteArgs, UserData
from components.sites.digitalocean import DigitalOceanSite
from components.sites.firewall import SitePolicy
from components.sites.openstack import OpenStackSite


def build_site(
    name: str, config: ClusterConfig, secrets: Secrets, user_data: UserData, policy: SitePolicy
) -> CloudSite:
    """``user_data`` is the engine's cloud-init per node (``Install.user_data``), ``policy``
    the site's firewall the preflight checked (``NetworkPlan.firewall``)."""
    settings = config.settings
    site = settings.sites[name]
    args = SiteArgs(
        cluster_name=settings.cluster_name,
        specs=config.site_nodes(name),
        ssh_public_key=settings.ssh_public_key,
        policy=policy,
        user_data=user_data,
        rebuild=settings.rebuild,
    )
    if isinstance(site, DigitalOceanSiteConfig):
        assert secrets.digitalocean_token is not None  # read_secrets requires it
        return DigitalOceanSite(name, args, site, token=secrets.digitalocean_token)
    return OpenStackSite(name, args, site, auth_secret=(secrets.openstack or {}).get(name))

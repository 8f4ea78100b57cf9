"""The frozen input every path family reads: the validated stack and its firewall."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from components.config import ClusterConfig, ClusterSettings
from components.config.deployer import Deployer
from components.config.engine_facts import EngineFacts
from components.nodes import NodeSpec
from components.sites.firewall import SitePolicy


@dataclass(frozen=True)
class PlanContext:
    """The stack the preflight checks: its config, each site's rendered firewall policy,
    and the nodes of each site (in config order, every site present)."""

    config: ClusterConfig
    firewall: Mapping[str, SitePolicy]

    @property
    def settings(self) -> ClusterSettings:
        return self.config.settings

    @property
    def nodes(self) -> tuple[NodeSpec, ...]:
        return self.config.nodes

    @property
    def deployer(self) -> Deployer:
        return self.config.deployer

    @property
    def engine(self) -> EngineFacts:
        return self.config.engine

    @cached_property
    def by_site(self) -> Mapping[str, tuple[NodeSpec, ...]]:
        return {name: self.config.site_nodes(name) for name in self.settings.sites}

    def site_nodes(self, site: str) -> tuple[NodeSpec, ...]:
        return self.by_site[site]

    def public_sites_with_workers(self) -> list[str]:
        return [
            name
            for name, site in self.settings.sites.items()
            if site.has_public_address and any(n.schedulable for n in self.site_nodes(name))
        ]

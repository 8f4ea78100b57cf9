"""RKE2 behind the engine seam (``components/engine.py``): the tokens, join plan and
RKE2 itself at boot (``Rke2Bootstrap``), then the command that waits until every node is
Ready (``Rke2Cluster``), whose join record the next update reads back (``rke2/join.py``)."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi

from components.cluster_node import ClusterNode
from components.config import ClusterSettings
from components.engine import Engine, NodeConfig, StackParts
from components.sites.base import UserData
from rke2 import config_rules, config_yaml
from rke2.component import RECORD_OUTPUT, Rke2Bootstrap, Rke2Cluster


class Rke2Install:
    """RKE2's ``Install``: the bootstrap is registered before the sites."""

    def __init__(self, parts: StackParts) -> None:
        self._parts = parts
        self._bootstrap = Rke2Bootstrap(
            "rke2", parts.config, parts.secrets, parts.overlay, parts.host_keys
        )

    @property
    def user_data(self) -> UserData:
        return self._bootstrap.user_data

    def boot_digest(self, node: str) -> pulumi.Output[str] | None:
        """The user-data rendered with the join targets of a quiet update: a target only
        this update uses (the initializing server's on a first deployment) is no drift."""
        return self._bootstrap.boot_digests.get(node)

    def cluster(self, nodes: Sequence[ClusterNode]) -> Rke2Cluster:
        cluster = Rke2Cluster(
            "cluster",
            nodes,
            self._bootstrap,
            self._parts.config,
            self._parts.secrets.ssh_private_key,
        )
        pulumi.export(RECORD_OUTPUT, cluster.record)  # read back by the next update
        return cluster


def boot_versions(settings: ClusterSettings) -> dict[str, str]:
    """None: the RKE2 release a node booted with is no drift, since the upgrade Plans move
    every node to the stack's release in place (``rke2/upgrade.py``)."""
    del settings
    return {}


ENGINE = Engine(
    name="rke2",
    rules=config_rules.RULES,
    install=Rke2Install,
    boot_versions=boot_versions,
    node_config=NodeConfig(config_yaml.CONFIG_PATH, config_yaml.shown),
)

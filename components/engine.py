"""The seam between the generic program and an install engine (``rke/``, ``rke2/``).

Each engine hands in one ``Engine`` (``rke/engine.py``, ``rke2/engine.py``); the map from
the stack's ``engine`` value to it is ``engines.py``. Generic modules read the engine's
data here instead of testing its name, so a third engine is one new folder and one line
in that map.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import pulumi
import pulumi_tls as tls

from components.cluster_node import ClusterNode
from components.config import ClusterConfig, ClusterSettings, Secrets
from components.config.rules import EngineRules
from components.overlay.network import Overlay
from components.sites.base import UserData


class Cluster(Protocol):
    """The installed cluster as the program reads it: the admin kubeconfig (a secret) and
    the command everything in the cluster waits for."""

    @property
    def kubeconfig(self) -> pulumi.Output[str]: ...

    @property
    def command(self) -> pulumi.Resource: ...


@dataclass(frozen=True)
class StackParts:
    """What an engine installs from: the checked stack, its secrets, the overlay and
    each node's generated SSH host key (by node name)."""

    config: ClusterConfig
    secrets: Secrets
    overlay: Overlay
    host_keys: Mapping[str, tls.PrivateKey]


class Install(Protocol):
    """One stack's install, in two halves around the sites: each node's user-data (its
    boot part), then the cluster the nodes form (its readiness, kubeconfig and exports)."""

    @property
    def user_data(self) -> UserData: ...

    def cluster(self, nodes: Sequence[ClusterNode]) -> Cluster: ...

    def boot_digest(self, node: str) -> pulumi.Output[str] | None:
        """The sha256 the boot record keeps for the node's user-data
        (``components/boot_record.py``) when it is not that of the exact user-data, once
        ``user_data`` rendered it; None: the exact user-data's."""
        ...


@dataclass(frozen=True)
class NodeConfig:
    """The engine's config file every node's user-data writes, as ``make render`` shows
    it (``build/<stack>/<engine>/<node>.yaml``)."""

    path: str  # where the user-data writes it on the node
    shown: Callable[[str], str]  # the file's text with its secrets masked


@dataclass(frozen=True)
class Engine:
    """One install engine: what is known of it at preview, and how it installs.

    ``rules``: its config rules (versions, whole-stack check); ``install``: registers the
    boot half (before the sites) and returns the ``Install``; ``boot_versions``: the
    versions its part of a node's boot document installs (package or release -> version),
    which the boot record names when a node is behind (``components/boot_record.py``);
    ``node_config``: its per-node config file, or None when the deployer's ``cluster.yml``
    describes the cluster.
    """

    name: str
    rules: EngineRules
    install: Callable[[StackParts], Install]
    boot_versions: Callable[[ClusterSettings], Mapping[str, str]]
    node_config: NodeConfig | None = None

"""The architecture as a Mermaid flowchart, a pure function of the validated config.

What it shows: every site (and which is behind NAT), every node with its roles and overlay
address; the ZeroTier overlay joining every node; the deployer (where ``pulumi up`` and
``rke up`` run, ``multicloud:deployer`` as resolved in ``ClusterConfig.deployer``) reaching
every node it SSHes to, labelled with the path (the node's public address, its site's LAN,
or the overlay: ``sites.<name>.sshVia``); the nodes that take ingress (public, or LAN-only);
and the one DNS record with the node it initially points at.

Every edge joins two declared nodes, never a subgraph: Mermaid 11 lays an edge that ends
on a subgraph out with NaN coordinates and does not draw it (seen with mermaid-cli 11.17 in
Chromium; ``tests/components/test_diagram.py`` renders the committed stacks to check). ``Diagram``
holds the graph as data so that rule is checked before any text is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from components.config import ClusterConfig
from components.nodes import NodeSpec

Shape = Literal["box", "circle", "hexagon", "subroutine"]
Line = Literal["arrow", "thick", "dotted", "plain"]
_OPEN_CLOSE = {
    "box": ("[", "]"),
    "circle": ("((", "))"),
    "hexagon": ("{{", "}}"),
    "subroutine": ("[[", "]]"),
}
_LINES = {"arrow": "-->", "thick": "==>", "dotted": "-.->", "plain": "---"}

# How the deployer reaches a site's nodes, by sites.<name>.sshVia (components/sites/base.py
# ``Site.ssh_address`` picks the same address).
SSH_PATHS = {"public": "SSH · public IP", "private": "SSH · {site} LAN", "overlay": "SSH · overlay"}


@dataclass(frozen=True)
class Node:
    """A Mermaid node: ``id`` is a Mermaid identifier, ``label`` may hold ``<br/>``."""

    id: str
    label: str
    shape: Shape = "box"

    def mermaid(self) -> str:
        left, right = _OPEN_CLOSE[self.shape]
        return f'{self.id}{left}"{_text(self.label)}"{right}'


@dataclass(frozen=True)
class Edge:
    """An edge between two node ids, drawn as ``line`` with an optional label."""

    source: str
    target: str
    label: str = ""
    line: Line = "arrow"

    def mermaid(self) -> str:
        label = f'|"{_text(self.label)}"|' if self.label else ""
        return f"{self.source} {_LINES[self.line]}{label} {self.target}"


@dataclass(frozen=True)
class Group:
    """A Mermaid subgraph of nodes (here: a site)."""

    id: str
    label: str
    nodes: tuple[Node, ...]


@dataclass
class Diagram:
    """A flowchart as data: loose nodes, groups of nodes, edges and CSS classes."""

    nodes: list[Node] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    classes: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # name: (css, ids)

    def node_ids(self) -> set[str]:
        return {n.id for n in self.nodes} | {n.id for g in self.groups for n in g.nodes}

    def check(self) -> None:
        """Raise ``ValueError`` for an edge whose end is not a declared node (or is a group)."""
        ids, groups = self.node_ids(), {g.id for g in self.groups}
        if ids & groups:
            raise ValueError(f"ids used for both a node and a group: {sorted(ids & groups)}")
        for edge in self.edges:
            for end in (edge.source, edge.target):
                if end not in ids:
                    what = "a group" if end in groups else "not declared"
                    raise ValueError(f"edge {edge.mermaid()!r}: {end!r} is {what}")

    def mermaid(self, direction: str = "TB") -> str:
        """The flowchart text, after ``check``."""
        self.check()
        lines = [f"flowchart {direction}"]
        lines += [f"  {n.mermaid()}" for n in self.nodes]
        for group in self.groups:
            lines.append(f'  subgraph {group.id}["{_text(group.label)}"]')
            lines += [f"    {n.mermaid()}" for n in group.nodes]
            lines.append("  end")
        lines += [f"  {e.mermaid()}" for e in self.edges]
        for name, (css, ids) in self.classes.items():
            if ids:
                lines.append(f"  classDef {name} {css}")
                lines.append(f"  class {','.join(ids)} {name}")
        return "\n".join(lines) + "\n"


def _text(label: str) -> str:
    """A label safe inside Mermaid's double quotes."""
    return label.replace('"', "#quot;")


def _id(text: str) -> str:
    return text.replace("-", "_").replace(".", "_")


def entry_node(config: ClusterConfig) -> NodeSpec | None:
    """The node the DNS record points at when Pulumi creates it.

    The same rule as ``components.services.cloudflare.entry_node`` applies to the live
    nodes (the first public-ingress node with a public address), on the config alone;
    ``tests/components/test_diagram.py`` checks both pick the same node for the committed stacks.
    """
    sites = config.settings.sites
    return next(
        (n for n in config.nodes if n.public_ingress and sites[n.site].has_public_address), None
    )


def deployer_place(config: ClusterConfig) -> str:
    """Where the deployer sits (``ClusterConfig.deployer``, from ``multicloud:deployer``)."""
    deployer = config.deployer
    where = [f"on the {deployer.lan} LAN"] if deployer.lan else []
    if deployer.overlay:
        where.append("on the overlay")
    if any(site.ssh_via == "public" for site in config.settings.sites.values()):
        where.append(f"public IPs from {', '.join(deployer.sources)}")
    return "<br/>".join(where)


def deployer_path(config: ClusterConfig, node: NodeSpec) -> str:
    """The edge label for how the deployer reaches ``node`` over SSH."""
    return SSH_PATHS[config.settings.sites[node.site].ssh_via].format(site=node.site)


def _node(config: ClusterConfig, node: NodeSpec) -> Node:
    short = node.name.removeprefix(f"{config.settings.cluster_name}-{node.site}-")
    ingress = {"public": " · public 80/443", "private": " · LAN 80/443", "none": ""}[node.ingress]
    roles = ", ".join(node.roles)
    return Node(_id(node.name), f"{short}{ingress}<br/>{roles}<br/>{node.zerotier_ip}")


def _site_label(config: ClusterConfig, name: str) -> str:
    site = config.settings.sites[name]
    parts = [name, site.kind]
    parts.append("public addresses" if site.has_public_address else "behind NAT")
    if site.lan_cidr:
        parts.append(f"LAN {site.lan_cidr}")
    return " · ".join(parts)


def architecture(config: ClusterConfig) -> Diagram:
    """The architecture diagram of one stack, as data."""
    settings = config.settings
    diagram = Diagram()
    entry = settings.entrypoint
    cloudflare = entry.cloudflare if entry is not None else None
    first = entry_node(config) if cloudflare is not None else None
    if cloudflare is not None:
        diagram.nodes.append(Node("users", "Users", "circle"))
        ttl = "proxied" if cloudflare.proxied else f"TTL {cloudflare.record_ttl} s"
        diagram.nodes.append(Node("dns", f"Cloudflare A {cloudflare.record_name}<br/>{ttl}"))
    # RKE runs `rke up` from the deployer; RKE2 nodes install themselves and the deployer's
    # SSH only waits for them (EngineFacts.install).
    tool = config.engine.install
    diagram.nodes.append(
        Node("deployer", f"deployer: pulumi up, {tool}<br/>{deployer_place(config)}", "subroutine")
    )
    for name in settings.sites:
        nodes = tuple(_node(config, n) for n in config.site_nodes(name))
        diagram.groups.append(Group(f"site_{_id(name)}", _site_label(config, name), nodes))
    diagram.nodes.append(Node("zt", f"ZeroTier overlay {settings.overlay_cidr}", "hexagon"))

    if cloudflare is not None and first is not None:
        diagram.edges.append(Edge("users", "dns"))
        diagram.edges.append(Edge("dns", _id(first.name), "initially", "thick"))
        if entry is not None and entry.updater.enabled:
            for node in _others(config, first):
                diagram.edges.append(Edge("dns", _id(node.name), "follows the updater", "dotted"))
    for node in config.nodes:  # readiness checks and rke up reach every node
        diagram.edges.append(Edge("deployer", _id(node.name), deployer_path(config, node)))
    for node in config.nodes:  # every node is a member of the overlay
        diagram.edges.append(Edge(_id(node.name), "zt", line="plain"))
    public = [_id(n.name) for n in config.nodes if n.public_ingress]
    diagram.classes["publicIngress"] = ("stroke-width:3px", public)
    return diagram


def _others(config: ClusterConfig, first: NodeSpec) -> Iterable[NodeSpec]:
    sites = config.settings.sites
    for node in config.nodes:
        if node != first and node.public_ingress and sites[node.site].has_public_address:
            yield node


def architecture_mermaid(config: ClusterConfig) -> str:
    """The Mermaid flowchart text of one stack (``build/<stack>/architecture.mmd``)."""
    return architecture(config).mermaid()

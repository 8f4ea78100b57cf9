"""Deployer -> nodes: SSH to each node (readiness gates, ``rke up``, the cluster-ready and
drain commands) and the Kubernetes API on each control plane (pulumi-kubernetes)."""

from __future__ import annotations

import ipaddress

from components.nodes import NodeSpec
from components.preflight.context import PlanContext
from components.preflight.paths import Flow, NetworkPath
from components.sites.firewall import API_PORT, SSH_PORT


def deployer_paths(ctx: PlanContext) -> list[NetworkPath]:
    """``ssh`` to every node, then ``kube-api`` to every control plane, the kubeconfig's
    server first. RKE writes the first control plane's ``address`` into the kubeconfig
    (rancher/rke ``pki/services.go``; cluster.yml lists nodes by name) and falls back to the
    others (``cluster/cluster.go`` ``RebuildKubeconfig``); RKE2's names the server the others
    join: on a first deployment the one with the lowest overlay address (rke2/join.py)."""
    paths = [_from_deployer(ctx, node, "ssh", SSH_PORT) for node in ctx.nodes]
    planes = sorted(
        (n for n in ctx.nodes if "controlplane" in n.roles),
        key=lambda n: (
            ipaddress.IPv4Address(n.zerotier_ip)
            if ctx.engine.kubeconfig_server == "overlay-address"
            else n.name
        ),
    )
    for i, node in enumerate(planes):
        path = _from_deployer(ctx, node, "kube-api", API_PORT)
        if i == 0 and path.verdict == "ok":
            verb = "use" if len(ctx.engine.api_clients) > 1 else "uses"
            path = path.with_note(f"kubeconfig server: {ctx.engine.api_users} {verb} it")
        paths.append(path)
    return paths


def _purpose(ctx: PlanContext, kind: str) -> str:
    if kind == "ssh":
        return f"SSH for {ctx.engine.ssh_use}"
    return f"the Kubernetes API for {ctx.engine.api_users}"


def _from_deployer(ctx: PlanContext, node: NodeSpec, kind: str, port: int) -> NetworkPath:
    """One node's SSH or API port, over the address its site's ``sshVia`` names."""
    via = ctx.settings.sites[node.site].ssh_via
    what = f"deployer -> nodes of site {node.site} on {port}/tcp ({_purpose(ctx, kind)})"
    if via == "public":
        return _public(ctx, node, kind, port, what)
    if via == "private":
        return _private(ctx, node, kind, port, what)
    deployer = ctx.deployer
    source = "deployer on the overlay" if deployer.overlay else "deployer (not on the overlay)"
    flow = Flow(kind, source, f"{node.name} overlay {node.zerotier_ip}", f"{port}/tcp")
    if not deployer.overlay:
        return flow.broken(
            f"{what}: sshVia 'overlay' reaches them on their ZeroTier addresses, but the "
            "deployer is not a member of the network; join it (an address in block 0 of "
            "overlayCidr) and set multicloud:deployer.overlay: true",
            key="deployer.overlay",
        )
    return flow.ok("inside ZeroTier (9993/udp)")


def _public(ctx: PlanContext, node: NodeSpec, kind: str, port: int, what: str) -> NetworkPath:
    deployer, policy = ctx.deployer, ctx.firewall[node.site]
    flow = Flow(
        kind,
        f"deployer from {', '.join(deployer.sources)}",
        f"{node.name} public address",
        f"{port}/tcp",
    )
    missing = [c for c in deployer.sources if not policy.admits(node, "tcp", port, c)]
    if not ctx.settings.sites[node.site].has_public_address:
        return flow.broken(
            f"{what}: the site has no public address; set sshVia: private and run "
            "the deployer on its LAN",
            key=f"sites.{node.site}.sshVia",
        )
    if missing:
        return flow.broken(
            f"{what}: the firewall does not open {port}/tcp to {', '.join(missing)}",
            key="deployer.sourceCidrs" if deployer.explicit else "adminCidrs",
        )
    return flow.ok("firewall: from deployer sources")


def _private(ctx: PlanContext, node: NodeSpec, kind: str, port: int, what: str) -> NetworkPath:
    deployer, site = ctx.deployer, ctx.settings.sites[node.site]
    source = (
        f"deployer on LAN of {deployer.lan} ({deployer.lan_cidr})"
        if deployer.lan
        else "deployer (on no site's LAN)"
    )
    flow = Flow(kind, source, f"{node.name} LAN address", f"{port}/tcp")
    if deployer.lan != node.site:
        where = (
            f"on the LAN of site {deployer.lan} (multicloud:deployer.lan)"
            if deployer.lan
            else "on no site's LAN (multicloud:deployer.lan is unset)"
        )
        return flow.broken(
            f"{what}: sshVia 'private' reaches them on their LAN addresses, but the "
            f"deployer is {where}; run it on that LAN and set "
            f"multicloud:deployer.lan: {node.site}, or give the site public addresses "
            "and set sshVia: public",
            key=f"sites.{node.site}.sshVia",
        )
    assert site.lan_cidr is not None  # resolving the deployer requires it
    if not ctx.firewall[node.site].admits(node, "tcp", port, site.lan_cidr):
        return flow.broken(
            f"{what}: the firewall does not open {port}/tcp to the LAN {site.lan_cidr}",
            key=f"sites.{node.site}.lanCidr",
        )
    return flow.ok(f"firewall: from LAN {site.lan_cidr}")

"""Node <-> node: ZeroTier Central, the overlay between sites on 9993/udp, and the
engine's node-to-node ports (RKE2's), which must ride the overlay and stay closed on
public addresses."""

from __future__ import annotations

from urllib.parse import urlsplit

from components.preflight.context import PlanContext
from components.preflight.paths import WORLD, Flow, NetworkPath, Verdict
from components.sites.firewall import ZEROTIER_PORT

ZEROTIER_CENTRAL_HOST = "api.zerotier.com"  # https://docs.zerotier.com/api/central/v1


def central_path(ctx: PlanContext) -> NetworkPath:
    """The program (on the deployer) sends the Central token to zerotierCentralUrl's
    host: ZeroTier's own API is ok; any other host is a warning a reviewer sees, since
    one edited line would hand the token to whoever runs that host."""
    host = urlsplit(ctx.settings.zerotier_central_url).hostname or "?"
    flow = Flow(
        "zerotier-central", "deployer (the program)", f"{host} (zerotierCentralUrl)", "443/tcp"
    )
    if host == ZEROTIER_CENTRAL_HOST:
        return flow.verdict(
            "ok", "ZeroTier Central: the zerotierToken goes only to ZeroTier", "zerotierCentralUrl"
        )
    return flow.warn(
        f"the zerotierToken goes to {host}, not {ZEROTIER_CENTRAL_HOST}: right only "
        "for a self-hosted controller you run; check zerotierCentralUrl",
        key="zerotierCentralUrl",
    )


def overlay_paths(ctx: PlanContext) -> list[NetworkPath]:
    """Central, then each pair of sites with nodes: direct when one side accepts 9993/udp
    from anywhere (a public address), else a warning (hole punching or ZeroTier's relays)."""
    sites = [name for name in ctx.settings.sites if ctx.site_nodes(name)]
    open_to_world = {name: _zerotier_reachable(ctx, name) for name in sites}
    port = f"{ZEROTIER_PORT}/udp"
    paths = [central_path(ctx)]
    for i, a in enumerate(sites):
        if len(ctx.site_nodes(a)) > 1:
            same = Flow("overlay", f"{a} nodes", f"{a} nodes", port)
            paths.append(same.ok("same site network: direct"))
        for b in sites[i + 1 :]:
            flow = Flow("overlay", f"{a} nodes", f"{b} nodes", port)
            reachable = [s for s in (a, b) if open_to_world[s]]
            if reachable:
                paths.append(flow.ok(f"direct: {reachable[0]} accepts {port} from anywhere"))
                continue
            paths.append(
                flow.warn(
                    f"sites {a} and {b} are both behind NAT: ZeroTier needs UDP hole "
                    "punching, else it relays through its root servers (slow); forward "
                    f"{port} to one of them or give one a public address",
                    key=f"sites.{b}",
                )
            )
    return paths


def _zerotier_reachable(ctx: PlanContext, name: str) -> bool:
    node = ctx.site_nodes(name)[0]
    return ctx.settings.sites[name].has_public_address and ctx.firewall[name].admits(
        node, "udp", ZEROTIER_PORT, WORLD
    )


def cluster_port_paths(ctx: PlanContext) -> list[NetworkPath]:
    """The engine's node-to-node ports (``EngineFacts.cluster_ports``; RKE2's are
    ``rke2.release.CLUSTER_PORTS``): on overlay addresses only, so ZeroTier carries them
    and the public firewall must not open them."""
    paths = []
    for name, protocol, first, last, listeners in ctx.engine.cluster_ports:
        port = f"{first}/{protocol}" if first == last else f"{first}-{last}/{protocol}"
        every = listeners == "nodes"
        targets = [n for n in ctx.nodes if every or "etcd" in n.roles]
        target = "every node's overlay address" if every else "servers' overlay addresses"
        exposed = [
            n
            for n in targets
            if any(
                ctx.firewall[n.site].admits(n, protocol, p, WORLD) for p in range(first, last + 1)
            )
        ]
        verdict: Verdict = "broken" if exposed else "ok"
        note = (
            f"the public firewall opens {port} on {', '.join(n.name for n in exposed)} to "
            f"the internet; {ctx.engine.title} uses it only on the overlay"
            if exposed
            else "inside ZeroTier (9993/udp); closed on public addresses"
        )
        key = f"sites.{exposed[0].site}" if exposed else None
        flow = Flow(f"{ctx.settings.engine}-{name}", "nodes", target, port)
        paths.append(flow.verdict(verdict, note, key))
    return paths

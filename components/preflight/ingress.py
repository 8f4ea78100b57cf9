"""Clients -> ingress: 80/443 on every public-ingress node from the internet (from each of
Cloudflare's ranges, and only those, when the record is proxied) and on private-ingress
nodes from the site's LAN; a site with ingress but no worker-role node is a warning."""

from __future__ import annotations

from components.nodes import PUBLIC_INGRESS_LABEL, NodeSpec
from components.preflight.context import PlanContext
from components.preflight.paths import WORLD, Flow, NetworkPath, Verdict
from components.sites.firewall import HTTP_PORTS, cloudflare_origin_ranges

PORTS = ",".join(map(str, HTTP_PORTS)) + "/tcp"


def ingress_paths(ctx: PlanContext) -> list[NetworkPath]:
    paths = []
    for name, site in ctx.settings.sites.items():
        if site.ingress != "none" and not any(n.schedulable for n in ctx.site_nodes(name)):
            paths.append(
                Flow("ingress", "-", f"site {name}", PORTS).warn(
                    f"sites.{name}.ingress is {site.ingress!r} but the site has no "
                    "worker-role node: nothing there runs the ingress controller",
                    key=f"sites.{name}.ingress",
                )
            )
    entry = ctx.settings.entrypoint
    cloudflare = entry.cloudflare if entry else None
    # A proxied record: the origin takes 80/443 from Cloudflare's edge only.
    edge = cloudflare_origin_ranges() if cloudflare and cloudflare.proxied else ()
    for node in ctx.nodes:
        if node.ingress != "none":
            paths.append(_node_ingress(ctx, node, edge, has_record=bool(cloudflare)))
    return paths


def _node_ingress(
    ctx: PlanContext, node: NodeSpec, edge: tuple[str, ...], *, has_record: bool
) -> NetworkPath:
    """80/443 on one ingress node from where its clients are. ``edge``: Cloudflare's ranges
    when the record is proxied; ``has_record``: a public-ingress node may be its target."""
    policy = ctx.firewall[node.site]
    origins: tuple[str, ...]
    if node.public_ingress and edge:
        source, target, origins = "Cloudflare (proxied)", f"{node.name} public address", edge
    elif node.public_ingress:
        source, target, origins = "internet", f"{node.name} public address", (WORLD,)
    else:
        lan = ctx.settings.sites[node.site].lan_cidr
        assert lan is not None  # `ingress: private` requires lanCidr
        source, target, origins = f"LAN of {node.site} ({lan})", f"{node.name} LAN address", (lan,)
    flow = Flow("ingress" if node.public_ingress else "lan-ingress", source, target, PORTS)
    if (
        edge
        and node.public_ingress
        and any(policy.admits(node, "tcp", p, WORLD) for p in HTTP_PORTS)
    ):
        return flow.broken(
            f"the record is proxied, and the firewall of site {node.site} opens "
            f"{PORTS} to anyone: clients bypass Cloudflare by the node's address",
            key="entrypoint.cloudflare.proxied",
        )
    closed = [o for o in origins if not all(policy.admits(node, "tcp", p, o) for p in HTTP_PORTS)]
    if closed:
        origin = (
            closed[0]
            if len(origins) == 1
            else f"{len(closed)} of Cloudflare's ranges (first {closed[0]})"
        )
        return flow.broken(
            f"the firewall of site {node.site} does not open {PORTS} from {origin}",
            key=f"sites.{node.site}.ingress",
        )
    if not ctx.settings.rke.ingress.enabled:
        verdict: Verdict = "broken" if node.public_ingress and has_record else "warn"
        return flow.verdict(
            verdict,
            f"sites.{node.site}.ingress opens {PORTS} but rke.ingress.enabled is "
            "false: no controller listens there; enable it or set the site's "
            "ingress: none",
            "rke.ingress.enabled",
        )
    note = "ingress-nginx hostPort" + (
        f"; DNS record target ({PUBLIC_INGRESS_LABEL}=true)"
        if node.public_ingress and has_record
        else ""
    )
    if node.public_ingress and edge:
        note += f"; from Cloudflare's {len(edge)} ranges only (proxied)"
    return flow.ok(note)

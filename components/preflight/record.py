"""The entrypoint's record and certificates: ``dns-record`` (the Cloudflare record has a
target) and ``acme-http01`` or ``acme-dns01``, after ``entrypoint.certManager.solver``."""

from __future__ import annotations

import functools
import ipaddress

from components.config import ClusterSettings
from components.config.entrypoint import EntrypointSettings
from components.nodes import PUBLIC_INGRESS_LABEL
from components.preflight.context import PlanContext
from components.preflight.paths import WORLD, Flow, NetworkPath
from components.services.network_policies import (
    ClusterRanges,
    cert_manager_policies,
    cloudflare_ranges,
)
from components.services.workloads import CERT_MANAGER_DNS01_RESOLVERS, CERT_MANAGER_NAMESPACE


def record_paths(ctx: PlanContext) -> list[NetworkPath]:
    entry = ctx.settings.entrypoint
    if entry is None:
        return []
    cloudflare = entry.cloudflare
    targets = [n for n in ctx.nodes if n.public_ingress]
    paths: list[NetworkPath] = []
    if cloudflare is not None:
        record = Flow(
            "dns-record",
            f"Cloudflare {cloudflare.record_name}",
            f"{len(targets)} public-ingress nodes" if targets else "no public-ingress node",
        )
        paths.append(
            record.ok(
                f"first target {targets[0].name}; the DNS updater "
                f"({PUBLIC_INGRESS_LABEL}=true) keeps it on a live node"
            )
            if targets
            else record.broken(_no_target(ctx), key="entrypoint.cloudflare")
        )
    if entry.cert_manager.enabled and entry.app.enabled:
        if entry.cert_manager.solver == "dns01":
            paths.append(_acme_dns01(ctx.settings, entry))
        else:
            paths.append(_acme_http01(ctx, entry, bool(targets)))
    return paths


def _no_target(ctx: PlanContext) -> str:
    return (
        "the Cloudflare record and the DNS updater need a public-ingress node with a "
        "public address (nodes behind NAT cannot be the entrypoint): set "
        "sites.<name>.ingress: public on a site with a public address and workers "
        f"({', '.join(ctx.public_sites_with_workers()) or 'none yet'})"
    )


def _acme_http01(ctx: PlanContext, entry: EntrypointSettings, has_target: bool) -> NetworkPath:
    """Let's Encrypt's HTTP-01 check reaches the app's host on 80 from the internet."""
    cloudflare = entry.cloudflare
    flow = Flow(
        "acme-http01",
        "Let's Encrypt (internet)",
        f"http://{entry.app_host}/.well-known/acme-challenge/",
        "80/tcp",
    )
    if cloudflare is None:
        return flow.broken(
            f"Let's Encrypt's HTTP-01 check connects to {entry.app_host} from the "
            "internet, and there is no public record (entrypoint.cloudflare is "
            "unset): set entrypoint.certManager.enabled: false, or add "
            "entrypoint.cloudflare",
            key="entrypoint.certManager.enabled",
        )
    if not has_target:
        return flow.broken(_no_target(ctx), key="entrypoint.cloudflare")
    if cloudflare.proxied:
        # The validator's request ends at Cloudflare's edge, which forwards plain HTTP to
        # the ingress only if the zone lets it: "Always Use HTTPS" redirects it (and with
        # "Full (strict)" that fails before a certificate exists), WAF and bot rules may
        # block it (docs/entrypoint.md, "Certificates behind the proxy"). The program
        # manages none of these settings.
        return flow.warn(
            f"through Cloudflare's proxy ({cloudflare.record_name} is proxied; the "
            "origin takes 80 from Cloudflare's ranges only): passes only if the "
            "zone's Always Use HTTPS, WAF and bot rules let "
            "plain HTTP to /.well-known/acme-challenge/ through; "
            "set entrypoint.certManager.solver: dns01 to not depend on them",
            key="entrypoint.certManager.solver",
        )
    return flow.ok(f"via {cloudflare.record_name} to the public-ingress nodes")


def _acme_dns01(settings: ClusterSettings, entry: EntrypointSettings) -> NetworkPath:
    """cert-manager's Cloudflare DNS-01 solver: the controller, in the cluster, writes the
    TXT record ``_acme-challenge.<host>`` through the Cloudflare API (HTTPS to
    api.cloudflare.com, in Cloudflare's published ranges) with the token the program
    creates for it, then asks public resolvers on 53 whether it is there
    (``network_policies.cert_manager_policies``). Let's Encrypt reads the record from
    Cloudflare's DNS, so nothing has to reach the cluster."""
    cloudflare = entry.cloudflare
    source = "cert-manager controller (in the cluster)"
    if cloudflare is None:  # parse_config refuses this already (dns01 needs the zone)
        return Flow("acme-dns01", source, "Cloudflare API", "443/tcp").broken(
            "certManager.solver: dns01 needs entrypoint.cloudflare (the token is scoped "
            "to its zone)",
            key="entrypoint.certManager.solver",
        )
    resolvers = ", ".join(r.rsplit(":", 1)[0] for r in CERT_MANAGER_DNS01_RESOLVERS)
    target = f"Cloudflare API (api.cloudflare.com), zone {cloudflare.zone}; DNS {resolvers}"
    flow = Flow("acme-dns01", source, target, "443/tcp, 53")
    blocked = _dns01_blocked(settings)
    if blocked:
        return flow.broken(
            f"cert-manager's NetworkPolicy does not allow {blocked}",
            key="entrypoint.certManager.solver",
        )
    return flow.ok(
        f"TXT _acme-challenge.{entry.app_host} with a token the program creates "
        f"(DNS Write + Zone Read on {cloudflare.zone} only, a secret in the "
        f"{CERT_MANAGER_NAMESPACE} namespace); independent of the proxy and port 80"
    )


@functools.cache
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """``ipaddress.ip_network``, parsed once per distinct text (the DNS-01 check compares
    every Cloudflare range with every policy block, on each parse of the config)."""
    return ipaddress.ip_network(cidr)


def _dns01_blocked(settings: ClusterSettings) -> str | None:
    """What cert-manager's DNS-01 egress lacks under its NetworkPolicies (the ones the
    program applies with ``dns01``), or None. api.cloudflare.com answers from Cloudflare's
    published ranges (reference/cloudflare-ips.json): 443/tcp to each; the self-check asks
    only the public resolvers the controller is given (``--dns01-recursive-nameservers``):
    53 (udp, tcp) to each of them."""
    ranges = ClusterRanges(settings.overlay_cidr, settings.rke.pod_cidr, settings.rke.service_cidr)
    egress = [
        rule
        for policy in cert_manager_policies(ranges, dns01=True)
        if "Egress" in policy["spec"].get("policyTypes", [])
        and policy["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/component")
        == "controller"
        for rule in policy["spec"].get("egress", [])
    ]

    def allows(cidr: str, protocol: str, port: int) -> bool:
        net = _network(cidr)
        for rule in egress:
            ports = rule.get("ports")
            if ports and not any(
                p.get("protocol", "TCP") == protocol and p.get("port") == port for p in ports
            ):
                continue
            for peer in rule.get("to") or [{"ipBlock": {"cidr": WORLD}}]:
                block = peer.get("ipBlock")
                if block is None:
                    continue
                inside = net.subnet_of(_network(block["cidr"]))  # type: ignore[arg-type]
                excluded = any(net.overlaps(_network(e)) for e in block.get("except", []))
                if inside and not excluded:
                    return True
        return False

    cloudflare = cloudflare_ranges()
    resolvers = [f"{r.rsplit(':', 1)[0]}/32" for r in CERT_MANAGER_DNS01_RESOLVERS]
    missing = []
    for protocol, port, cidrs, what in (
        ("TCP", 443, cloudflare, "Cloudflare ranges"),
        ("UDP", 53, resolvers, "DNS-01 resolvers"),
        ("TCP", 53, resolvers, "DNS-01 resolvers"),
    ):
        blocked = [c for c in cidrs if not allows(c, protocol, port)]
        if blocked:
            missing.append(
                f"{port}/{protocol.lower()} to {len(blocked)} of {len(cidrs)} {what} "
                f"(first {blocked[0]})"
            )
    return ", ".join(missing) or None

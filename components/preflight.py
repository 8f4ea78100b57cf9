"""The reachability preflight: the plan checked as a network before anything is created.

``plan_network`` is pure: from the validated settings, the node specs and the resolved
deployer it renders each site's firewall policy (``components/sites/firewall.py``, the
same objects the sites register) and derives every path the deployment needs:

- ``ssh``: deployer -> each node's SSH address, 22/tcp (readiness gates, ``rke up``);
- ``kube-api``: deployer -> each control plane's address, 6443/tcp. RKE writes the first
  control plane's ``address`` into the kubeconfig (rancher/rke ``pki/services.go``,
  ``"https://"+cpHosts[0].Address+":6443"``; cluster.yml lists nodes by name) and
  pulumi-kubernetes uses that kubeconfig for every in-cluster resource; RKE falls back
  to the other control planes' addresses (``cluster/cluster.go`` ``RebuildKubeconfig``);
- ``zerotier-central``: the program -> zerotierCentralUrl's host with the Central token: a
  warning unless it is ZeroTier's api.zerotier.com;
- ``overlay``: site <-> site on ZeroTier's 9993/udp, direct when one side accepts it from
  anywhere (a public address), otherwise a warning: both sides behind NAT depend on
  hole punching or ZeroTier's relays;
- ``ingress`` / ``lan-ingress``: internet -> 80/443 on every public-ingress node (the DNS
  record's possible targets; from each of Cloudflare's ranges, and only those, when the
  record is proxied), the site's LAN -> 80/443 on private-ingress nodes;
- ``dns-record``: the Cloudflare record has a target;
- ``acme-http01`` or ``acme-dns01``, after ``entrypoint.certManager.solver``: HTTP-01, Let's
  Encrypt's check reaches the app's host on 80 (through Cloudflare's edge when the record
  is proxied: a warning, zone settings the program does not manage decide); DNS-01,
  cert-manager's controller reaches the Cloudflare API over HTTPS (its NetworkPolicy
  allows it) with the zone-scoped token the program creates, and public resolvers on 53
  (its self-check asks them only, so split-horizon DNS at home cannot hide the record);
- ``ingress-controller``: RKE's ingress-nginx DaemonSet and admission Jobs match a node
  whenever an Ingress is created (the admission webhook has failurePolicy Fail);
- ``longhorn``: the replica count and zone anti-affinity fit the zones (sites) with
  schedulable nodes;
- ``openstack-quota``: an OpenStack site's security-group rules, counted as Neutron counts
  them, fit the quota the site declares (``securityGroupRuleQuota``; unset, a warning above
  Neutron's default of 100).

``require_reachable`` raises ``ConfigError`` with one line per broken path, naming the
config key to change and the fix; ``parse_config`` calls both, so every broken path
stops ``pulumi preview``, ``pulumi up`` and ``make render`` before any registration.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from components.config.model import NAMESPACE, ConfigError
from components.nodes import INGRESS_CONTROLLER_LABEL, PUBLIC_INGRESS_LABEL, NodeSpec
from components.nodes import schedulable_zones as zones_of
from components.services.network_policies import (
    ClusterRanges,
    cert_manager_policies,
    cloudflare_ranges,
)
from components.services.workloads import (
    CERT_MANAGER_DNS01_RESOLVERS,
    CERT_MANAGER_NAMESPACE,
    longhorn_replicas,
)
from components.sites.firewall import (
    API_PORT,
    HTTP_PORTS,
    NEUTRON_DEFAULT_RULE_QUOTA,
    SSH_PORT,
    ZEROTIER_PORT,
    SitePolicy,
    cloudflare_origin_ranges,
    neutron_rule_count,
    site_policy,
)

if TYPE_CHECKING:
    from components.config.deployer import Deployer
    from components.config.entrypoint import EntrypointSettings
    from components.config.stack import ClusterSettings, SiteBase

Verdict = Literal["ok", "warn", "broken"]
WORLD = "0.0.0.0/0"
ZEROTIER_CENTRAL_HOST = "api.zerotier.com"  # https://docs.zerotier.com/api/central/v1
COLUMNS = ("path", "from", "to", "port", "verdict", "note")


@dataclass(frozen=True)
class NetworkPath:
    """One row of the reachability table.

    ``key``: the config key (without namespace) to change when ``verdict`` is not ok;
    ``note``: why it holds, or what breaks and the fix.
    """

    path: str
    source: str
    target: str
    port: str
    verdict: Verdict
    note: str
    key: str | None = None

    def row(self) -> tuple[str, str, str, str, str, str]:
        """The table's columns: path, from, to, port, verdict, note."""
        return (self.path, self.source, self.target, self.port, self.verdict, self.note)


@dataclass(frozen=True)
class NetworkPlan:
    """The rendered firewall policy per site and every path it must carry."""

    deployer: Deployer
    firewall: Mapping[str, SitePolicy]
    paths: tuple[NetworkPath, ...]

    def markdown(self) -> str:
        """The reachability table as Markdown (what ``make render`` prints and writes)."""
        lines = [
            f"Deployer: {self.deployer.describe()}",
            "",
            "| " + " | ".join(COLUMNS) + " |",
            "|" + "---|" * len(COLUMNS),
        ]
        for path in self.paths:
            cells = (cell.replace("|", "\\|") for cell in path.row())
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


@functools.cache
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """``ipaddress.ip_network``, parsed once per distinct text (the DNS-01 check compares
    every Cloudflare range with every policy block, on each parse of the config)."""
    return ipaddress.ip_network(cidr)


def _cert_manager_dns01_blocked(settings: ClusterSettings) -> str | None:
    """What cert-manager's DNS-01 egress lacks under its NetworkPolicies (the ones the
    program applies with ``dns01``), or None. api.cloudflare.com answers from Cloudflare's
    published ranges (reference/cloudflare-ips.json): 443/tcp to each; the self-check asks
    only the public resolvers the controller is given (``--dns01-recursive-nameservers``):
    53 (udp, tcp) to each of them."""
    ranges = ClusterRanges(
        settings.overlay_cidr, settings.rke.pod_cidr, settings.rke.service_cidr,
        engine=settings.engine,
    )  # fmt: skip
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


def plan_network(
    settings: ClusterSettings, nodes: Sequence[NodeSpec], deployer: Deployer
) -> NetworkPlan:
    """Each site's firewall policy and the preflight's paths over it (pure, no I/O)."""
    by_site: dict[str, list[NodeSpec]] = {name: [] for name in settings.sites}
    for node in nodes:
        by_site[node.site].append(node)
    cloudflare = settings.entrypoint.cloudflare if settings.entrypoint else None
    proxied = bool(cloudflare and cloudflare.proxied)
    firewall = {
        name: site_policy(name, site, deployer, settings.admin_cidrs, by_site[name], proxied)
        for name, site in settings.sites.items()
    }
    return NetworkPlan(deployer, firewall, preflight(settings, nodes, deployer, firewall))


def require_reachable(paths: Sequence[NetworkPath]) -> None:
    """Raise ``ConfigError`` listing every broken path once (warnings pass)."""
    lines: dict[str, None] = {}
    for path in paths:
        if path.verdict == "broken":
            lines.setdefault(f"{NAMESPACE}:{path.key}: {path.note}")
    if lines:
        count = f"{len(lines)} broken path{'s' if len(lines) > 1 else ''}"
        raise ConfigError(
            f"invalid stack config: the network preflight found {count} "
            "(see docs/network.md):\n  " + "\n  ".join(lines)
        )


def preflight(
    settings: ClusterSettings,
    nodes: Sequence[NodeSpec],
    deployer: Deployer,
    firewall: Mapping[str, SitePolicy],
) -> tuple[NetworkPath, ...]:
    """Every path of the deployment with its verdict, in a stable order (see module doc)."""
    check = _Check(settings, nodes, deployer, firewall)
    return (
        *check.deployer_paths(),
        *check.overlay_paths(),
        *check.cluster_port_paths(),
        *check.ingress_paths(),
        *check.in_cluster_paths(),
        *check.quota_paths(),
    )


class _Check:
    def __init__(
        self,
        settings: ClusterSettings,
        nodes: Sequence[NodeSpec],
        deployer: Deployer,
        firewall: Mapping[str, SitePolicy],
    ) -> None:
        self.settings = settings
        self.nodes = nodes
        self.deployer = deployer
        self.firewall = firewall
        self.by_site: dict[str, list[NodeSpec]] = {name: [] for name in settings.sites}
        for node in nodes:
            self.by_site[node.site].append(node)

    # --- deployer -> nodes -------------------------------------------------------------

    def deployer_paths(self) -> list[NetworkPath]:
        paths = []
        for node in self.nodes:
            paths.append(self._from_deployer(node, "ssh", SSH_PORT))
        # cluster.yml lists nodes by name; RKE's kubeconfig names the first control plane.
        # RKE2's kubeconfig names the server the others join: on a first deployment the one
        # with the lowest overlay address (rke2/join.py).
        rke2 = self.settings.engine == "rke2"
        planes = sorted(
            (n for n in self.nodes if "controlplane" in n.roles),
            key=lambda n: ipaddress.IPv4Address(n.zerotier_ip) if rke2 else n.name,
        )
        for i, node in enumerate(planes):
            path = self._from_deployer(node, "kube-api", API_PORT)
            if i == 0 and path.verdict == "ok":
                user = "pulumi-kubernetes uses" if rke2 else "rke and pulumi-kubernetes use"
                path = _with_note(path, f"kubeconfig server: {user} it")
            paths.append(path)
        return paths

    def _from_deployer(self, node: NodeSpec, kind: str, port: int) -> NetworkPath:
        site: SiteBase = self.settings.sites[node.site]
        policy = self.firewall[node.site]
        deployer = self.deployer
        rke2 = self.settings.engine == "rke2"
        purpose = (
            (
                "SSH for the cluster-ready and drain commands"
                if rke2
                else "SSH for the readiness gates and rke up"
            )
            if kind == "ssh"
            else "the Kubernetes API for "
            + ("pulumi-kubernetes" if rke2 else "rke and pulumi-kubernetes")
        )
        what = f"deployer -> nodes of site {node.site} on {port}/tcp ({purpose})"
        via = site.ssh_via
        if via == "public":
            source = f"deployer from {', '.join(deployer.sources)}"
            target = f"{node.name} public address"
            missing = [c for c in deployer.sources if not policy.admits(node, "tcp", port, c)]
            if not site.has_public_address:
                return NetworkPath(
                    kind,
                    source,
                    target,
                    f"{port}/tcp",
                    "broken",
                    f"{what}: the site has no public address; set sshVia: private and run "
                    "the deployer on its LAN",
                    f"sites.{node.site}.sshVia",
                )
            if missing:
                return NetworkPath(
                    kind,
                    source,
                    target,
                    f"{port}/tcp",
                    "broken",
                    f"{what}: the firewall does not open {port}/tcp to {', '.join(missing)}",
                    "deployer.sourceCidrs" if deployer.explicit else "adminCidrs",
                )
            return NetworkPath(
                kind, source, target, f"{port}/tcp", "ok", "firewall: from deployer sources"
            )
        if via == "private":
            source = (
                f"deployer on LAN of {deployer.lan} ({deployer.lan_cidr})"
                if deployer.lan
                else "deployer (on no site's LAN)"
            )
            target = f"{node.name} LAN address"
            if deployer.lan != node.site:
                where = (
                    f"on the LAN of site {deployer.lan} (multicloud:deployer.lan)"
                    if deployer.lan
                    else "on no site's LAN (multicloud:deployer.lan is unset)"
                )
                return NetworkPath(
                    kind,
                    source,
                    target,
                    f"{port}/tcp",
                    "broken",
                    f"{what}: sshVia 'private' reaches them on their LAN addresses, but the "
                    f"deployer is {where}; run it on that LAN and set "
                    f"multicloud:deployer.lan: {node.site}, or give the site public addresses "
                    "and set sshVia: public",
                    f"sites.{node.site}.sshVia",
                )
            assert site.lan_cidr is not None  # resolving the deployer requires it
            if not policy.admits(node, "tcp", port, site.lan_cidr):
                return NetworkPath(
                    kind,
                    source,
                    target,
                    f"{port}/tcp",
                    "broken",
                    f"{what}: the firewall does not open {port}/tcp to the LAN {site.lan_cidr}",
                    f"sites.{node.site}.lanCidr",
                )
            return NetworkPath(
                kind, source, target, f"{port}/tcp", "ok", f"firewall: from LAN {site.lan_cidr}"
            )
        source = "deployer on the overlay" if deployer.overlay else "deployer (not on the overlay)"
        target = f"{node.name} overlay {node.zerotier_ip}"
        if not deployer.overlay:
            return NetworkPath(
                kind,
                source,
                target,
                f"{port}/tcp",
                "broken",
                f"{what}: sshVia 'overlay' reaches them on their ZeroTier addresses, but the "
                "deployer is not a member of the network; join it (an address in block 0 of "
                "overlayCidr) and set multicloud:deployer.overlay: true",
                "deployer.overlay",
            )
        return NetworkPath(kind, source, target, f"{port}/tcp", "ok", "inside ZeroTier (9993/udp)")

    # --- node <-> node -----------------------------------------------------------------

    def central_path(self) -> NetworkPath:
        """The program (on the deployer) sends the Central token to zerotierCentralUrl's
        host: ZeroTier's own API is ok; any other host is a warning a reviewer sees, since
        one edited line would hand the token to whoever runs that host."""
        host = urlsplit(self.settings.zerotier_central_url).hostname or "?"
        official = host == ZEROTIER_CENTRAL_HOST
        note = (
            "ZeroTier Central: the zerotierToken goes only to ZeroTier"
            if official
            else f"the zerotierToken goes to {host}, not {ZEROTIER_CENTRAL_HOST}: right only "
            "for a self-hosted controller you run; check zerotierCentralUrl"
        )
        return NetworkPath(
            "zerotier-central",
            "deployer (the program)",
            f"{host} (zerotierCentralUrl)",
            "443/tcp",
            "ok" if official else "warn",
            note,
            "zerotierCentralUrl",
        )

    def overlay_paths(self) -> list[NetworkPath]:
        sites = [name for name in self.settings.sites if self.by_site[name]]
        open_to_world = {name: self._zerotier_reachable(name) for name in sites}
        port = f"{ZEROTIER_PORT}/udp"
        paths = [self.central_path()]
        for i, a in enumerate(sites):
            if len(self.by_site[a]) > 1:
                paths.append(
                    NetworkPath(
                        "overlay",
                        f"{a} nodes",
                        f"{a} nodes",
                        port,
                        "ok",
                        "same site network: direct",
                    )
                )
            for b in sites[i + 1 :]:
                reachable = [s for s in (a, b) if open_to_world[s]]
                if reachable:
                    note = f"direct: {reachable[0]} accepts {port} from anywhere"
                    paths.append(
                        NetworkPath("overlay", f"{a} nodes", f"{b} nodes", port, "ok", note)
                    )
                    continue
                paths.append(
                    NetworkPath(
                        "overlay",
                        f"{a} nodes",
                        f"{b} nodes",
                        port,
                        "warn",
                        f"sites {a} and {b} are both behind NAT: ZeroTier needs UDP hole "
                        "punching, else it relays through its root servers (slow); forward "
                        f"{port} to one of them or give one a public address",
                        f"sites.{b}",
                    )
                )
        return paths

    def _zerotier_reachable(self, name: str) -> bool:
        site = self.settings.sites[name]
        node = self.by_site[name][0]
        return site.has_public_address and self.firewall[name].admits(
            node, "udp", ZEROTIER_PORT, WORLD
        )

    # --- node <-> node, the engine's own ports ----------------------------------------

    def cluster_port_paths(self) -> list[NetworkPath]:
        """RKE2's node-to-node ports (``rke2.release.CLUSTER_PORTS``): on overlay addresses
        only, so ZeroTier carries them and the public firewall must not open them."""
        if self.settings.engine != "rke2":
            return []
        from rke2.release import CLUSTER_PORTS

        paths = []
        for name, protocol, first, last, listeners in CLUSTER_PORTS:
            port = f"{first}/{protocol}" if first == last else f"{first}-{last}/{protocol}"
            every = listeners == "nodes"
            targets = [n for n in self.nodes if every or "etcd" in n.roles]
            target = "every node's overlay address" if every else "servers' overlay addresses"
            exposed = [
                n
                for n in targets
                if any(
                    self.firewall[n.site].admits(n, protocol, p, WORLD)
                    for p in range(first, last + 1)
                )
            ]
            verdict: Verdict = "broken" if exposed else "ok"
            note = (
                f"the public firewall opens {port} on {', '.join(n.name for n in exposed)} to "
                "the internet; RKE2 uses it only on the overlay"
                if exposed
                else "inside ZeroTier (9993/udp); closed on public addresses"
            )
            key = f"sites.{exposed[0].site}" if exposed else None
            paths.append(NetworkPath(f"rke2-{name}", "nodes", target, port, verdict, note, key))
        return paths

    # --- clients -> ingress ------------------------------------------------------------

    def ingress_paths(self) -> list[NetworkPath]:
        settings = self.settings
        enabled = settings.rke.ingress.enabled
        cloudflare = settings.entrypoint.cloudflare if settings.entrypoint else None
        ports = ",".join(map(str, HTTP_PORTS)) + "/tcp"
        paths = []
        for name, site in settings.sites.items():
            if site.ingress != "none" and not any(n.schedulable for n in self.by_site[name]):
                paths.append(
                    NetworkPath(
                        "ingress",
                        "-",
                        f"site {name}",
                        ports,
                        "warn",
                        f"sites.{name}.ingress is {site.ingress!r} but the site has no "
                        "worker-role node: nothing there runs the ingress controller",
                        f"sites.{name}.ingress",
                    )
                )
        # A proxied record: the origin takes 80/443 from Cloudflare's edge only.
        edge = cloudflare_origin_ranges() if cloudflare and cloudflare.proxied else ()
        for node in self.nodes:
            if node.ingress == "none":
                continue
            policy = self.firewall[node.site]
            if node.public_ingress and edge:
                source, target, origins = (
                    "Cloudflare (proxied)",
                    f"{node.name} public address",
                    edge,
                )
            elif node.public_ingress:
                source, target, origins = "internet", f"{node.name} public address", (WORLD,)
            else:
                lan = settings.sites[node.site].lan_cidr
                assert lan is not None  # `ingress: private` requires lanCidr
                source, target, origins = (
                    f"LAN of {node.site} ({lan})",
                    f"{node.name} LAN address",
                    (lan,),
                )
            kind = "ingress" if node.public_ingress else "lan-ingress"
            if (
                edge
                and node.public_ingress
                and any(policy.admits(node, "tcp", p, WORLD) for p in HTTP_PORTS)
            ):
                paths.append(
                    NetworkPath(
                        kind,
                        source,
                        target,
                        ports,
                        "broken",
                        f"the record is proxied, and the firewall of site {node.site} opens "
                        f"{ports} to anyone: clients bypass Cloudflare by the node's address",
                        "entrypoint.cloudflare.proxied",
                    )
                )
                continue
            closed = [
                o for o in origins if not all(policy.admits(node, "tcp", p, o) for p in HTTP_PORTS)
            ]
            if closed:
                origin = (
                    closed[0]
                    if len(origins) == 1
                    else f"{len(closed)} of Cloudflare's ranges (first {closed[0]})"
                )
                paths.append(
                    NetworkPath(
                        kind,
                        source,
                        target,
                        ports,
                        "broken",
                        f"the firewall of site {node.site} does not open {ports} from {origin}",
                        f"sites.{node.site}.ingress",
                    )
                )
            elif not enabled:
                verdict: Verdict = "broken" if node.public_ingress and cloudflare else "warn"
                paths.append(
                    NetworkPath(
                        kind,
                        source,
                        target,
                        ports,
                        verdict,
                        f"sites.{node.site}.ingress opens {ports} but rke.ingress.enabled is "
                        "false: no controller listens there; enable it or set the site's "
                        "ingress: none",
                        "rke.ingress.enabled",
                    )
                )
            else:
                note = "ingress-nginx hostPort" + (
                    f"; DNS record target ({PUBLIC_INGRESS_LABEL}=true)"
                    if node.public_ingress and cloudflare
                    else ""
                )
                if node.public_ingress and edge:
                    note += f"; from Cloudflare's {len(edge)} ranges only (proxied)"
                paths.append(NetworkPath(kind, source, target, ports, "ok", note))
        paths += self._record_paths()
        return paths

    def _record_paths(self) -> list[NetworkPath]:
        entry = self.settings.entrypoint
        if entry is None:
            return []
        app = entry.app.enabled
        acme = entry.cert_manager.enabled and app
        cloudflare = entry.cloudflare
        targets = [n for n in self.nodes if n.public_ingress]
        paths: list[NetworkPath] = []
        no_target = (
            "the Cloudflare record and the DNS updater need a public-ingress node with a "
            "public address (nodes behind NAT cannot be the entrypoint): set "
            "sites.<name>.ingress: public on a site with a public address and workers "
            f"({', '.join(self._public_sites_with_workers()) or 'none yet'})"
        )
        if cloudflare is not None:
            if targets:
                note = (
                    f"first target {targets[0].name}; the DNS updater "
                    f"({PUBLIC_INGRESS_LABEL}=true) keeps it on a live node"
                )
                paths.append(
                    NetworkPath(
                        "dns-record",
                        f"Cloudflare {cloudflare.record_name}",
                        f"{len(targets)} public-ingress nodes",
                        "-",
                        "ok",
                        note,
                    )
                )
            else:
                paths.append(
                    NetworkPath(
                        "dns-record",
                        f"Cloudflare {cloudflare.record_name}",
                        "no public-ingress node",
                        "-",
                        "broken",
                        no_target,
                        "entrypoint.cloudflare",
                    )
                )
        if acme and entry.cert_manager.solver == "dns01":
            paths.append(self._acme_dns01())
        elif acme:
            source, target = (
                "Let's Encrypt (internet)",
                f"http://{entry.app_host}/.well-known/acme-challenge/",
            )
            if cloudflare is None:
                paths.append(
                    NetworkPath(
                        "acme-http01",
                        source,
                        target,
                        "80/tcp",
                        "broken",
                        f"Let's Encrypt's HTTP-01 check connects to {entry.app_host} from the "
                        "internet, and there is no public record (entrypoint.cloudflare is "
                        "unset): set entrypoint.certManager.enabled: false, or add "
                        "entrypoint.cloudflare",
                        "entrypoint.certManager.enabled",
                    )
                )
            elif not targets:
                paths.append(
                    NetworkPath(
                        "acme-http01",
                        source,
                        target,
                        "80/tcp",
                        "broken",
                        no_target,
                        "entrypoint.cloudflare",
                    )
                )
            elif cloudflare.proxied:
                # The validator's request ends at Cloudflare's edge, which forwards plain
                # HTTP to the ingress only if the zone lets it: "Always Use HTTPS" redirects
                # it (and with "Full (strict)" that fails before a certificate exists), WAF
                # and bot rules may block it (docs/entrypoint.md, "Certificates behind the
                # proxy"). The program manages none of these settings.
                paths.append(
                    NetworkPath(
                        "acme-http01",
                        source,
                        target,
                        "80/tcp",
                        "warn",
                        f"through Cloudflare's proxy ({cloudflare.record_name} is proxied; the "
                        "origin takes 80 from Cloudflare's ranges only): passes only if the "
                        "zone's Always Use HTTPS, WAF and bot rules let "
                        "plain HTTP to /.well-known/acme-challenge/ through; "
                        "set entrypoint.certManager.solver: dns01 to not depend on them",
                        "entrypoint.certManager.solver",
                    )
                )
            else:
                paths.append(
                    NetworkPath(
                        "acme-http01",
                        source,
                        target,
                        "80/tcp",
                        "ok",
                        f"via {cloudflare.record_name} to the public-ingress nodes",
                    )
                )
        return paths

    def _acme_dns01(self) -> NetworkPath:
        """cert-manager's Cloudflare DNS-01 solver: the controller, in the cluster, writes the
        TXT record ``_acme-challenge.<host>`` through the Cloudflare API (HTTPS to
        api.cloudflare.com, in Cloudflare's published ranges) with the token the program
        creates for it, then asks public resolvers on 53 whether it is there
        (``network_policies.cert_manager_policies``). Let's Encrypt reads the record from
        Cloudflare's DNS, so nothing has to reach the cluster."""
        entry = self.settings.entrypoint
        assert entry is not None
        cloudflare = entry.cloudflare
        source = "cert-manager controller (in the cluster)"
        if cloudflare is None:  # parse_config refuses this already (dns01 needs the zone)
            return NetworkPath(
                "acme-dns01", source, "Cloudflare API", "443/tcp", "broken",
                "certManager.solver: dns01 needs entrypoint.cloudflare (the token is scoped "
                "to its zone)", "entrypoint.certManager.solver",
            )  # fmt: skip
        resolvers = ", ".join(r.rsplit(":", 1)[0] for r in CERT_MANAGER_DNS01_RESOLVERS)
        target = f"Cloudflare API (api.cloudflare.com), zone {cloudflare.zone}; DNS {resolvers}"
        blocked = _cert_manager_dns01_blocked(self.settings)
        if blocked:
            return NetworkPath(
                "acme-dns01", source, target, "443/tcp, 53", "broken",
                f"cert-manager's NetworkPolicy does not allow {blocked}",
                "entrypoint.certManager.solver",
            )  # fmt: skip
        return NetworkPath(
            "acme-dns01",
            source,
            target,
            "443/tcp, 53",
            "ok",
            f"TXT _acme-challenge.{entry.app_host} with a token the program creates "
            f"(DNS Write + Zone Read on {cloudflare.zone} only, a secret in the "
            f"{CERT_MANAGER_NAMESPACE} namespace); independent of the proxy and port 80",
        )

    def _public_sites_with_workers(self) -> list[str]:
        return [
            name
            for name, site in self.settings.sites.items()
            if site.has_public_address and any(n.schedulable for n in self.by_site[name])
        ]

    # --- cloud quotas -----------------------------------------------------------------

    def quota_paths(self) -> list[NetworkPath]:
        """OpenStack sites: the security-group rules the plan registers, counted as Neutron
        counts them (``firewall.neutron_rule_count``), against the quota the site declares
        (refused above it) or Neutron's default (a warning above it). A row only where a
        quota is declared or the default is exceeded."""
        from components.config.stack import OpenStackSiteConfig  # stack imports this module

        paths = []
        for name, site in self.settings.sites.items():
            if not isinstance(site, OpenStackSiteConfig) or not self.by_site[name]:
                continue
            count = neutron_rule_count(self.firewall[name], site.address_groups)
            quota = site.security_group_rule_quota
            if quota or count > NEUTRON_DEFAULT_RULE_QUOTA:
                paths.append(_quota_path(name, count, quota, site.address_groups))
        return paths

    # --- in the cluster ----------------------------------------------------------------

    def in_cluster_paths(self) -> list[NetworkPath]:
        paths: list[NetworkPath] = []
        entry = self.settings.entrypoint
        ingress_created = entry is not None and entry.app.enabled
        enabled = self.settings.rke.ingress.enabled
        controllers = [n for n in self.nodes if n.runs_ingress_controller and n.schedulable]
        if self.settings.engine == "rke2":
            # rke2-ingress-nginx with the HelmChartConfig's nodeSelector (rke2/manifests.py);
            # masters without the worker role carry the control-plane NoSchedule taint.
            source = "rke2-ingress-nginx DaemonSet"
            selector = f"{INGRESS_CONTROLLER_LABEL}=true, untainted"
        else:
            source = "RKE ingress-nginx DaemonSet + admission Jobs"
            selector = f"{INGRESS_CONTROLLER_LABEL}=true + node-role.kubernetes.io/worker"
        if ingress_created and not enabled:
            paths.append(
                NetworkPath(
                    "ingress-controller",
                    source,
                    selector,
                    "-",
                    "broken",
                    "entrypoint.app creates an Ingress, and rke.ingress.enabled is false: "
                    "nothing serves it; enable it or set entrypoint.app.enabled: false",
                    "rke.ingress.enabled",
                )
            )
        elif ingress_created and not controllers:
            candidates = [
                f"multicloud:sites.{name}.ingress: {'private' if site.lan_cidr else 'public'}"
                for name, site in self.settings.sites.items()
                if any(n.schedulable for n in self.by_site[name])
                and (site.lan_cidr or site.has_public_address)
            ]
            paths.append(
                NetworkPath(
                    "ingress-controller",
                    source,
                    selector,
                    "-",
                    "broken",
                    "the app's Ingress needs an ingress controller and no node runs one (RKE "
                    "schedules ingress-nginx and its admission Jobs only on worker-role nodes "
                    f"labelled {INGRESS_CONTROLLER_LABEL}=true, and the admission webhook, "
                    "failurePolicy Fail, refuses every Ingress until one runs): set "
                    + " or ".join(candidates or ["workers and an ingress mode on a site"])
                    + " ('private' serves the site's LAN, 'public' the internet), "
                    "or set entrypoint.app.enabled: false",
                    "entrypoint.app.enabled",
                )
            )
        elif enabled:
            where = ", ".join(dict.fromkeys(n.site for n in controllers)) or "no node"
            note = (
                f"{len(controllers)} nodes ({where})"
                if controllers
                else "no node: no Ingress is created"
            )
            paths.append(NetworkPath("ingress-controller", source, selector, "-", "ok", note))
        if entry is not None and entry.longhorn.enabled:
            paths.append(self._longhorn(entry))
        return paths

    def _longhorn(self, entry: EntrypointSettings) -> NetworkPath:
        zones = zones_of(self.nodes)
        schedulable = sum(1 for n in self.nodes if n.schedulable)
        replicas = longhorn_replicas(entry, len(zones))
        hard = replicas <= len(zones)
        target = f"zones with schedulable nodes: {', '.join(zones)}"
        source = f"Longhorn, {replicas} replicas"
        if replicas > schedulable:
            return NetworkPath(
                "longhorn",
                source,
                target,
                "-",
                "broken",
                f"{replicas} replicas need {replicas} schedulable (worker-role) nodes, one "
                f"replica per node, and the stack has {schedulable}: lower "
                "entrypoint.longhorn.replicas or add workers",
                "entrypoint.longhorn.replicas",
            )
        if not hard and len(zones) > 1:
            return NetworkPath(
                "longhorn",
                source,
                target,
                "-",
                "warn",
                f"{replicas} replicas over {len(zones)} zones: zone anti-affinity is soft, so "
                "two replicas may share a site; set entrypoint.longhorn.replicas to at most "
                f"{len(zones)} or add workers to another site",
                "entrypoint.longhorn.replicas",
            )
        note = f"zone anti-affinity {'hard' if hard else 'soft (one zone)'}"
        return NetworkPath("longhorn", source, target, "-", "ok", note)


def _quota_path(name: str, count: int, quota: int | None, address_groups: bool) -> NetworkPath:
    """The ``openstack-quota`` row of one OpenStack site: ``count`` security-group rules
    against the quota the site declares (``securityGroupRuleQuota``), else Neutron's
    default (then a warning only: the cloud may allow more)."""
    key = f"sites.{name}.securityGroupRuleQuota"
    limit = quota or NEUTRON_DEFAULT_RULE_QUOTA
    source = f"site {name}'s firewall, {count} security-group rules"
    target = f"site {name}'s project, " + (
        f"quota {quota} ({key})" if quota else f"Neutron's default quota {limit}"
    )
    if count <= limit:
        return NetworkPath("openstack-quota", source, target, "-", "ok", f"{count} of {limit}")
    fix = (
        "raise the project's quota (openstack quota set --secgroup-rules N) and this key"
        if address_groups
        else f"set sites.{name}.addressGroups: true if the cloud has Neutron address groups "
        "(one rule per port for Cloudflare's ranges), or raise the project's quota "
        "(openstack quota set --secgroup-rules N) and this key"
    )
    return NetworkPath(
        "openstack-quota",
        source,
        target,
        "-",
        "broken" if quota else "warn",
        f"the plan needs {count} security-group rules in site {name}'s project (its rules "
        f"plus Neutron's own in each group) and the quota is {limit}: {fix}",
        key,
    )


def _with_note(path: NetworkPath, note: str) -> NetworkPath:
    return NetworkPath(
        path.path,
        path.source,
        path.target,
        path.port,
        path.verdict,
        f"{path.note}; {note}",
        path.key,
    )

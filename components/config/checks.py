"""The whole-stack checks ``parse_config`` runs after the models: sites, topology, admin
ranges, the node specs and the resolved deployer. Each raises ``ConfigError`` naming the key."""

from __future__ import annotations

import ipaddress
from collections import Counter

from components.config.cluster import RUNNER_MAX_ETCD_MEMBERS, RUNNER_MAX_NODES
from components.config.deployer import Deployer
from components.config.model import fail
from components.config.settings import DNS_LABEL, ClusterSettings
from components.nodes import IngressMode, NodeSpec
from components.overlay.addressing import MAX_MASTERS, MAX_WORKERS, overlay_address, site_blocks

# Wider than this is "the world" for adminCidrs and deployer.sourceCidrs: a /8 is the
# largest block one organisation holds (a legacy class A), a /32 is an ISP's usual
# IPv6 allocation (RIR minimum for an LIR).
WIDEST_ADMIN_PREFIX = {4: 8, 6: 32}


def check_sites(settings: ClusterSettings) -> None:
    overlay = ipaddress.IPv4Network(settings.overlay_cidr)
    seen_ids: dict[int, str] = {}
    for name, site in settings.sites.items():
        path = f"sites.{name}"
        if not DNS_LABEL.fullmatch(name) or len(name) > 20:
            raise fail(path, "site names are DNS-1123 labels of at most 20 characters")
        if site.site_id in seen_ids:
            raise fail(
                f"{path}.siteId",
                f"{site.site_id} is already used by site {seen_ids[site.site_id]!r}",
            )
        seen_ids[site.site_id] = name
        if site.site_id > site_blocks(overlay):
            raise fail(
                f"{path}.siteId",
                f"{site.site_id} does not fit overlay {overlay}, "
                f"which has site blocks 1..{site_blocks(overlay)}",
            )
        if site.masters > MAX_MASTERS:
            raise fail(f"{path}.masters", f"at most {MAX_MASTERS} per site fit the overlay layout")
        if site.workers > MAX_WORKERS:
            raise fail(f"{path}.workers", f"at most {MAX_WORKERS} per site fit the overlay layout")
        if site.ingress == "public" and not site.has_public_address:
            raise fail(
                f"{path}.ingress",
                "'public' ingress needs a public address (floatingIpPool or networkIsPublic: "
                "true); use 'private' for an ingress controller reachable on the site's LAN",
            )
        if site.ingress == "private" and not site.lan_cidr:
            raise fail(
                f"{path}.ingress",
                f"'private' opens 80/443 to the site's LAN only: set {path}.lanCidr",
            )
        if site.ssh_via == "public" and not site.has_public_address:
            raise fail(
                f"{path}.sshVia",
                "'public' needs a public address (floatingIpPool or networkIsPublic); "
                "use 'private' for nodes reachable on a LAN",
            )


def node_specs(settings: ClusterSettings) -> tuple[NodeSpec, ...]:
    overlay = ipaddress.IPv4Network(settings.overlay_cidr)
    specs = []
    for site_name, site in settings.sites.items():
        for kind, count in (("master", site.masters), ("worker", site.workers)):
            for index in range(count):
                if kind == "master":
                    roles: tuple[str, ...] = ("controlplane", "etcd")
                    if settings.masters_schedulable:
                        roles += ("worker",)
                else:
                    roles = ("worker",)
                ingress: IngressMode = site.ingress if "worker" in roles else "none"
                specs.append(
                    NodeSpec(
                        name=f"{settings.cluster_name}-{site_name}-{kind}-{index}",
                        site=site_name,
                        kind=kind,  # type: ignore[arg-type]
                        index=index,
                        roles=roles,
                        size=site.size_for(kind),
                        zerotier_ip=str(overlay_address(overlay, site.site_id, kind, index)),  # type: ignore[arg-type]
                        ingress=ingress,
                    )
                )
    return tuple(specs)


def check_master_total(settings: ClusterSettings, total: int) -> None:
    """An odd etcd member total; an even one only as a step of ``make roll`` (``roll``
    set), one master away from the odd total it steps towards."""
    roll = settings.roll
    if roll is not None and roll.target_masters % 2 == 0:
        raise fail(
            "roll.targetMasters",
            f"{roll.target_masters} masters: the roll steps towards an odd total",
        )
    if total % 2 == 0 and (roll is None or abs(roll.target_masters - total) != 1):
        raise fail(
            "sites",
            f"{total} etcd members (one per master): an even count survives no more failures "
            f"than {total - 1} would, and an even split leaves no quorum; use an odd number "
            "of masters. To go from one odd count to another (3 to 5, or back), change the "
            "sites' masters and run `make roll`, which adds or removes one master per step",
        )


def check_topology(settings: ClusterSettings, nodes: tuple[NodeSpec, ...]) -> None:
    etcd = Counter(node.site for node in nodes if "etcd" in node.roles)
    total = sum(etcd.values())
    if total == 0:
        raise fail("sites", "no etcd member: give at least one site `masters: 1`")
    check_master_total(settings, total)
    if len(etcd) >= 2:  # one site holding them all is a choice, not a hidden single point
        for site, count in etcd.items():
            if count * 2 > total:
                two = (
                    " (with masters in two sites one of them always holds a majority: use one "
                    "site, or three or more)"
                    if len(etcd) == 2
                    else ""
                )
                raise fail(
                    f"sites.{site}.masters",
                    f"{count} of {total} etcd members in one site: losing that site loses quorum; "
                    f"spread masters so no site holds a majority{two}",
                )
    if total > RUNNER_MAX_ETCD_MEMBERS:
        raise fail(
            "sites",
            f"{total} etcd members (one per master); at most {RUNNER_MAX_ETCD_MEMBERS}: each "
            "member adds its certificates to the RKE state, which must fit one environment "
            "variable (components/config/cluster.py)",
        )
    if len(nodes) > RUNNER_MAX_NODES:
        raise fail(
            "sites",
            f"{len(nodes)} nodes in total; the RKE command carries at most {RUNNER_MAX_NODES} "
            "(its state must fit one environment variable, components/config/cluster.py)",
        )
    if not any("worker" in node.roles for node in nodes):
        raise fail(
            "sites",
            "no schedulable node: add workers to a site, or set mastersSchedulable: true "
            "so masters also carry the worker role",
        )
    for node in nodes:
        if len(node.name) > 63:
            raise fail("clusterName", f"node name {node.name!r} exceeds 63 characters")
    names = {node.name: node for node in nodes}
    for i, name in enumerate(settings.rebuild):
        if name not in names:
            raise fail(f"rebuild[{i}]", f"{name!r} is not a node of this stack")
    rebuilding_etcd = [name for name in settings.rebuild if "etcd" in names[name].roles]
    if len(rebuilding_etcd) > 1:
        raise fail(
            "rebuild",
            f"{', '.join(rebuilding_etcd)} are etcd members; rebuild one master at a time",
        )


def check_admin_ranges(settings: ClusterSettings) -> None:
    """Refuse admin/deployer source ranges that open SSH and the API to the world."""
    if settings.allow_wide_admin_cidrs:
        return
    lists = {"adminCidrs": settings.admin_cidrs}
    if settings.deployer is not None and settings.deployer.source_cidrs:
        lists["deployer.sourceCidrs"] = settings.deployer.source_cidrs
    for key, cidrs in lists.items():
        networks = [ipaddress.ip_network(c) for c in cidrs]
        for version, widest in WIDEST_ADMIN_PREFIX.items():
            same = [n for n in networks if n.version == version]
            # collapsed, so that 0.0.0.0/1 + 128.0.0.0/1 counts as the world it is
            for merged in ipaddress.collapse_addresses(same):  # type: ignore[type-var]
                if merged.prefixlen < widest:
                    index = next(
                        (
                            i
                            for i, n in enumerate(networks)
                            if n.version == version and n.subnet_of(merged)  # type: ignore[arg-type]
                        ),
                        0,
                    )
                    raise fail(
                        f"{key}[{index}]",
                        f"{merged} is wider than a /{widest}: it opens SSH (22) and the "
                        "Kubernetes API (6443) of every node to the internet; list the "
                        "addresses you administer from, or set allowWideAdminCidrs: true "
                        "to accept that exposure on purpose",
                    )


def resolve_deployer(settings: ClusterSettings) -> Deployer:
    """The deployer as configured, or the documented default.

    Default (``multicloud:deployer`` unset): a machine on the LAN of the one site whose
    nodes are reached with ``sshVia: private`` (none: on no LAN), reaching public
    addresses from ``adminCidrs``. Two or more such sites are ambiguous and refused:
    the deployer sits on one LAN.
    """
    configured = settings.deployer
    if configured is None:
        private = [n for n, s in settings.sites.items() if s.ssh_via == "private"]
        if len(private) > 1:
            raise fail(
                "deployer.lan",
                f"sites {', '.join(private)} are all reached over SSH on LAN addresses "
                "(sshVia: private), and the deployer sits on one LAN: say which with "
                "`pulumi config set --path deployer.lan <site>` and reach the others on "
                "public addresses (sshVia: public); see docs/network.md",
            )
        lan = private[0] if private else None
        overlay, sources, explicit = False, tuple(settings.admin_cidrs), False
    else:
        lan = configured.lan
        if lan is not None and lan not in settings.sites:
            raise fail(
                "deployer.lan",
                f"{lan!r} is not a site of this stack; expected one of "
                f"{', '.join(settings.sites)}, or leave it unset (on no site's LAN)",
            )
        overlay, explicit = configured.overlay, True
        sources = tuple(configured.source_cidrs or settings.admin_cidrs)
    lan_cidr = settings.sites[lan].lan_cidr if lan else None
    if lan is not None and lan_cidr is None:
        reason = "multicloud:deployer.lan names it" if explicit else "its nodes use sshVia: private"
        raise fail(
            f"sites.{lan}.lanCidr",
            f"the deployer sits on this site's LAN ({reason}): give the LAN's range so the "
            "firewall opens SSH and the Kubernetes API to it",
        )
    return Deployer(lan=lan, lan_cidr=lan_cidr, overlay=overlay, sources=sources, explicit=explicit)

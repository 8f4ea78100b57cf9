"""In the cluster and the clouds' limits: the ingress controller has nodes to run on
(its admission webhook, failurePolicy Fail, refuses every Ingress until one runs),
Longhorn's replicas fit the zones, and an OpenStack site's security-group rules fit its
quota."""

from __future__ import annotations

from components.config.entrypoint import EntrypointSettings
from components.config.sites import OpenStackSiteConfig
from components.nodes import INGRESS_CONTROLLER_LABEL
from components.nodes import schedulable_zones as zones_of
from components.preflight.context import PlanContext
from components.preflight.paths import Flow, NetworkPath
from components.services.workloads import longhorn_replicas
from components.sites.firewall import NEUTRON_DEFAULT_RULE_QUOTA, neutron_rule_count


def in_cluster_paths(ctx: PlanContext) -> list[NetworkPath]:
    paths = [_ingress_controller(ctx)]
    entry = ctx.settings.entrypoint
    if entry is not None and entry.longhorn.enabled:
        paths.append(_longhorn(ctx, entry))
    return [path for path in paths if path is not None]


def _ingress_controller(ctx: PlanContext) -> NetworkPath | None:
    entry = ctx.settings.entrypoint
    ingress_created = entry is not None and entry.app.enabled
    enabled = ctx.settings.rke.ingress.enabled
    controllers = [n for n in ctx.nodes if n.runs_ingress_controller and n.schedulable]
    flow = Flow("ingress-controller", *ctx.engine.ingress_controller)
    if ingress_created and not enabled:
        return flow.broken(
            "entrypoint.app creates an Ingress, and rke.ingress.enabled is false: "
            "nothing serves it; enable it or set entrypoint.app.enabled: false",
            key="rke.ingress.enabled",
        )
    if ingress_created and not controllers:
        candidates = [
            f"multicloud:sites.{name}.ingress: {'private' if site.lan_cidr else 'public'}"
            for name, site in ctx.settings.sites.items()
            if any(n.schedulable for n in ctx.site_nodes(name))
            and (site.lan_cidr or site.has_public_address)
        ]
        return flow.broken(
            "the app's Ingress needs an ingress controller and no node runs one (RKE "
            "schedules ingress-nginx and its admission Jobs only on worker-role nodes "
            f"labelled {INGRESS_CONTROLLER_LABEL}=true, and the admission webhook, "
            "failurePolicy Fail, refuses every Ingress until one runs): set "
            + " or ".join(candidates or ["workers and an ingress mode on a site"])
            + " ('private' serves the site's LAN, 'public' the internet), "
            "or set entrypoint.app.enabled: false",
            key="entrypoint.app.enabled",
        )
    if not enabled:
        return None
    where = ", ".join(dict.fromkeys(n.site for n in controllers)) or "no node"
    return flow.ok(
        f"{len(controllers)} nodes ({where})" if controllers else "no node: no Ingress is created"
    )


def _longhorn(ctx: PlanContext, entry: EntrypointSettings) -> NetworkPath:
    zones = zones_of(ctx.nodes)
    schedulable = sum(1 for n in ctx.nodes if n.schedulable)
    replicas = longhorn_replicas(entry, len(zones))
    hard = replicas <= len(zones)
    flow = Flow(
        "longhorn",
        f"Longhorn, {replicas} replicas",
        f"zones with schedulable nodes: {', '.join(zones)}",
    )
    if replicas > schedulable:
        return flow.broken(
            f"{replicas} replicas need {replicas} schedulable (worker-role) nodes, one "
            f"replica per node, and the stack has {schedulable}: lower "
            "entrypoint.longhorn.replicas or add workers",
            key="entrypoint.longhorn.replicas",
        )
    if not hard and len(zones) > 1:
        return flow.warn(
            f"{replicas} replicas over {len(zones)} zones: zone anti-affinity is soft, so "
            "two replicas may share a site; set entrypoint.longhorn.replicas to at most "
            f"{len(zones)} or add workers to another site",
            key="entrypoint.longhorn.replicas",
        )
    return flow.ok(f"zone anti-affinity {'hard' if hard else 'soft (one zone)'}")


def quota_paths(ctx: PlanContext) -> list[NetworkPath]:
    """OpenStack sites: the security-group rules the plan registers, counted as Neutron
    counts them (``firewall.neutron_rule_count``), against the quota the site declares
    (refused above it) or Neutron's default (a warning above it). A row only where a
    quota is declared or the default is exceeded."""
    paths = []
    for name, site in ctx.settings.sites.items():
        if not isinstance(site, OpenStackSiteConfig) or not ctx.site_nodes(name):
            continue
        count = neutron_rule_count(ctx.firewall[name], site.address_groups)
        quota = site.security_group_rule_quota
        if quota or count > NEUTRON_DEFAULT_RULE_QUOTA:
            paths.append(_quota_path(name, count, quota, site.address_groups))
    return paths


def _quota_path(name: str, count: int, quota: int | None, address_groups: bool) -> NetworkPath:
    """The ``openstack-quota`` row of one OpenStack site: ``count`` security-group rules
    against the quota the site declares (``securityGroupRuleQuota``), else Neutron's
    default (then a warning only: the cloud may allow more)."""
    key = f"sites.{name}.securityGroupRuleQuota"
    limit = quota or NEUTRON_DEFAULT_RULE_QUOTA
    flow = Flow(
        "openstack-quota",
        f"site {name}'s firewall, {count} security-group rules",
        f"site {name}'s project, "
        + (f"quota {quota} ({key})" if quota else f"Neutron's default quota {limit}"),
    )
    if count <= limit:
        return flow.ok(f"{count} of {limit}")
    fix = (
        "raise the project's quota (openstack quota set --secgroup-rules N) and this key"
        if address_groups
        else f"set sites.{name}.addressGroups: true if the cloud has Neutron address groups "
        "(one rule per port for Cloudflare's ranges), or raise the project's quota "
        "(openstack quota set --secgroup-rules N) and this key"
    )
    return flow.verdict(
        "broken" if quota else "warn",
        f"the plan needs {count} security-group rules in site {name}'s project (its rules "
        f"plus Neutron's own in each group) and the quota is {limit}: {fix}",
        key,
    )

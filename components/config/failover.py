"""The entrypoint's failover budget: from the config, the worst case for traffic to leave a
dead site; the stack check refuses a config whose worst case exceeds ``failoverBoundSeconds``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from components.config.entrypoint import EntrypointSettings
from components.config.model import fail
from components.config.settings import ClusterConfig

# What happens when the site running the updater goes dark, in order. Each constant below is an
# upstream default this project does not change; each config key is a term the stack sets.

# kube-controller-manager --leader-elect-lease-duration (15 s) + --leader-elect-retry-period (2 s),
# defaults RKE's KDM service options leave alone: a standby takes the leader lease at most this
# long after the dead leader's last renewal. Counted when the dead site runs a control plane.
# The new leader's node lifecycle controller then starts every node's grace period afresh
# (tryUpdateNodeHealth in kubernetes pkg/controller/nodelifecycle/node_lifecycle_controller.go:
# "Missing timestamp for Node. Assuming now as a timestamp"), so this adds to the grace.
CONTROLLER_TAKEOVER_SECONDS = 15 + 2
# kube-controller-manager --node-monitor-period (5 s). monitorNodeHealth marks a node Unknown on
# the first pass after its grace ran out and queues it for the NoExecute taint on the next one
# (processTaintBaseEviction gets the Ready condition observed *before* the pass): two periods.
NODE_MONITOR_PERIOD_SECONDS = 5
NODE_MONITOR_PASSES = 2
# The nodes of a dead site stop at once but their grace periods run out up to one heartbeat
# (config.cluster.KUBELET_HEARTBEAT_SECONDS, 10 s) apart. Meanwhile a zone with more than two
# NotReady nodes, at least 55 % of it, but not all, is "partially disrupted" (ComputeZoneState),
# and in a cluster of 50 nodes or fewer tainting there stops (ReducedQPSFunc returns 0) until
# the last node is NotReady too: one heartbeat and one monitor pass more. Only sites of four or
# more nodes can pass through that state; after a leader takeover (counted instead) all grace
# periods restart together and run out in the same pass.
STAGGER_SECONDS = 10 + NODE_MONITOR_PERIOD_SECONDS
STAGGER_MIN_NODES = 4


@dataclass(frozen=True)
class IngressSite:
    """A site with public-ingress nodes (where the updater may run), as the budget sees it.

    ``nodes`` counts every node of the site: they share one zone (the site is the
    topology.kubernetes.io/zone label) and so one rate-limited NoExecute taint queue.
    """

    name: str
    nodes: int
    control_plane: bool  # runs a kube-controller-manager that may be the leader


@dataclass(frozen=True)
class FailoverTerm:
    """One step of the failover: ``seconds`` it may take, and the key or default it comes from."""

    what: str
    seconds: int
    source: str


@dataclass(frozen=True)
class FailoverBudget:
    """The worst case (in seconds) for traffic to leave a dead ingress ``site``."""

    site: str
    terms: tuple[FailoverTerm, ...]
    retry_seconds: int  # what each failed updater attempt adds: its update interval

    @property
    def total(self) -> int:
        return sum(term.seconds for term in self.terms)

    def lines(self) -> list[str]:
        """The budget as text: the total, then one line per term with its source."""
        out = [f"worst case if site {self.site!r} goes dark: {self.total} s"]
        out += [f"  {t.seconds:4d} s  {t.what} ({t.source})" for t in self.terms]
        out.append(
            f"  each failed updater attempt adds {self.retry_seconds} s "
            "(entrypoint.updater.updateIntervalSeconds)"
        )
        return out


def _site_terms(
    settings: EntrypointSettings, site: IngressSite, grace_seconds: int, eviction_rate: float
) -> tuple[FailoverTerm, ...]:
    cf, updater = settings.cloudflare, settings.updater
    assert cf is not None
    # exact decimal arithmetic: 3 / 0.3 is 10.000000000000002 in floats
    queue = math.ceil(Fraction(site.nodes - 1) / Fraction(str(eviction_rate)))
    terms = []
    if site.control_plane:
        terms.append(
            FailoverTerm(
                "controller-manager leader moves off the dead site",
                CONTROLLER_TAKEOVER_SECONDS,
                "kube-controller-manager defaults: leader lease 15 s + retry 2 s",
            )
        )
    elif site.nodes >= STAGGER_MIN_NODES:
        terms.append(
            FailoverTerm(
                "the site's nodes go NotReady a heartbeat apart; tainting waits for the last",
                STAGGER_SECONDS,
                "Kubernetes' partial-disruption rule for a zone of 4 or more nodes",
            )
        )
    terms += [
        FailoverTerm(
            "no heartbeat: node marked NotReady",
            grace_seconds,
            "rke.nodeMonitorGracePeriodSeconds",
        ),
        FailoverTerm(
            "two node-monitor passes: Unknown, then queued for the NoExecute taint",
            NODE_MONITOR_PASSES * NODE_MONITOR_PERIOD_SECONDS,
            "kube-controller-manager --node-monitor-period 5 s",
        ),
        FailoverTerm(
            f"taint queue: the updater's node last of the site's {site.nodes}",
            queue,
            "rke.nodeEvictionRate",
        ),
        FailoverTerm(
            "updater tolerates the taint",
            updater.toleration_seconds,
            "entrypoint.updater.tolerationSeconds",
        ),
        FailoverTerm(
            "replacement updater scheduled, started, record updated",
            updater.startup_seconds,
            "entrypoint.updater.startupSeconds",
        ),
    ]
    if cf.proxied:
        terms.append(
            FailoverTerm(
                "Cloudflare's edge follows the record (visitors' DNS answers do not change)",
                cf.edge_propagation_seconds,
                "entrypoint.cloudflare.edgePropagationSeconds",
            )
        )
    else:
        terms.append(
            FailoverTerm(
                "resolvers' cached answers expire", cf.record_ttl, "entrypoint.cloudflare.ttl"
            )
        )
    return tuple(terms)


def failover_budget(
    settings: EntrypointSettings,
    *,
    grace_seconds: int,
    eviction_rate: float,
    sites: Sequence[IngressSite],
) -> FailoverBudget:
    """Worst case, in seconds, from an ingress site going dark to traffic reaching another.

    The record always names the node running the single updater (it publishes its own egress
    address); the worst case is the site running it dying, with the controller-manager leader.
    Assumes each step succeeds on its first try (each failed updater attempt adds
    ``updateIntervalSeconds``) and resolvers that honour the TTL. ``grace_seconds`` and
    ``eviction_rate`` are kube-controller-manager's, ``sites`` every site with public-ingress
    nodes.

    Raises ``ValueError`` without a record, with the updater off, or when fewer than two sites
    have public-ingress nodes (a dead site would then leave nowhere to move to).
    """
    if settings.cloudflare is None or not settings.updater.enabled:
        raise ValueError("no record kept by the updater: nothing moves on failure")
    if len(sites) < 2:
        names = ", ".join(repr(s.name) for s in sites) or "none"
        raise ValueError(
            f"only one site has public-ingress nodes ({names}): when it goes dark the record "
            "has nowhere to move"
        )
    budgets = [
        FailoverBudget(
            site=site.name,
            terms=_site_terms(settings, site, grace_seconds, eviction_rate),
            retry_seconds=settings.updater.update_interval_seconds,
        )
        for site in sites
    ]
    return max(budgets, key=lambda b: b.total)


def stack_failover_budget(config: ClusterConfig) -> FailoverBudget:
    """The worst-case failover of the stack's entrypoint (see ``failover_budget``).

    Raises ``ValueError`` when there is no record the updater moves, or only one ingress site.
    """
    settings = config.settings
    if settings.entrypoint is None:
        raise ValueError("no entrypoint")
    sites = []
    for name in settings.sites:
        members = config.site_nodes(name)
        if any(node.public_ingress for node in members):
            control_plane = any("controlplane" in node.roles for node in members)
            sites.append(IngressSite(name, len(members), control_plane))
    return failover_budget(
        settings.entrypoint,
        grace_seconds=settings.rke.node_monitor_grace_period_seconds,
        eviction_rate=settings.rke.node_eviction_rate,
        sites=sites,
    )


def check_failover(config: ClusterConfig) -> None:
    """Refuse a stack whose computed worst-case failover exceeds entrypoint.failoverBoundSeconds."""
    entry = config.settings.entrypoint
    if entry is None or entry.cloudflare is None or not entry.updater.enabled:
        return
    bound = entry.failover_bound_seconds
    if bound is None:
        return
    key = "entrypoint.failoverBoundSeconds"
    try:
        budget = stack_failover_budget(config)
    except ValueError as err:
        raise fail(
            key,
            f"{err}. Give a second site ingress: public (nodes with a public address), or set "
            f"{key}: null to accept an entrypoint that dies with its site",
        ) from None
    if budget.total > bound:
        terms = "\n    ".join(budget.lines()[1:-1])
        raise fail(
            key,
            f"the worst case for traffic to leave site {budget.site!r} is {budget.total} s, "
            f"over the bound of {bound} s:\n    {terms}\n  Shorten the terms that come "
            "from keys (a proxied record has no TTL to wait for), or raise the bound",
        )

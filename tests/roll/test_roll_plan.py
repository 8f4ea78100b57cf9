"""The roll's plan (roll/plan.py): ordering and safety rules, property-based over random
clusters, plus the cases issue 21 names (3 -> 5 -> 3 masters, a single master)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roll.plan import (
    Cluster,
    Node,
    Plan,
    RollRefused,
    Step,
    plan,
    quorum,
    quorum_holds,
    spread_ok,
)

NAME = "mc"
SITES = ("s0", "s1", "s2", "s3")
# What a refusal may be about (anything else is a bug in the plan).
ONE = {"ramnode": 1, "home": 1, "digitalocean": 1}
REFUSALS = ("is the only master", "without quorum", "has no VM", "no order of one-member")


def build(
    masters: dict[str, int],
    workers: dict[str, int],
    ingress: dict[str, str] | None = None,
    schedulable: bool = False,
) -> tuple[Node, ...]:
    ingress = ingress or {}
    nodes = []
    for site in masters.keys() | workers.keys():
        for i in range(masters.get(site, 0)):
            roles = ("controlplane", "etcd", "worker") if schedulable else ("controlplane", "etcd")
            mode = ingress.get(site, "none") if schedulable else "none"
            nodes.append(Node(f"{NAME}-{site}-master-{i}", site, roles, mode))
        for i in range(workers.get(site, 0)):
            nodes.append(
                Node(f"{NAME}-{site}-worker-{i}", site, ("worker",), ingress.get(site, "none"))
            )
    return tuple(sorted(nodes, key=lambda n: (SITES.index(n.site), n.name)))


@st.composite
def valid_counts(draw: st.DrawFn, n_sites: int, odd: bool) -> dict[str, int]:
    """Master counts per site, 1-7 in all, no site holding a majority when masters sit in
    two or more sites (the config's rule), built directly rather than filtered."""
    total = draw(st.sampled_from([t for t in range(1, 8) if t % 2 or not odd]))
    # with k >= 2 sites holding masters each holds at most total // 2
    spreads = [1] + [k for k in range(2, min(n_sites, total) + 1) if k * (total // 2) >= total]
    used = draw(st.sampled_from(spreads))
    cap = total if used == 1 else total // 2
    counts = [1] * used
    for _ in range(total - used):
        counts[draw(st.sampled_from([i for i in range(used) if counts[i] < cap]))] += 1
    sites = draw(st.permutations(SITES[:n_sites]))
    result = dict.fromkeys(SITES[:n_sites], 0)
    result.update(zip(sites, counts, strict=False))
    assert spread_ok(result)
    return result


@dataclass
class Case:
    cluster: Cluster
    only: str | None
    site: str | None


@st.composite
def cases(draw: st.DrawFn) -> Case:
    n_sites = draw(st.integers(1, 4))
    wanted = draw(valid_counts(n_sites, odd=True))
    # deployed: the same counts, other counts, or one member off (a roll stopped half-way)
    now = draw(st.one_of(st.just(wanted), valid_counts(n_sites, odd=False)))
    if draw(st.booleans()):
        site, delta = draw(st.sampled_from(SITES[:n_sites])), draw(st.sampled_from([-1, 1]))
        near = {**wanted, site: max(0, wanted[site] + delta)}
        if 1 <= sum(near.values()) <= 7 and spread_ok(near):
            now = near
    workers = {s: draw(st.integers(0, 3)) for s in SITES[:n_sites]}
    ingress = {s: draw(st.sampled_from(["public", "private", "none"])) for s in SITES[:n_sites]}
    nodes = build(now, workers, ingress, draw(st.booleans()))
    names = [n.name for n in nodes]
    drifted = draw(st.sets(st.sampled_from(names))) if names else set()
    missing = draw(st.sets(st.sampled_from(names), max_size=1))
    only = draw(st.one_of(st.none(), st.sampled_from(names)))
    site = draw(st.one_of(st.none(), st.sampled_from(SITES[:n_sites])))
    cluster = Cluster(
        cluster_name=NAME,
        nodes=nodes,
        drift={n: ("image a → b",) for n in drifted},
        masters_wanted=wanted,
        workers_wanted=workers,
        missing=frozenset(missing),
    )
    return Case(cluster, only, site)


def removed(c: Cluster) -> set[str]:
    return {
        n.name
        for n in c.nodes
        if n.is_master and int(n.name.rsplit("-", 1)[1]) >= c.masters_wanted.get(n.site, 0)
    }


def plan_or_refusal(c: Cluster, only: str | None = None, site: str | None = None) -> Plan | None:
    try:
        return plan(c, only, site)
    except RollRefused as refused:
        assert any(r in str(refused) for r in REFUSALS), str(refused)
        return None


def check_invariants(c: Cluster, steps: tuple[Step, ...]) -> None:
    """Every rule of issue 21 on one plan."""
    nodes = {n.name: n for n in c.nodes}
    away = set(c.missing)
    members = sum(1 for n in c.nodes if n.is_master and n.name not in c.missing)
    wanted_total = sum(c.masters_wanted.values())
    prev_total = sum(1 for n in c.nodes if n.is_master)
    seen_master_replace = False
    worker_sites: list[str] = []
    for step in steps:
        # at most one node away: nothing is taken away while another node is still away
        if step.kind in ("replace", "remove-master"):
            assert not away - {step.node}, (step, away)
        away.discard(step.node)
        # etcd keeps quorum (adding to a single member is the one exception, see plan.py)
        assert step.members_before == members, (step, members)
        assert quorum_holds(step) or (step.kind in ("add-master", "finish") and members == 1)
        if step.is_master and step.kind == "replace":
            assert members - 1 >= quorum(members)
        if step.kind in ("add-master", "finish") and step.is_master:
            members += 1
        elif step.kind == "remove-master":
            members -= 1
        assert step.members_after == members
        # master totals move by one per step, each total a valid spread, the roll key
        # set exactly while the total differs from the stack file's
        total = sum(n for _, n in step.masters)
        assert abs(total - prev_total) <= 1 or step.kind == "finish", (prev_total, step)
        assert spread_ok(dict(step.masters))
        if total % 2:
            assert step.target_masters is None
        else:  # the odd total one step towards the stack file's
            assert step.target_masters is not None
            assert abs(step.target_masters - total) == 1
            assert abs(wanted_total - step.target_masters) < abs(wanted_total - total)
        prev_total = total
        # workers before masters, site by site
        if step.kind == "replace":
            assert step.rebuild == (step.node,)
            if step.is_master:
                seen_master_replace = True
            else:
                assert not seen_master_replace, "a worker after a master"
                if not worker_sites or worker_sites[-1] != step.site:
                    assert step.site not in worker_sites, "a site's workers split"
                    worker_sites.append(step.site)
        else:
            assert step.rebuild == ()
        if step.kind == "replace" and nodes[step.node].ingress == "public":
            assert not any(nodes[n].ingress == "public" for n in away)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_plan_rules_hold_over_random_clusters(case: Case) -> None:
    c = case.cluster
    full = plan_or_refusal(c)
    if full is not None:
        check_invariants(c, full.steps)
        replaced = [s.node for s in full.steps if s.kind == "replace"]
        going = removed(c)
        expected = {n for n in c.drift if n not in c.missing and n not in going}
        assert sorted(replaced) == sorted(expected), "each drifted node exactly once"
        assert not set(replaced) & going, "a node about to be removed was rolled"
        # finishing missing nodes comes first
        kinds = [s.kind for s in full.steps]
        assert kinds[: kinds.count("finish")] == ["finish"] * kinds.count("finish")
        # the count steps reach the stack file's master counts
        last = dict(full.steps[-1].masters) if full.steps else None
        if last is not None:
            assert {s: n for s, n in last.items() if n} == {
                s: n for s, n in c.masters_wanted.items() if n
            }
    else:
        # a refusal without filters has a reason in the cluster itself
        has_master_to_roll = any(
            nodes.is_master and nodes.name in c.drift and nodes.name not in removed(c)
            for nodes in c.nodes
        )
        assert (
            has_master_to_roll
            or c.missing
            or c.masters_wanted != Counter(n.site for n in c.nodes if n.is_master)
        )
    narrowed = plan_or_refusal(c, case.only, case.site)
    if narrowed is not None:
        check_invariants(c, narrowed.steps)
        for step in narrowed.steps:
            assert case.only in (None, step.node) and case.site in (None, step.site)
        if full is not None:
            assert {(s.kind, s.node) for s in narrowed.steps} <= {
                (s.kind, s.node) for s in full.steps
            }, "a filter widened the plan"


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 4).flatmap(lambda n: valid_counts(n, odd=True)),
    st.dictionaries(st.sampled_from(SITES), st.integers(0, 3)),
)
def test_an_up_to_date_cluster_is_a_no_op(masters: dict[str, int], workers: dict[str, int]) -> None:
    workers = {s: n for s, n in workers.items() if s in masters}
    c = Cluster(NAME, build(masters, workers), {}, masters, workers)
    assert plan(c).steps == ()


def prod(masters: dict[str, int], wanted: dict[str, int], drift: tuple[str, ...] = ()) -> Cluster:
    workers = {"ramnode": 1, "home": 2, "digitalocean": 1}
    ingress = {"ramnode": "public", "home": "private", "digitalocean": "public"}
    nodes = tuple(n for n in build_named(masters, workers, ingress))
    return Cluster(NAME, nodes, {n: ("image a → b",) for n in drift}, wanted, workers)


def build_named(
    masters: dict[str, int], workers: dict[str, int], ingress: dict[str, str]
) -> list[Node]:
    out = []
    for site in ("ramnode", "home", "digitalocean"):
        out += [
            Node(f"{NAME}-{site}-master-{i}", site, ("controlplane", "etcd"))
            for i in range(masters[site])
        ]
        out += [
            Node(f"{NAME}-{site}-worker-{i}", site, ("worker",), ingress[site])
            for i in range(workers[site])
        ]
    return out


def test_three_to_five_masters_and_back_one_member_per_step() -> None:
    up = plan(
        prod(
            {"ramnode": 1, "home": 1, "digitalocean": 1},
            {"ramnode": 2, "home": 2, "digitalocean": 1},
        )
    )
    assert [(s.kind, s.node, s.members_after, s.target_masters) for s in up.steps] == [
        ("add-master", "mc-home-master-1", 4, 5),
        ("add-master", "mc-ramnode-master-1", 5, None),
    ]
    down = plan(
        prod(
            {"ramnode": 2, "home": 2, "digitalocean": 1},
            {"ramnode": 1, "home": 1, "digitalocean": 1},
        )
    )
    assert [(s.kind, s.node, s.members_after, s.target_masters) for s in down.steps] == [
        ("remove-master", "mc-home-master-1", 4, 3),
        ("remove-master", "mc-ramnode-master-1", 3, None),
    ]


def test_an_image_change_rolls_workers_site_by_site_then_masters() -> None:
    counts = {"ramnode": 1, "home": 1, "digitalocean": 1}
    every = tuple(n.name for n in prod(counts, counts).nodes)
    steps = plan(prod(counts, counts, every)).steps
    assert [s.node for s in steps] == [
        "mc-ramnode-worker-0",
        "mc-home-worker-0",
        "mc-home-worker-1",
        "mc-digitalocean-worker-0",
        "mc-ramnode-master-0",
        "mc-home-master-0",
        "mc-digitalocean-master-0",
    ]


def test_the_only_master_is_never_replaced() -> None:
    c = Cluster(
        NAME,
        build({"s0": 1}, {"s0": 1}),
        {"mc-s0-master-0": ("image a → b",)},
        {"s0": 1},
        {"s0": 1},
    )
    with pytest.raises(RollRefused, match=r"is the only master.*snapshot.*add masters first"):
        plan(c)


def test_a_master_about_to_go_is_not_rolled() -> None:
    five, three = {"ramnode": 2, "home": 2, "digitalocean": 1}, ONE
    c = prod(five, three, drift=("mc-home-master-1", "mc-home-master-0"))
    steps = plan(c).steps
    assert [(s.kind, s.node) for s in steps][-1] == ("replace", "mc-home-master-0")
    assert "mc-home-master-1" not in [s.node for s in steps if s.kind == "replace"]


def test_a_half_replaced_node_is_finished_first_and_a_filter_cannot_skip_it() -> None:
    counts = {"ramnode": 1, "home": 1, "digitalocean": 1}
    c = prod(counts, counts, drift=("mc-home-worker-1",))
    c = Cluster(c.cluster_name, c.nodes, c.drift, c.masters_wanted, c.workers_wanted,
                frozenset({"mc-ramnode-worker-0"}))  # fmt: skip
    assert [(s.kind, s.node) for s in plan(c).steps] == [
        ("finish", "mc-ramnode-worker-0"),
        ("replace", "mc-home-worker-1"),
    ]
    with pytest.raises(
        RollRefused, match=r"mc-ramnode-worker-0 has no VM.*--only mc-ramnode-worker-0"
    ):
        plan(c, site="home")


def test_worker_count_changes_are_left_to_make_up() -> None:
    counts = {"ramnode": 1, "home": 1, "digitalocean": 1}
    c = prod(counts, counts)
    c = Cluster(c.cluster_name, c.nodes, {}, counts, {**c.workers_wanted, "home": 3})
    with pytest.raises(RollRefused, match=r"sites.home.workers is 3 .* 2 are deployed.*make up"):
        plan(c)


def test_no_master_is_replaced_while_etcd_has_two_members() -> None:
    """A roll from 1 to 3 masters stopped at 2; `--site s0` leaves the count change out,
    and replacing s0's master now would leave one of two members: no quorum."""
    nodes = build({"s0": 1, "s1": 1}, {"s0": 1, "s1": 1, "s2": 1})
    c = Cluster(
        NAME,
        nodes,
        {"mc-s0-master-0": ("image a → b",)},
        {"s0": 1, "s1": 1, "s2": 1},
        {"s0": 1, "s1": 1, "s2": 1},
    )
    with pytest.raises(RollRefused, match=r"without quorum \(2 members: 1 stay up, quorum 2\)"):
        plan(c, site="s0")
    steps = plan(c).steps  # without the filter: the third member first, then the replace
    assert [(s.kind, s.node, s.members_before) for s in steps] == [
        ("add-master", "mc-s2-master-0", 2),
        ("replace", "mc-s0-master-0", 3),
    ]

"""rke.plan: hosts as RKE identifies them (by address), and etcd changes in steps."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rke.plan import (
    Host,
    PlanError,
    host_from_entry,
    hosts_from_state,
    plan_steps,
    replaced_in_place,
    step_document,
    transition,
)

MASTER = ("controlplane", "etcd")


def host(name: str, address: str, roles: Sequence[str] = MASTER, internal: str = "") -> Host:
    entry = {"address": address, "hostname_override": name, "role": list(roles), "user": "rke"}
    if internal:
        entry["internal_address"] = internal
    return host_from_entry(entry)


def masters(n: int, prefix: str = "m", net: str = "203.0.113") -> list[Host]:
    return [host(f"{prefix}{i}", f"{net}.{i + 1}") for i in range(n)]


W = [host(f"w{i}", f"198.51.100.{i + 1}", ("worker",)) for i in range(2)]


def etcd(hosts: Sequence[Host]) -> set[str]:
    return {h.address for h in hosts if h.has("etcd")}


def test_hosts_are_identified_by_address_not_name() -> None:
    moved = host("w0", "198.51.100.99", ("worker",))  # same name, another address
    change = transition([*masters(3), *W], [*masters(3), moved, W[1]])
    assert [h.label() for h in change.drained] == ["w0 (198.51.100.1)"]
    assert [h.label() for h in change.deleted] == ["w0 (198.51.100.1)"]
    renamed = host("other", "198.51.100.1", ("worker",))  # same address, another name
    assert transition(W, [renamed, W[1]]).drained == ()


def test_a_master_losing_the_worker_role_is_drained_but_not_deleted() -> None:
    schedulable = host("m0", "203.0.113.1", ("controlplane", "etcd", "worker"))
    change = transition([schedulable], [host("m0", "203.0.113.1")])
    assert [h.name for h in change.drained] == ["m0"] and change.deleted == ()
    assert not change.changes_etcd


def test_state_nodes_read_like_cluster_yml_nodes() -> None:
    nodes = [{
        "address": "203.0.113.1", "port": "22", "internalAddress": "10.147.1.10",
        "role": ["controlplane", "etcd"], "hostnameOverride": "m0", "user": "rke",
        "sshKeyPath": "/dev/shm/old/ssh_key",
    }]  # fmt: skip
    [h] = hosts_from_state(nodes)
    assert (h.address, h.name, h.internal_address, h.roles) == (
        "203.0.113.1", "m0", "10.147.1.10", MASTER,
    )  # fmt: skip
    assert "ssh_key_path" not in h.entry and h.entry["port"] == "22"


def test_replacement_in_place_by_machine_id_internal_address_or_name() -> None:
    before = masters(3)
    ids = {"m0": "a" * 32, "m1": "b" * 32, "m2": "c" * 32}
    assert replaced_in_place(before, before, ids, ids) == ()
    assert replaced_in_place(before, before, ids, {**ids, "m1": "d" * 32}) == ("203.0.113.2",)
    short = {k: v[:12] for k, v in ids.items()}  # the state keeps them cut short
    assert replaced_in_place(before, before, short, ids) == ()
    assert replaced_in_place(before, before, {}, ids) == ()  # unknown ids: unchanged
    moved_peer = [before[0], host("m1", "203.0.113.2", internal="10.0.0.9"), before[2]]
    assert replaced_in_place(before, moved_peer, ids, ids) == ("203.0.113.2",)
    renamed = [before[0], host("x1", "203.0.113.2"), before[2]]
    assert replaced_in_place(before, renamed, ids, ids) == ("203.0.113.2",)


def test_one_removal_and_one_addition_is_one_run_like_rke() -> None:
    old = masters(3)
    new = [*old[:2], host("m9", "192.0.2.9")]
    [step] = plan_steps(old, new)
    assert step.final and len(step.change.etcd_removed) == len(step.change.etcd_added) == 1


def test_five_to_three_is_two_runs() -> None:
    steps = plan_steps(masters(5), masters(3))
    assert [len(etcd(s.hosts)) for s in steps] == [4, 3]
    assert all(len(s.change.etcd_removed) == 1 and not s.change.etcd_added for s in steps)


def test_replacing_every_master_swaps_one_per_run() -> None:
    old, new = masters(3), masters(3, "n", "192.0.2")
    steps = plan_steps(old, new)
    assert len(steps) == 3 and steps[-1].hosts == tuple(sorted(new, key=lambda h: h.name))
    previous = etcd(old)
    for step in steps:
        now = etcd(step.hosts)
        assert len(now) == 3 and len(now - previous) == len(previous - now) == 1
        previous = now


def test_the_only_member_moves_by_adding_first() -> None:
    old, new = masters(1), [host("n0", "192.0.2.1")]
    steps = plan_steps(old, new)
    assert [sorted(etcd(s.hosts)) for s in steps] == [
        ["192.0.2.1", "203.0.113.1"], ["192.0.2.1"],
    ]  # fmt: skip
    with pytest.raises(PlanError, match="two nodes cannot share a name"):
        plan_steps(old, [host("m0", "192.0.2.1")])


def test_replacements_in_place_are_a_removal_then_an_addition_each() -> None:
    old = masters(3)
    steps = plan_steps(old, old, ["203.0.113.1", "203.0.113.3"])
    assert [sorted(etcd(s.hosts)) for s in steps] == [
        ["203.0.113.2", "203.0.113.3"], sorted(etcd(old)),
        ["203.0.113.1", "203.0.113.2"], sorted(etcd(old)),
    ]  # fmt: skip
    assert [s.completes for s in steps] == [(), ("203.0.113.1",), (), ("203.0.113.3",)]
    # the host keeps its other roles while its etcd member is gone
    assert steps[0].hosts[0].roles == ("controlplane",)
    with pytest.raises(PlanError, match="only etcd member"):
        plan_steps(masters(1), masters(1), ["203.0.113.1"])


def test_a_schedulable_master_removed_in_a_step_is_drained_in_that_step() -> None:
    full = ("controlplane", "etcd", "worker")
    old = [host(f"m{i}", f"203.0.113.{i + 1}", full) for i in range(5)]
    steps = plan_steps(old, old[:3])
    assert [[h.name for h in s.change.drained] for s in steps] == [["m3"], ["m4"]]


def test_no_etcd_host_left_is_refused() -> None:
    with pytest.raises(PlanError, match="no etcd host"):
        plan_steps(masters(3), W)


def test_step_documents_keep_the_settings_and_swap_the_nodes() -> None:
    base = {"cluster_name": "mc", "kubernetes_version": "v1.30.14-rancher1-1", "nodes": []}
    doc = step_document(base, masters(2))
    assert doc["cluster_name"] == "mc" and [n["hostname_override"] for n in doc["nodes"]] == [
        "m0", "m1",
    ]  # fmt: skip
    assert base["nodes"] == []


@settings(max_examples=60, deadline=None)
@given(
    old_n=st.integers(1, 7),
    keep=st.integers(0, 7),
    add=st.integers(0, 5),
    in_place=st.integers(0, 3),
)
def test_property_every_step_changes_at_most_one_member(
    old_n: int, keep: int, add: int, in_place: int
) -> None:
    old = masters(old_n)
    kept = old[: min(keep, old_n)]
    new = kept + masters(add, "n", "192.0.2")
    if not new:
        return
    replaced = [h.address for h in kept[:in_place]]
    try:
        steps = plan_steps([*old, *W], [*new, *W], replaced)
    except PlanError:
        # only refused when a member would be the last one gone, or the only one rebuilt
        assert (
            (len(kept) == 0 and old_n == 1 and add == 0)
            or (replaced and (len(old) == 1 or len(kept) == 1))
            or len(new) == 0
        )
        return
    previous = etcd(old)
    for step in steps:
        now = etcd(step.hosts)
        assert now, "a step without etcd members"
        assert len(previous - now) <= 1 and len(now - previous) <= 1
        assert previous & now, "RKE refuses a run that replaces every member"
        previous = now
    assert steps[-1].final and etcd(steps[-1].hosts) == etcd(new)

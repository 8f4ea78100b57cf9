"""Issue 21: which nodes are behind their code (components/boot_record.py, the stack outputs
``boot`` and ``bootDrift``), and master counts changed one master per step (``roll``)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from components.boot_record import (
    BootEntry,
    BootInputs,
    BootRecordError,
    carry_forward,
    drift,
    drift_table,
    record_from_output,
    record_to_output,
    user_data_digest,
)
from components.config import ConfigError
from engines import check_stack
from rke.plan import Host, plan_steps
from rke2.join import JoinError, plan_join, steady_plan
from tests.components.config.test_config import base, with_
from tests.rke2.test_rke2 import A0, B0, C0, VERSION, W0, record, spec
from tests.support.program_runs import edited, rke2_config, vms

OLD = BootInputs("debian-12-20261101", "s-2vcpu-4gb", "a" * 64, {"zerotier-one": "1.14.1"})


def inputs(**changes: Any) -> BootInputs:
    return dataclasses.replace(OLD, **changes)


# --- drift --------------------------------------------------------------------------------


def test_a_node_booted_from_the_current_inputs_is_not_behind() -> None:
    assert drift(OLD, inputs()) == []


def test_drift_names_each_changed_input_old_to_new() -> None:
    now = inputs(
        image="debian-12-20261201",
        size="s-4vcpu-8gb",
        user_data="b" * 64,
        versions={"zerotier-one": "1.14.2"},
    )
    assert drift(OLD, now) == [
        "image debian-12-20261101 → debian-12-20261201",
        "size s-2vcpu-4gb → s-4vcpu-8gb",
        "boot document changed: zerotier-one 1.14.1 → 1.14.2",
    ]


def test_a_boot_document_changed_without_a_version_says_so() -> None:
    assert drift(OLD, inputs(user_data="c" * 64)) == ["boot document changed"]
    # a component the document gained or lost
    now = inputs(user_data="c" * 64, versions={"zerotier-one": "1.14.1", "rke2": "v1.35.7+rke2r1"})
    assert drift(OLD, now) == ["boot document changed: rke2 - → v1.35.7+rke2r1"]


def test_drift_table_lists_only_nodes_behind() -> None:
    record = {"a": BootEntry("1", OLD), "b": BootEntry("2", OLD)}
    now = {"a": inputs(), "b": inputs(image="new")}
    assert drift_table(record, now) == {"b": [f"image {OLD.image} → new"]}
    assert drift_table(record, {"a": inputs(), "b": inputs()}) == {}


# --- carry forward --------------------------------------------------------------------------


def test_an_entry_is_kept_while_its_vm_stays_and_taken_anew_for_a_new_vm() -> None:
    new = inputs(image="debian-12-20261201")
    previous = {
        "a": BootEntry("vm-a", OLD),
        "b": BootEntry("vm-b", OLD),
        "gone": BootEntry("x", OLD),
    }
    now = {"a": new, "b": new, "c": new}
    kept = carry_forward(previous, {"a": "vm-a", "b": "vm-b2", "c": "vm-c"}, now)
    assert kept == {
        "a": BootEntry("vm-a", OLD),  # same VM: what it booted with
        "b": BootEntry("vm-b2", new),  # replaced: the current inputs
        "c": BootEntry("vm-c", new),  # added
    }
    assert drift_table(kept, now) == {"a": ["image debian-12-20261101 → debian-12-20261201"]}
    # no record yet (the first update with this feature): every VM counts as current
    assert carry_forward(None, {"a": "vm-a"}, {"a": new}) == {"a": BootEntry("vm-a", new)}


# --- the record's format --------------------------------------------------------------------


def test_the_record_round_trips_through_its_output() -> None:
    record = {"b": BootEntry("vm-b", OLD), "a": BootEntry("vm-a", inputs(size="x"))}
    output = json.loads(json.dumps(record_to_output(record)))  # as the stack stores it
    assert output["format"] == 1 and list(output["nodes"]) == ["a", "b"]
    assert output["nodes"]["b"] == {
        "vm": "vm-b",
        "image": OLD.image,
        "size": OLD.size,
        "userData": OLD.user_data,
        "versions": {"zerotier-one": "1.14.1"},
    }
    assert record_from_output(output) == record
    assert record_from_output(None) is None


@pytest.mark.parametrize(
    "value",
    [
        "a string",
        {"format": 2, "nodes": {}},
        {"nodes": {}},
        {"format": 1},
        {"format": 1, "nodes": []},
        {"format": 1, "nodes": {"a": {"vm": "1", "image": "i"}}},
        {"format": 1, "nodes": {"a": {"vm": "1", "image": "i", "size": "s", "userData": "d"}}},
    ],
)
def test_an_output_this_program_did_not_write_is_refused(value: Any) -> None:
    with pytest.raises(BootRecordError, match="'boot' is not a boot record of format 1"):
        record_from_output(value)


def test_the_digest_is_the_sha256_of_the_user_data() -> None:
    assert user_data_digest("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2
    )


# --- master counts in steps: `roll` -----------------------------------------------------------


def masters(count: int, roll: int | None = None) -> dict[str, Any]:
    """base() (three sites) with ``count`` masters spread over them, and
    ``roll.targetMasters`` when given."""
    raw = base()
    for i, site in enumerate(raw["sites"]):
        raw["sites"][site]["masters"] = count // 3 + (i < count % 3)
    return raw if roll is None else with_("roll", {"targetMasters": roll}, raw)


def test_an_even_master_total_is_refused_with_the_way_to_get_there() -> None:
    with pytest.raises(ConfigError, match=r"4 etcd members.*`make roll`") as refused:
        check_stack(masters(4))
    assert "multicloud:sites" in str(refused.value)


@pytest.mark.parametrize(("total", "target"), [(4, 5), (4, 3), (6, 5), (6, 7)])
def test_roll_accepts_an_even_total_one_master_from_its_target(total: int, target: int) -> None:
    config, _ = check_stack(masters(total, roll=target))
    assert sum("etcd" in n.roles for n in config.nodes) == total


def test_roll_accepts_no_even_total_further_from_its_target() -> None:
    with pytest.raises(ConfigError, match="4 etcd members"):
        check_stack(masters(4, roll=7))


def test_roll_steps_towards_an_odd_total_only() -> None:
    with pytest.raises(ConfigError, match=r"roll\.targetMasters: 4 masters"):
        check_stack(masters(3, roll=4))
    with pytest.raises(ConfigError, match=r"roll\.targetMasters"):
        check_stack(masters(3, roll=0))
    with pytest.raises(ConfigError, match=r"roll\.target"):
        check_stack(with_("roll", {"target": 5}))


D0 = spec("d", "master", 0, 4)


def test_rke2_adds_or_removes_one_server_per_update_and_names_make_roll() -> None:
    three = record(A0.name, B0.name, C0.name)
    plan = plan_join([A0, B0, C0, D0, W0], rebuild=(), previous=three, kubernetes_version=VERSION)
    assert plan.targets[D0.name] == A0.name  # the added server joins the cluster
    four = record(A0.name, B0.name, C0.name, D0.name)
    plan = plan_join([A0, B0, C0, W0], rebuild=(), previous=four, kubernetes_version=VERSION)
    assert plan.record.servers == (A0.name, B0.name, C0.name)
    with pytest.raises(JoinError, match=r"2 etcd members at once.*`make roll`"):
        plan_join([A0, B0, C0, D0, W0], rebuild=(), previous=record(A0.name, B0.name),
                  kubernetes_version=VERSION)  # fmt: skip


def _hosts(count: int) -> list[Host]:
    return [
        Host(
            address=f"192.0.2.{i}",
            name=f"m{i}",
            internal_address=f"192.0.2.{i}",
            roles=("controlplane", "etcd"),
            entry={"address": f"192.0.2.{i}"},
        )
        for i in range(count)
    ]


@pytest.mark.parametrize(("before", "after"), [(3, 4), (4, 5), (5, 4), (4, 3)])
def test_rke_adds_or_removes_one_member_in_one_rke_up(before: int, after: int) -> None:
    (step,) = plan_steps(_hosts(before), _hosts(after))
    change = step.change
    assert len(change.etcd_added) + len(change.etcd_removed) == 1


# --- the program: the outputs `boot` and `bootDrift` -----------------------------------------


def _run(stack: str, previous: dict[str, Any] | None = None, rke2: bool = False) -> Any:
    from scripts.offline import run_program

    config, secrets = rke2_config(stack) if rke2 else edited(stack, lambda v: None)
    return run_program(config, secret_keys=secrets, stack=stack, previous_outputs=previous)


@pytest.mark.parametrize("rke2", [False, True], ids=["rke", "rke2"])
def test_the_program_records_every_nodes_boot_inputs(rke2: bool) -> None:
    run = _run("home", rke2=rke2)
    assert run.error is None, run.error
    record = record_from_output(run.outputs["boot"])
    assert record is not None
    machines = {vm.name: vm for vm in vms(run)}
    assert set(record) == set(machines)
    for name, entry in record.items():
        inputs = machines[name].inputs
        assert entry.vm == f"{name}-id"  # the VM's id (the mock cloud's)
        assert entry.inputs.image == inputs.get("imageName", inputs.get("image"))
        assert entry.inputs.size == inputs.get("flavorName", inputs.get("size"))
        from scripts.offline import reveal

        exact = user_data_digest(reveal(inputs["userData"]))
        # RKE2's digest renders the install script with a neutral release (upgraded in
        # place: test_an_rke2_release_change_puts_no_node_behind)
        assert (entry.inputs.user_data == exact) != rke2
        assert re.fullmatch("[0-9a-f]{64}", entry.inputs.user_data or "")
        assert entry.inputs.versions["zerotier-one"]
        assert "rke2" not in entry.inputs.versions
        assert ("docker-ce" in entry.inputs.versions) != rke2
    assert run.outputs["bootDrift"] == {}  # a new stack: every node is current


def test_the_program_carries_the_record_forward_and_names_the_nodes_behind() -> None:
    first = _run("home")
    boot = json.loads(json.dumps(first.outputs["boot"]))
    nodes = boot["nodes"]
    master, worker, other = sorted(nodes)
    nodes[master]["image"] = "debian-11"  # booted from an older image
    nodes[worker] |= {"vm": "a-vm-since-replaced", "image": "debian-11"}
    nodes[other]["versions"]["zerotier-one"] = "1.14.1"
    nodes[other]["userData"] = "0" * 64
    run = _run("home", previous={"boot": boot})
    assert run.error is None, run.error
    pinned = nodes[master]["versions"]["zerotier-one"]
    assert run.outputs["bootDrift"] == {
        master: ["image debian-11 → debian-12"],
        other: [f"boot document changed: zerotier-one 1.14.1 → {pinned}"],
    }
    # the record keeps what the running VMs booted with; the replaced one is current
    assert run.outputs["boot"]["nodes"][master]["image"] == "debian-11"
    assert run.outputs["boot"]["nodes"][worker] == first.outputs["boot"]["nodes"][worker]


def test_a_boot_output_this_program_did_not_write_stops_the_program() -> None:
    import pulumi

    run = _run("home", previous={"boot": {"format": 7}})
    assert isinstance(run.error, pulumi.RunError), run.error
    assert "'boot' is not a boot record of format 1" in str(run.error)


def test_rke2_evaluates_a_roll_step_to_four_masters() -> None:
    """With `roll`, prod (three masters) gains a fourth in one update on RKE2: the program
    accepts it, and the new server joins the recorded cluster."""
    from scripts.offline import reveal, run_program
    from tests.support.program_runs import committed_rke2

    def edit(values: dict[str, Any]) -> None:
        values["multicloud:sites"]["ramnode"]["masters"] = 2
        values["multicloud:roll"] = {"targetMasters": 5}

    before = committed_rke2("prod")  # three servers, recorded in its outputs
    previous = reveal(before.outputs)
    config, secrets = rke2_config("prod", edit)
    run = run_program(config, secret_keys=secrets, stack="prod", previous_outputs=previous)
    assert run.error is None, run.error
    added = "mc-prod-ramnode-master-1"
    assert added in run.outputs["boot"]["nodes"]
    assert set(run.outputs["rke2"]["servers"]) == {*previous["rke2"]["servers"], added}
    # and without `roll` the same four masters are refused, naming the way
    del config["multicloud:roll"]
    run = run_program(config, secret_keys=secrets, stack="prod", previous_outputs=previous)
    assert "make roll" in str(run.error)


def test_rke2_servers_added_one_per_update_put_no_node_behind() -> None:
    """3 -> 4 -> 5 masters (`make roll`'s steps), then a quiet update: which server a later VM
    of a node would join changes with the server set, but is chosen per update, not a boot
    input: no node reads as behind at any step (rke2/join.py ``without_join_target``)."""
    from scripts.offline import reveal, run_program
    from tests.support.program_runs import committed_rke2

    previous = reveal(committed_rke2("prod").outputs)  # three servers
    for home, roll in ((1, {"targetMasters": 5}), (2, None), (2, None)):

        def edit(values: dict[str, Any], home: int = home, roll: Any = roll) -> None:
            values["multicloud:sites"]["ramnode"]["masters"] = 2
            values["multicloud:sites"]["home"]["masters"] = home
            if roll:
                values["multicloud:roll"] = roll

        config, secrets = rke2_config("prod", edit)
        run = run_program(config, secret_keys=secrets, stack="prod", previous_outputs=previous)
        assert run.error is None, run.error
        assert run.outputs["bootDrift"] == {}, (home, run.outputs["bootDrift"])
        previous = reveal(run.outputs)


# --- the summaries: `make render` and the render job -----------------------------------------


def test_render_writes_the_boot_record_and_its_summary_names_the_nodes_a_change_moves(
    tmp_path: Path,
) -> None:
    """`make render` writes the record this code gives every node; the render job's summary
    (scripts/render_summary.py, run as CI runs it: by path, from another directory) lists,
    base branch -> PR head, the nodes an image change leaves behind."""
    from scripts.render import main as render

    assert render(["--stack", "home", "--out", str(tmp_path / "head")]) == 0
    head = tmp_path / "head" / "home"
    record = json.loads((head / "boot.json").read_text())
    assert set(record["nodes"]) == {
        "mc-home-home-master-0",
        "mc-home-home-worker-0",
        "mc-home-home-worker-1",
    }
    base = tmp_path / "base" / "home"
    shutil.copytree(head, base)
    older = json.loads((base / "boot.json").read_text())
    older["nodes"]["mc-home-home-worker-1"]["image"] = "debian-11"
    (base / "boot.json").write_text(json.dumps(older))
    script = Path(__file__).resolve().parents[2] / "scripts" / "render_summary.py"
    done = subprocess.run(
        [sys.executable, str(script), "--stack", "home", "--base", str(base), "--head", str(head)],
        cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    section = done.stdout.split("### Boot inputs: base branch -> PR head", 1)[1]
    assert "1 running node(s) are behind their code until `make roll`" in section
    assert "| mc-home-home-worker-1 | image debian-11 → debian-12 |" in section
    assert "mc-home-home-worker-0 |" not in section


def test_a_document_not_known_yet_is_not_counted_as_changed() -> None:
    """In a preview a node's user-data can be unknown (its digest None): only what is known
    is compared."""
    assert drift(OLD, inputs(user_data=None)) == []
    assert drift(OLD, inputs(user_data=None, image="new")) == [f"image {OLD.image} → new"]


def test_rke2_a_join_target_only_one_update_uses_is_no_drift() -> None:
    """RKE2's first server initializes the cluster, a later VM of it would join another
    server: the record digests the user-data of a quiet update (rke2/join.py steady_plan),
    so after the first update no node of prod reads as behind (and none after the second)."""
    from scripts.offline import reveal, run_program

    config, secrets = rke2_config("prod")
    previous: dict[str, Any] | None = None
    for _ in range(3):
        run = run_program(config, secret_keys=secrets, stack="prod", previous_outputs=previous)
        assert run.error is None, run.error
        assert run.outputs["bootDrift"] == {}
        previous = reveal(run.outputs)


def test_the_steady_plan_is_the_next_quiet_updates_plan() -> None:
    first = plan_join([A0, B0, C0, W0], rebuild=(), previous=None, kubernetes_version=VERSION)
    second = plan_join(
        [A0, B0, C0, W0],
        rebuild=(),
        previous=first.record,
        kubernetes_version=VERSION,
        previous_nodes=[A0.name, B0.name, C0.name, W0.name],
    )
    assert first.targets[A0.name] is None  # it initializes...
    assert second.targets[A0.name] == B0.name  # ...a later VM of it joins
    assert steady_plan([A0, B0, C0, W0], first).targets == second.targets
    assert steady_plan([A0, B0, C0, W0], second).targets == second.targets


def test_an_rke2_release_change_puts_no_node_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """The upgrade Plans move every RKE2 node to the stack's release in place
    (rke2/upgrade.py): a node booted with an older release is not behind, so a Kubernetes
    upgrade gives `make roll` nothing to replace; any other change to the document still
    shows (the zerotier-one case above)."""
    from scripts.offline import run_program

    first = _run("home", rke2=True)
    assert first.error is None, first.error
    older = "v1.35.6+rke2r1"  # what the running VMs booted with (a release before the pin)
    from rke2 import config_rules, release

    monkeypatch.setattr(
        config_rules, "supported_versions", lambda: (older, release.pinned_version())
    )
    config, secrets = rke2_config("home")
    config["multicloud:kubernetesVersion"] = older
    booted = run_program(config, secret_keys=secrets, stack="home")
    assert booted.error is None, booted.error
    previous = json.loads(json.dumps(booted.outputs))  # what that update left
    upgraded = _run("home", previous=previous, rke2=True)  # the pinned, newer release
    assert upgraded.error is None, upgraded.error
    assert upgraded.outputs["bootDrift"] == {}
    assert upgraded.outputs["boot"] == previous["boot"]

"""Issue 21 on the real engine: `make roll` replaces every drifted node once, delete-first,
in a safe order, stops at a failure and resumes, and leaves an up-to-date stack alone.

The roll's driver (roll/driver.py ``roll``) runs in this process, as roll/__main__.py runs
it, over a real Automation API stack (``pulumi.automation.select_stack`` on the workspace's
project): its ``pulumi`` is a wrapper that runs the harness's CLI inside the harness's
network namespace (tests/engine/harness.py ``NetworkNamespace.run_prefix``) with the
harness's environment. The waits between steps are ``FakeClusterChecks``: instead of
kubectl/etcdctl over SSH (roll/checks.py, unit-tested in tests/roll/test_roll_checks.py) they
look at what those would see, in the fake cloud (the node's new VM is live, with the node's
ZeroTier identity, its sshd up) and in the fake rke's etcd (the member count).

Two scenarios per engine, each after a first `pulumi up` of prod (3 masters, 4 workers) on
booted fake VMs. The first: a new image on every site (a boot-only input: ``bootDrift``
names all seven nodes, three of them masters), then:

1. the fake cloud answers the third planned node's VM Create with a 500 (as
   tests/engine/test_program_faults.py); the roll replaces the first two nodes, then stops
   at the third saying what failed and that `make roll` again resumes;
2. the roll again: it finishes the third node first (its old VM was deleted by the failed
   update), then the rest, workers site by site, then the masters one at a time;
3. from the fake cloud's log: every node's VM deleted then created exactly once overall
   (the failed Create aside), each delete before its create, no other VM touched, between
   one master's Delete and its Create no other master's Delete; the identity refusal never
   fired (it would have failed an update); the steps in the plan's order;
4. the stack file is byte-identical, ``bootDrift`` is ``{}``, `preview --expect-no-changes`
   passes, and a third roll does nothing: no update, the cloud's log unchanged but reads.

The second: sites.home.masters and sites.ramnode.masters 1 -> 2 (3 -> 5 masters), one
roll; then back (5 -> 3), another. Each roll is two updates, one etcd member per step
(3 -> 4 -> 5: the even step with ``multicloud:roll``), the fake cloud creating (deleting)
exactly those masters' VMs in that order, the waits seeing the member counts step by step
(RKE: the fake rke's etcd); after each, ``bootDrift`` is ``{}``, `preview
--expect-no-changes` passes and the stack file is byte-identical.

Wall times are printed.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from roll.checks import CheckFailed, output_value
from roll.driver import Options, roll, vm_changes
from roll.plan import Step
from scripts.offline import PROJECT
from tests.engine.harness import _LISTEN_INSIDE, Workspace, stack_plain_config
from tests.engine.providers.cloud import VM_TYPES, FakeCloud, zerotier_addresses
from tests.engine.test_program_up import RKE2, _needs_sshd

STACK = "prod"
# a newer image on every site (components/sites/base.py BOOT_ONLY: running VMs ignore it):
# home's VMs boot from a volume made from it (``blockDevices``) and the droplets from it
# (``image``), both force-new; ramnode's boot from ``imageName``, which the provider would
# rebuild in place (terraform-provider-openstack resource_openstack_compute_instance_v2.go:
# ``image_name`` is not ForceNew, ``resourceComputeInstanceV2Update`` calls
# ``servers.Rebuild``), so the program replaces on it (base.py ``REPLACE_ON``).
NEW_IMAGES = {
    "home": "debian-12-20261201",
    "digitalocean": "debian-12-x64-20261201",
    "ramnode": "Debian 12 (20261201)",
}
CASES = {"rke": {}, "rke2": RKE2}
FAILING = 3  # the planned step whose VM Create the fake cloud fails


# The `pulumi` the Automation API runs: the harness's CLI inside its network namespace. The
# SDK streams the engine's events over gRPC to a server of its own on the caller's
# 127.0.0.1 (pulumi/automation/_stack.py ``_setup_event_log``, CLI > 3.205), which the CLI
# (pulumi/pulumi pkg/backend/display/display.go ``startEventLogger``: ``--event-log
# tcp://...``) could not reach from inside the namespace, and would silently send nothing.
# So the wrapper listens on that port inside the namespace (a socket made there by a helper
# run with the namespace's prefix, as tests/engine/harness.py ``NetworkNamespace.listen``)
# and relays each connection to the SDK's server, byte for byte.
_WRAPPER = """#!{python}
import socket, subprocess, sys, threading
PREFIX = {prefix!r}
PULUMI = {pulumi!r}
LISTEN_INSIDE = {listen!r}
args = sys.argv[1:]
port = None
for i, arg in enumerate(args[:-1]):
    if arg == "--event-log" and args[i + 1].startswith("tcp://127.0.0.1:"):
        port = int(args[i + 1].rsplit(":", 1)[1])
pumps = []

def pump(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

def relay(listener):
    while True:
        try:
            inside, _ = listener.accept()
        except OSError:
            return
        outside = socket.create_connection(("127.0.0.1", port), timeout=30)
        outside.settimeout(None)
        for a, b in ((inside, outside), (outside, inside)):
            t = threading.Thread(target=pump, args=(a, b), daemon=True)
            t.start()
            pumps.append(t)

if port is not None:
    ours, theirs = socket.socketpair()
    helper = [sys.executable, "-c", LISTEN_INSIDE, "127.0.0.1", str(port), str(theirs.fileno())]
    subprocess.run([*PREFIX, *helper], check=True, timeout=30, pass_fds=(theirs.fileno(),))
    listener = socket.socket(fileno=socket.recv_fds(ours, 1, 1)[1][0])
    threading.Thread(target=relay, args=(listener,), daemon=True).start()
code = subprocess.call([*PREFIX, PULUMI, *args])
for t in pumps:
    t.join(10)
sys.exit(code)
"""


def automation_stack(ws: Workspace) -> auto.Stack:
    """The workspace's stack through the Automation API, its CLI run as ``ws.run`` runs
    it (pulumi/automation/_cmd.py ``PulumiCommand``: ``<root>/bin/pulumi``; ``run``
    passes ``{**os.environ, **env_vars}``) through ``_WRAPPER``."""
    root = ws.folder / "automation"
    (root / "bin").mkdir(parents=True)
    wrapper = root / "bin" / "pulumi"
    prefix, pulumi = ws.netns.run_prefix, str(ws.pulumi)
    text = _WRAPPER.format(
        python=sys.executable, prefix=prefix, pulumi=pulumi, listen=_LISTEN_INSIDE
    )
    wrapper.write_text(text)
    wrapper.chmod(0o755)
    command = auto.PulumiCommand(root=str(root), skip_version_check=True)
    options = auto.LocalWorkspaceOptions(pulumi_command=command, env_vars=dict(ws.env))
    return auto.select_stack(STACK, work_dir=str(ws.project), opts=options)


class FakeClusterChecks:
    """roll/checks.py ``Checks`` from the stand-ins' state: before a step every deployed
    node has a live, booted VM (and, RKE, etcd all its members); after it the node's VM is
    live and booted with the ZeroTier identity it had, and etcd has the members it should."""

    def __init__(self, ws: Workspace, engine: str, identities: Mapping[str, set[str]]) -> None:
        self.cloud = FakeCloud(ws.folder / "cloud")
        self.nodes = ws.folder / "cloud" / "nodes"
        self.ws = ws
        self.engine = engine
        self.identities = identities
        self.calls: list[tuple[str, str, str]] = []  # (before/after, kind, node)

    def _live(self) -> dict[str, str]:
        return {
            r["name"]: id_ for id_, r in self.cloud.resources().items() if r["type"] in VM_TYPES
        }

    def _booted(self, node: str, live: Mapping[str, str]) -> None:
        if node not in live or not (self.nodes / live[node] / "sshd.pid").exists():
            raise CheckFailed(f"{node} Ready: no booted VM")

    def _members(self, want: int) -> None:
        if self.engine == "rke" and self.ws.rke is not None:
            have = len(self.ws.rke.members())
            if have != want:
                raise CheckFailed(f"etcd healthy with {want} members: {have} members")

    def before(self, step: Step, outputs: Mapping[str, Any]) -> None:
        self.calls.append(("before", step.kind, step.node))
        live = self._live()
        for row in output_value(outputs.get("nodes")) or []:
            if row["name"] != step.node or step.kind != "finish":
                self._booted(str(row["name"]), live)
        if step.is_master and step.kind != "finish":
            self._members(step.members_before)

    def after(self, step: Step, outputs: Mapping[str, Any]) -> None:
        self.calls.append(("after", step.kind, step.node))
        live = self._live()
        if step.kind == "remove-master":
            if step.node in live:
                raise CheckFailed(f"{step.node} left etcd: its VM {live[step.node]} still runs")
        else:
            self._booted(step.node, live)
            user_data = self.cloud.resources()[live[step.node]]["outputs"].get("userData")
            mine = zerotier_addresses(user_data)
            if len(mine) != 1 or mine != self.identities.get(step.node, mine):
                raise CheckFailed(f"{step.node}'s overlay address: another ZeroTier identity")
        if step.is_master:
            self._members(step.members_after)


class CountedStack:
    """The Automation API stack, counting its updates (a roll with nothing to do runs none)."""

    def __init__(self, stack: auto.Stack) -> None:
        self.stack = stack
        self.ups = 0
        self.log: list[tuple[str, Any]] = []  # (command, engine event) of each command

    def outputs(self) -> Any:
        return self.stack.outputs()

    def vm_steps(self) -> list[list[tuple[str, str]]]:
        """Per update, the VM steps the engine took (op, node), ``replace`` markers aside."""
        updates: dict[str, list[Any]] = {}
        for command, event in self.log:
            if command.startswith("up "):
                updates.setdefault(command, []).append(event)
        return [
            [(c.op, c.node) for c in vm_changes(events) if c.op != "replace"]
            for events in updates.values()
        ]

    def _logged(self, command: str, on_event: Any) -> Any:
        def seen(event: Any) -> None:
            self.log.append((command, event))
            on_event(event)

        return seen

    def preview(self, *, config_file: str, on_event: Any) -> Any:
        seen = self._logged("preview", on_event)
        return self.stack.preview(config_file=config_file, on_event=seen)

    def up(self, *, config_file: str, on_event: Any) -> Any:
        self.ups += 1
        seen = self._logged(f"up {self.ups}", on_event)
        return self.stack.up(config_file=config_file, on_event=seen)


def run_roll(
    ws: Workspace, stack: CountedStack, checks: FakeClusterChecks
) -> tuple[int, str, float]:
    """One `make roll STACK=prod`: (exit code, what it said, seconds); the stack file is
    byte-identical after."""
    said: list[str] = []

    @contextmanager
    def factory(outputs: Any) -> Iterator[FakeClusterChecks]:
        yield checks

    path = ws.project / f"Pulumi.{STACK}.yaml"
    before = path.read_bytes()
    started = time.monotonic()
    code = roll(Options(STACK, ws.project), stack, factory, said.append)
    seconds = time.monotonic() - started
    assert path.read_bytes() == before, "the roll changed the stack file"
    text = "\n".join(said)
    # the fake cloud's refusal of a second live VM with a node's ZeroTier identity (a
    # create-first replacement, tests/engine/providers/cloud.py) never fired
    assert "would run ZeroTier identity" not in text, text
    return code, text, seconds


def planned_order(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The safe order (issue 21): workers site by site (the nodes output's site order), then
    the masters one at a time."""
    sites = list(dict.fromkeys(str(r["site"]) for r in rows))

    def is_master(row: Mapping[str, Any]) -> bool:
        return "etcd" in (row.get("roles") or ())

    ordered = sorted(rows, key=lambda r: (is_master(r), sites.index(str(r["site"])), r["name"]))
    return [str(r["name"]) for r in ordered]


@dataclass
class Deployed:
    """Prod after its first `pulumi up`, as both scenarios start."""

    ws: Workspace
    cloud: FakeCloud
    stack: CountedStack
    sites: dict[str, Any]  # the stack file's ``sites``, to edit
    times: list[str]  # wall times, printed at the end


@contextmanager
def deployed(tmp_path: Path, engine: str) -> Iterator[Deployed]:
    """Prod deployed on booted fake VMs; the scenario's wall times printed after."""
    _needs_sshd()
    started = time.monotonic()
    with Workspace(tmp_path / "ws", STACK, config=CASES[engine], nodes=True) as ws:
        times = [f"first up {ws.up().seconds:.1f} s"]
        sites = copy.deepcopy(stack_plain_config(STACK)[f"{PROJECT}:sites"])
        stack = CountedStack(automation_stack(ws))
        yield Deployed(ws, FakeCloud(ws.folder / "cloud"), stack, sites, times)
    print(f"\n{engine}: " + "; ".join(times) + f"; total {time.monotonic() - started:.1f} s")


@pytest.mark.parametrize("engine", list(CASES))
def test_roll_replaces_every_node_once_stops_at_a_failure_and_resumes(
    tmp_path: Path, engine: str
) -> None:
    with deployed(tmp_path, engine) as d:
        ws, cloud, stack, sites, times = d.ws, d.cloud, d.stack, d.sites, d.times
        outputs = ws.run("stack", "output", "--json").json()
        rows = outputs["nodes"]
        assert len(rows) == 7
        order = planned_order([r for r in rows if r["site"] in NEW_IMAGES])
        masters = {str(r["name"]) for r in rows if "etcd" in (r.get("roles") or ())}
        assert len(order) == 7 and len(masters & set(order)) == 3
        vms = {r["name"]: r for r in cloud.resources().values() if r["type"] in VM_TYPES}
        identities = {n: zerotier_addresses(vms[n]["outputs"]["userData"]) for n in vms}
        assert all(len(i) == 1 for i in identities.values())

        for site, image in NEW_IMAGES.items():
            sites[site]["image"] = image
        ws.config_set("sites", sites)
        checks = FakeClusterChecks(ws, engine, identities)
        events_before = len(cloud.events())

        # 1. the third node's new VM fails to be created: the roll stops there
        failing = order[FAILING - 1]
        cloud.inject([{"method": "Create", "name": failing, "times": 1}])
        code, said, seconds = run_roll(ws, stack, checks)
        times.append(f"roll to the failure {seconds:.1f} s")
        assert code == 1, said
        stopped = (
            f"stopped at node {FAILING} of {len(order)}: {failing} (replace) failed while pulumi up"
        )
        assert stopped in said, said
        assert f"Create {failing}: 500 Internal Server Error (injected fault)" in said, said
        assert f"Steps 1-{FAILING - 1} are done" in said
        assert "`make roll STACK=prod` again" in said and "resumes" in said
        assert failing not in {r["name"] for r in cloud.resources().values()}

        # 2. again: the failed node first, then the rest in order
        code, said, seconds = run_roll(ws, stack, checks)
        times.append(f"roll resumed {seconds:.1f} s")
        assert code == 0, said
        assert f"1. finish {failing}" in said, said
        assert f"rolled {len(order) - FAILING + 1} node(s)" in said, said
        done = [node for when, _, node in checks.calls if when == "after"]
        assert done == order, checks.calls
        # the engine's events: each update replaced its node delete-first, and no other VM;
        # the failed one got as far as the create, the next created the node (the state
        # held its old VM as pending replacement: create-replacement, no second delete)
        expected_steps = []
        for i, node in enumerate(order, 1):
            expected_steps.append([("delete-replaced", node), ("create-replacement", node)])
            if i == FAILING:
                expected_steps.append([("create-replacement", node)])
        assert stack.vm_steps() == expected_steps

        # 3. the fake cloud's log: each node deleted, then created, once
        events = [e for e in cloud.events()[events_before:] if e.type in VM_TYPES]
        changes = [(e.method, e.name) for e in events if e.method in ("Create", "Delete")]
        expected = [(m, n) for n in order for m in ("Delete", "Create")]
        assert changes == expected, changes
        away: str | None = None
        for method, name in changes:
            if name in masters and method == "Delete":
                assert away is None, f"{name} deleted while {away} was away"
                away = name
            elif name in masters and method == "Create":
                away = None
        new_ids = {e.name: e.id for e in events if e.method == "Create"}
        assert all(vms[n]["name"] == n and new_ids[n] != f"{n}-1" for n in order)

        # 4. converged: the stack's outputs, the preview, and a roll with nothing to do
        outputs = ws.run("stack", "output", "--json").json()
        assert outputs["bootDrift"] == {}
        assert {n: e["image"] for n, e in outputs["boot"]["nodes"].items() if n in order} == {
            r["name"]: NEW_IMAGES[r["site"]] for r in rows if r["name"] in order
        }
        after = ws.preview("--expect-no-changes")
        times.append(f"preview --expect-no-changes {after.seconds:.1f} s")
        events_before = len(cloud.events())
        code, said, seconds = run_roll(ws, stack, checks)
        times.append(f"roll with nothing to do {seconds:.1f} s")
        assert code == 0 and "nothing to roll" in said, said
        assert stack.ups == len(order) - FAILING + 1 + FAILING  # none more
        assert [e for e in cloud.events()[events_before:] if e.method != "Read"] == []


@pytest.mark.parametrize("engine", list(CASES))
def test_roll_steps_masters_3_to_5_and_back_one_member_at_a_time(
    tmp_path: Path, engine: str
) -> None:
    with deployed(tmp_path, engine) as d:
        ws, cloud, stack, sites, times = d.ws, d.cloud, d.stack, d.sites, d.times
        checks = FakeClusterChecks(ws, engine, {})
        # 3 -> 5: one member per step (3 -> 4 -> 5), the sites with fewest first, by name
        # (roll/plan.py ``_count_chain``), no site ever holding a majority
        added = ["mc-prod-home-master-1", "mc-prod-ramnode-master-1"]
        for count, way, nodes in ((2, "3 → 5", added), (1, "5 → 3", added)):
            for site in ("home", "ramnode"):
                sites[site]["masters"] = count
            ws.config_set("sites", sites)
            events_before = len(cloud.events())
            ups_before = stack.ups
            code, said, seconds = run_roll(ws, stack, checks)
            times.append(f"roll {way} {seconds:.1f} s")
            assert code == 0, said
            kind = "add-master" if count == 2 else "remove-master"
            assert checks.calls[-4:] == [
                (when, kind, node) for node in nodes for when in ("before", "after")
            ], checks.calls
            assert stack.ups - ups_before == 2
            method = "Create" if count == 2 else "Delete"
            changes = [
                (e.method, e.name)
                for e in cloud.events()[events_before:]
                if e.type in VM_TYPES and e.method in ("Create", "Delete")
            ]
            assert changes == [(method, node) for node in nodes], changes
            outputs = ws.run("stack", "output", "--json").json()
            masters = sorted(r["name"] for r in outputs["nodes"] if "etcd" in r["roles"])
            assert len(masters) == (5 if count == 2 else 3), masters
            assert outputs["bootDrift"] == {}
            after = ws.preview("--expect-no-changes")
            times.append(f"preview --expect-no-changes {after.seconds:.1f} s")
            if engine == "rke" and ws.rke is not None:
                assert sorted(ws.rke.members()) == [f"etcd-{m}" for m in masters]

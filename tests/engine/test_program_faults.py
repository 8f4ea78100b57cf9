"""Scenario 8 (issue 19): a fault in the middle of `pulumi up` of a new home stack (3 nodes,
booted fake VMs, tests/engine/harness.py), through the real engine:

- the fake cloud answers one VM's Create with a 500 (``FakeCloud.inject``; the stand-in
  answers gRPC UNKNOWN, as a provider reports a cloud's HTTP 500);
- the fake Central holds its answer to the network's create past the client's timeout
  (``FakeCentral.stall_next``): once before acting on it, once after (the network exists,
  only the answer was lost).

The update fails cleanly (non-zero exit, the error names the resource, no traceback beyond
what the engine shows for a dynamic provider), the state keeps what was created, and the
next `pulumi up` converges with nothing lost or duplicated: exactly one VM and one
authorized member per node, every cloud resource in the state and the reverse, no two VMs
with one ZeroTier identity, one network; then `pulumi preview --expect-no-changes` passes.
Wall times are printed.
"""

from __future__ import annotations

import inspect
import re
from collections import Counter
from pathlib import Path
from typing import Any

from components.overlay.zerotier.central import CentralClient
from tests.engine.harness import Result, Workspace
from tests.engine.providers.cloud import VM_TYPES, FakeCloud, zerotier_addresses
from tests.engine.test_program_up import _needs_sshd

STACK = "home"
NODES = ("mc-home-home-master-0", "mc-home-home-worker-0", "mc-home-home-worker-1")
# the packages the stand-in providers serve: their resources live in the fake cloud
CLOUD_PACKAGES = ("openstack", "digitalocean", "cloudflare", "kubernetes", "random", "tls")
# components/overlay/zerotier/central.py: the dynamic providers' CentralClient uses its default
# timeout; a stall 2 s longer makes exactly one request time out (30 s, not minutes)
CLIENT_TIMEOUT = float(inspect.signature(CentralClient.__init__).parameters["timeout"].default)
STALL = CLIENT_TIMEOUT + 2
TRACEBACK = "Traceback (most recent call last)"
# When an update fails, the engine cancels the program's registrations still in flight; the
# SDK turns that gRPC CANCELLED into ``Exception("context canceled")``
# (pulumi/runtime/settings.py ``grpc_error_to_exception``: only UNAVAILABLE is quiet) and its
# exec script prints the chained traceback as the stack's diagnostic. Whether one is in
# flight is timing, and it is the SDK's report, not the program's: it is set aside.
_CANCELLED = re.compile(
    rf"{re.escape(TRACEBACK)}:(?:(?!{re.escape(TRACEBACK)}).)*?StatusCode\.CANCELLED"
    r".*?Exception: context canceled",
    re.S,
)


def _without_cancellation(text: str) -> str:
    return _CANCELLED.sub("", text)


def _cloud_state(export: dict[str, Any]) -> dict[str, str]:
    """The state's resources that live in the fake cloud: id -> URN."""
    return {
        r["id"]: r["urn"]
        for r in export["deployment"].get("resources") or []
        if r["type"].split(":")[0] in CLOUD_PACKAGES and r.get("id")
    }


def _diagnostic(result: Result, label: str) -> str:
    """The engine's diagnostic block for one resource (``<type> (<name>):``), '' if none."""
    found = re.search(
        rf"^  {re.escape(label)}:\n((?:    .*\n|[ \t]*\n)+?)(?=(?:  )?\S|\Z)", result.stdout, re.M
    )
    return found.group(1) if found else ""


def _converged(ws: Workspace) -> None:
    """One VM and one authorized member per node on one network, identities not shared,
    the fake cloud and the state holding exactly the same resources."""
    cloud = FakeCloud(ws.folder / "cloud")
    resources = cloud.resources()
    export = ws.export()
    assert {id_: r["urn"] for id_, r in resources.items()} == _cloud_state(export)
    vms = {r["name"]: r for r in resources.values() if r["type"] in VM_TYPES}
    assert sorted(vms) == sorted(NODES)
    identities = [zerotier_addresses(vm["outputs"].get("userData")) for vm in vms.values()]
    assert all(len(i) == 1 for i in identities) and len(set().union(*identities)) == len(vms)
    assert ws.central is not None
    (network,) = ws.central.networks
    assert {node for _, node in ws.central.members} == set().union(*identities)
    assert all(n == network and m["config"]["authorized"] for (n, _), m in _members(ws))
    outputs = ws.run("stack", "output", "--json").json()
    assert outputs["overlayNetworkId"] == network
    # every name created once: nothing made twice, nothing replaced
    created = Counter(e.name for e in cloud.events() if e.method == "Create")
    assert set(created.values()) == {1}


def _members(ws: Workspace) -> list[tuple[tuple[str, str], dict[str, Any]]]:
    assert ws.central is not None
    return list(ws.central.members.items())


def test_a_cloud_500_for_one_vm_fails_cleanly_and_the_next_up_converges(tmp_path: Path) -> None:
    _needs_sshd()
    vm = "mc-home-home-worker-1"
    with Workspace(tmp_path, STACK, nodes=True) as ws:
        cloud = FakeCloud(ws.folder / "cloud")
        cloud.inject([{"method": "Create", "name": vm, "times": 1}])
        failed = ws.up(check=False)
        kept = ws.export()
        cloud_after_failure = cloud.resources()
        assert ws.central is not None and ws.rke is not None
        members_after_failure = set(ws.central.members)
        up = ws.up()
        preview = ws.run("preview", "--expect-no-changes")
        _converged(ws)
        rke_runs = [c["args"][0] for c in ws.rke.calls() if c["tool"] == "rke"]
    print(
        f"\ncloud 500: failed up {failed.seconds:.1f} s, up {up.seconds:.1f} s, "
        f"preview --expect-no-changes {preview.seconds:.1f} s"
    )

    # fails cleanly: the VM's own error, the fake cloud's 500, and no Python traceback
    assert failed.returncode != 0
    error = _diagnostic(failed, f"openstack:compute:Instance ({vm})")
    assert f"Create {vm}: 500 Internal Server Error (injected fault)" in error
    assert TRACEBACK not in _without_cancellation(failed.stdout + failed.stderr)
    # nothing half-applied is lost: every resource the cloud holds is in the state
    assert vm not in {r["name"] for r in cloud_after_failure.values()}
    assert {id_: r["urn"] for id_, r in cloud_after_failure.items()} == _cloud_state(kept)
    kept_members = {
        r["id"] for r in kept["deployment"]["resources"] if r["type"].endswith("zerotier:Member")
    }
    assert {f"{n}-{m}" for n, m in members_after_failure} == kept_members
    # the cluster was installed once, by the update that converged
    assert rke_runs == ["up"]


def test_central_timing_out_once_fails_cleanly_and_never_makes_a_second_network(
    tmp_path: Path,
) -> None:
    _needs_sshd()
    with Workspace(tmp_path, STACK, nodes=True) as ws:
        assert ws.central is not None
        # the request is lost before Central acts on it: the create fails
        ws.central.stall_next("POST", "/api/v1/network", STALL, applied=False)
        failed = ws.up(check=False)
        networks_after_failure = dict(ws.central.networks)
        # Central makes the network, and only its answer is lost: the create must take that
        # network, not leave it behind for the next update to make a second one
        ws.central.stall_next("POST", "/api/v1/network", STALL, applied=True)
        up = ws.up()
        preview = ws.run("preview", "--expect-no-changes")
        posts = [r for r in ws.central.requests if r == ("POST", "/api/v1/network")]
        _converged(ws)
    print(
        f"\nCentral timeout ({STALL:.0f} s stall): failed up {failed.seconds:.1f} s, "
        f"up {up.seconds:.1f} s, preview --expect-no-changes {preview.seconds:.1f} s"
    )

    assert failed.returncode != 0
    error = _diagnostic(failed, "pulumi-python:dynamic/zerotier:Network (overlay-network)")
    assert "cannot create a network: no answer from https://localhost/api/v1" in error
    # the dynamic provider's one error, with the traceback pulumi/dynamic/__main__.py
    # (``_abort_with_traceback``) reports every error with: once in the diagnostics, and in
    # the network's own progress lines; no other traceback
    assert error.count(TRACEBACK) == 1
    others = [
        ln
        for ln in _without_cancellation(failed.stdout).splitlines()
        if TRACEBACK in ln and "overlay-network" not in ln
    ]
    assert others == [f"    error: {TRACEBACK}:"]
    assert TRACEBACK not in _without_cancellation(failed.stderr)
    assert networks_after_failure == {}
    assert len(posts) == 2  # one create per update: neither was retried blindly

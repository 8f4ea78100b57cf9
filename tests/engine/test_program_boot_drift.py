"""Issue 21 on the real engine: the stack says which nodes are behind their code.

After a first `pulumi up` of home (RKE, three booted fake VMs, ``Workspace(..., nodes=True)``)
the site's image and its workers' flavor change in the stack file. Both are boot-only inputs
every running VM ignores (components/sites/base.py ``BOOT_ONLY``: the providers would resize
a VM in place), so:

- `pulumi preview` of the new stack shows no drift (no VM exists yet);
- after the change `pulumi preview` replaces no VM, and the stack output ``bootDrift``'s new
  value (the root Stack's outputs in the engine's event log, pkg/engine/events.go
  ``resOutputsEvent``) names every node's image change and the workers' size change, as
  the preview workflow's "Nodes behind their code" section shows it (scripts/preview_drift.py);
- `pulumi up` without ``rebuild`` still replaces nothing, and exports that drift (the record
  ``boot`` carries the old image forward: the VMs' ids did not change);
- ``rebuild: [a worker]``: the preview replaces that VM only and its ``bootDrift`` still
  names the others (the new VM has no id yet); `pulumi up` replaces it (delete-first, with
  the new flavor: ``replace_on_changes``, never a resize): its drift is gone, the others'
  remains;
- `pulumi preview --expect-no-changes` then passes (the record adds no perpetual diff).

Wall times are printed.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

from scripts.offline import PROJECT
from scripts.preview_drift import HEADING, drift_section, read_events, stack_outputs
from tests.engine.harness import Workspace, stack_plain_config
from tests.engine.providers.cloud import VM_TYPES, FakeCloud
from tests.engine.test_program_up import _needs_sshd

STACK = "home"
SITE = "home"
NEW_IMAGE = "debian-12-20261201"
NEW_WORKER_FLAVOR = "g1.xlarge"  # a size the providers would resize in place
WORKER = "mc-home-home-worker-1"


def stack_outputs_in(event_log: Path) -> dict[str, Any]:
    """The root Stack's outputs as the engine's event log reports them (in a preview, the
    values the program computed), read as the workflow reads them (scripts/preview_drift.py)."""
    found = stack_outputs(read_events(event_log))
    assert found is not None, f"no outputs event of the Stack in {event_log}"
    return found


def vm_steps(event_log: Path) -> list[tuple[str, str]]:
    """(op, name) of every VM step but `same` in the engine's event log."""
    steps = []
    for line in event_log.read_text().splitlines():
        meta = json.loads(line).get("resourcePreEvent", {}).get("metadata")
        if meta and meta["type"] in VM_TYPES and meta["op"] != "same":
            steps.append((meta["op"], meta["urn"].rsplit("::", 1)[1]))
    return steps


def test_a_new_image_shows_as_drift_until_each_node_is_rebuilt(tmp_path: Path) -> None:
    _needs_sshd()
    started = time.monotonic()
    with Workspace(tmp_path / "ws", STACK, nodes=True) as ws:
        ws.env["PULUMI_DEBUG_COMMANDS"] = "true"  # the CLI accepts --event-log only so
        # a new stack: no VM has an id yet, each is created from the current inputs
        log = tmp_path / "new-stack.jsonl"
        times = [f"new-stack preview {ws.preview('--event-log', str(log)).seconds:.1f} s"]
        assert stack_outputs_in(log)["bootDrift"] == {}
        assert drift_section(stack_outputs_in(log)).startswith(f"{HEADING}\n\nNone:")
        times.append(f"first up {ws.up().seconds:.1f} s")
        cloud = FakeCloud(ws.folder / "cloud")
        outputs = ws.run("stack", "output", "--json").json()
        nodes = sorted(outputs["boot"]["nodes"])
        assert len(nodes) == 3 and WORKER in nodes
        assert outputs["bootDrift"] == {}
        old_image = outputs["boot"]["nodes"][WORKER]["image"]
        old_flavor = outputs["boot"]["nodes"][WORKER]["size"]
        drifted = {
            node: [f"image {old_image} → {NEW_IMAGE}"]
            + ([f"size {old_flavor} → {NEW_WORKER_FLAVOR}"] if "worker" in node else [])
            for node in nodes
        }

        sites = copy.deepcopy(stack_plain_config(STACK)[f"{PROJECT}:sites"])
        sites[SITE]["image"] = NEW_IMAGE
        sites[SITE]["workerFlavor"] = NEW_WORKER_FLAVOR
        ws.config_set("sites", sites)

        # the preview: no VM replaced, every node behind
        log = tmp_path / "preview.jsonl"
        preview = ws.preview("--event-log", str(log))
        times.append(f"preview {preview.seconds:.1f} s")
        assert vm_steps(log) == []
        assert stack_outputs_in(log)["bootDrift"] == drifted
        # the workflow's section (scripts/preview_drift.py) from the same event log
        section = drift_section(stack_outputs_in(log))
        for node, (reason, *_) in drifted.items():
            assert f"| {node} | {reason}" in section

        # up without rebuild: nothing replaced, the drift exported
        events = len(cloud.events())
        times.append(f"up {ws.up().seconds:.1f} s")
        assert [
            e for e in cloud.events()[events:] if e.type in VM_TYPES and e.method != "Read"
        ] == []
        outputs = ws.run("stack", "output", "--json").json()
        assert outputs["bootDrift"] == drifted
        assert {e["image"] for e in outputs["boot"]["nodes"].values()} == {old_image}

        # rebuild one worker: its drift is gone, the others' remains; already in the preview,
        # where the replaced VM has no id yet (as for a VM an interrupted replace left to
        # create, which `make roll` finishes first)
        ws.config_set("rebuild", [WORKER])
        log = tmp_path / "rebuild-preview.jsonl"
        times.append(f"rebuild preview {ws.preview('--event-log', str(log)).seconds:.1f} s")
        assert {name for _, name in vm_steps(log)} == {WORKER}  # delete-first replace
        assert stack_outputs_in(log)["bootDrift"] == {
            n: r for n, r in drifted.items() if n != WORKER
        }
        events = len(cloud.events())
        times.append(f"rebuild up {ws.up().seconds:.1f} s")
        replaced = [(e.method, e.name) for e in cloud.events()[events:] if e.type in VM_TYPES]
        assert replaced == [("Delete", WORKER), ("Create", WORKER)]
        outputs = ws.run("stack", "output", "--json").json()
        assert outputs["bootDrift"] == {n: r for n, r in drifted.items() if n != WORKER}
        assert outputs["boot"]["nodes"][WORKER]["image"] == NEW_IMAGE
        assert outputs["boot"]["nodes"][WORKER]["size"] == NEW_WORKER_FLAVOR
        [new_vm] = [r for r in cloud.resources().values() if r["name"] == WORKER]
        assert new_vm["outputs"]["flavorName"] == NEW_WORKER_FLAVOR

        after = ws.preview("--expect-no-changes")
        times.append(f"preview --expect-no-changes {after.seconds:.1f} s")
    print(f"\n{STACK}: " + "; ".join(times) + f"; total {time.monotonic() - started:.1f} s")

"""`make roll`: replace the drifted nodes one at a time, each by one real `pulumi up`.

The plan (``roll/plan.py``) comes from the stack's outputs (``nodes``: the last deployed
topology) and a preview of the current code, whose engine events give the ``bootDrift``
table (the root ``pulumi:pulumi:Stack`` resource's outputs event) and the VMs it would
create for deployed nodes (a replace interrupted after its delete); it must show no other
change. Each step is one ``stack.up(config_file=<temporary copy of the stack file>)``
(``roll/stack_file.py``), previewed first with the same file: the engine events of both
must show exactly the planned VM change, a replacement delete-first (``delete-replaced``
before ``create-replacement``: the VMs have ``delete_before_replace``,
``components/sites/base.py``), no other VM touched and nothing but the node's own
resources deleted or replaced. Then the waits (``roll/checks.py``). The first failure
stops the roll with what failed and how to go on; running it again recomputes the plan
from the stack, so it resumes. The stack file is only read.

``roll()`` takes the stack and the checks as arguments: ``roll/__main__.py`` passes the
Automation API's stack and ``ClusterChecks``; tests pass fakes.
"""

from __future__ import annotations

import functools
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from components.private_files import scratch_dir, write_secret
from roll import stack_file
from roll.checks import CheckFailed, Checks, output_value
from roll.plan import Cluster, Plan, RollRefused, Step, nodes_from_rows, plan, roll_target

ROOT_TYPE = "pulumi:pulumi:Stack"
# The VM resource types (components/sites/openstack.py, digitalocean.py): named as the node.
VM_TYPES = ("openstack:compute/instance:Instance", "digitalocean:index/droplet:Droplet")
# ``update`` too: a VM patched in place (a Nova rebuild or resize) is not the planned
# replacement, and is named in the stop message rather than shown as nothing.
CHANGES = ("create", "delete", "update", "replace", "create-replacement", "delete-replaced")
LOSSES = ("delete", "replace", "create-replacement", "delete-replaced")  # an object goes


class StackLike(Protocol):
    """The part of ``pulumi.automation.Stack`` the roll uses."""

    def outputs(self) -> Mapping[str, Any]: ...

    def preview(self, *, config_file: str, on_event: Callable[[Any], None]) -> Any: ...

    def up(self, *, config_file: str, on_event: Callable[[Any], None]) -> Any: ...


ChecksFactory = Callable[[Mapping[str, Any]], AbstractContextManager[Checks]]


@dataclass(frozen=True)
class Options:
    stack: str
    root: Path
    dry_run: bool = False
    only: str | None = None
    site: str | None = None


class StepFailed(Exception):
    """A step went wrong; the message says which node, what, and how to continue."""


@dataclass(frozen=True)
class ResourceStep:
    """One step the engine takes (or a preview plans) on one resource."""

    sequence: int
    op: str
    type: str
    name: str

    def __str__(self) -> str:
        return f"{self.type}::{self.name} ({self.op})"


@dataclass(frozen=True)
class VmChange:
    sequence: int
    op: str
    node: str


def resource_steps(events: Sequence[Any]) -> list[ResourceStep]:
    """The steps of an update/preview, in engine order (its ``resourcePreEvent``s)."""
    steps = []
    for event in sorted(events, key=lambda e: e.sequence):
        pre = event.resource_pre_event
        if pre is not None:
            op = str(getattr(pre.metadata.op, "value", pre.metadata.op))
            name = pre.metadata.urn.rsplit("::", 1)[-1]
            steps.append(ResourceStep(event.sequence, op, pre.metadata.type, name))
    return steps


def vm_changes(events: Sequence[Any]) -> list[VmChange]:
    """The VM steps of an update/preview that change something, in engine order."""
    return [
        VmChange(s.sequence, s.op, s.name)
        for s in resource_steps(events)
        if s.type in VM_TYPES and s.op in CHANGES
    ]


def _owned(name: str, nodes: frozenset[str]) -> bool:
    """Whether resource ``name`` is one of these nodes' own (named ``<node>`` or
    ``<node>-...``: its VM, port, identity, member, host key, leave/ready commands)."""
    return any(name == node or name.startswith(f"{node}-") for node in nodes)


def others_changed(
    events: Sequence[Any], nodes: frozenset[str], ops: Sequence[str]
) -> list[ResourceStep]:
    """The steps of one of ``ops`` on resources not of ``nodes``: a node's replacement
    deletes or replaces nothing else. (A replaced Kubernetes provider would take every
    object it manages with it, components/cluster_provider.py; a replaced token would
    lock new nodes out.)"""
    return [s for s in resource_steps(events) if s.op in ops and not _owned(s.name, nodes)]


def stack_outputs_event(events: Sequence[Any]) -> Mapping[str, Any] | None:
    """The root Stack resource's outputs in an update/preview's events (the last one)."""
    found = None
    for event in sorted(events, key=lambda e: e.sequence):
        out = event.res_outputs_event
        if out is not None and out.metadata.type == ROOT_TYPE and out.metadata.new is not None:
            found = out.metadata.new.outputs
    return found


def engine_errors(events: Sequence[Any]) -> list[str]:
    """The engine's error diagnostics of an update/preview (``diagnosticEvent``s of severity
    ``error``), each after its resource's name: what failed. The CLI's own output ends with
    the stack's outputs and the counts, so its tail alone does not say it."""
    errors = []
    for event in sorted(events, key=lambda e: e.sequence):
        diag = event.diagnostic_event
        if diag is None or diag.severity != "error":
            continue
        message = str(diag.message).strip()
        name = str(diag.urn).rsplit("::", 1)[-1] if diag.urn else ""
        errors.append(f"{name}: {message}" if name else message)
    return errors


def _failure(error: Exception, events: Sequence[Any]) -> str:
    """What a failed `pulumi up`/`preview` says: its error diagnostics, else the CLI's tail."""
    return "\n".join(engine_errors(events) or str(error).strip().splitlines()[-20:])


def check_update(step: Step, events: Sequence[Any], stage: str = "update") -> None:
    """Raise ``StepFailed`` unless the update (or its preview: ``stage``) changed exactly
    ``step``'s VM, as planned, and deleted or replaced nothing but that node's own
    resources."""
    after = (
        "Stopped; look at `pulumi stack history` and the cluster before going on"
        if stage == "update"
        else "Nothing was changed"
    )
    changes = vm_changes(events)
    others = sorted({f"{c.node} ({c.op})" for c in changes if c.node != step.node})
    mine = [c for c in changes if c.node == step.node]
    ops = [c.op for c in mine]
    if step.kind == "replace":
        ok = (
            "delete-replaced" in ops
            and "create-replacement" in ops
            and ops.index("delete-replaced") < ops.index("create-replacement")
        )
        want = "replaced delete-first (delete-replaced, then create-replacement)"
    elif step.kind == "remove-master":
        ok, want = ops == ["delete"], "deleted"
    elif step.kind == "finish":  # a plain create, or the replacement of a VM the state
        # still holds as pending replacement (deleted by the interrupted update: pulumi
        # pkg/resource/deploy/step_generator.go replaces an `old.PendingReplacement`)
        created = [o for o in ops if o in ("create", "create-replacement")]
        ok = len(created) == 1 and (
            "delete-replaced" not in ops or ops.index("delete-replaced") < ops.index(created[0])
        )
        want = "created"
    else:
        ok, want = ops == ["create"], "created"
    if not ok or others:
        raise StepFailed(
            f"the {stage} did not change the VMs as planned: {step.node} should be {want}, "
            f"the engine's events show {', '.join(ops) or 'nothing'} for it"
            + (f"; other VMs changed: {', '.join(others)}" if others else "")
            + f". {after}"
        )
    lost = others_changed(events, frozenset({step.node}), LOSSES)
    if lost:
        raise StepFailed(
            f"the {stage} for {step.node} deletes or replaces other resources: "
            f"{', '.join(map(str, lost[:8]))}{' …' if len(lost) > 8 else ''}. {after}"
        )


def until_stopped(update: Callable[[], Any], say: Callable[[str], None]) -> Any:
    """Run ``update`` (a ``pulumi up``) in a thread and wait for it, even after Ctrl-C.

    Ctrl-C in a terminal signals the whole foreground process group, so the Pulumi CLI
    gets it too and cancels the update gracefully, finishing the operations in flight
    (pulumi/pulumi ``pkg/backend``, ``cancellationScopeSource.NewScope``: the first SIGINT
    cancels, a second terminates). The Automation API reads the CLI's
    output on its own threads (``pulumi/automation/_cmd.py`` ``run``); were this process
    to exit at once, the CLI would lose its output pipe mid-cancel. So the first
    KeyboardInterrupt only waits for the CLI to stop; a second one stops waiting."""
    outcome: dict[str, Any] = {}
    done = threading.Event()  # not Thread.join: a KeyboardInterrupt inside join can mark a
    # running thread stopped (CPython gh-90882, threading.py `_wait_for_tstate_lock`)

    def work() -> None:
        try:
            outcome["result"] = update()
        except BaseException as error:  # handed to the main thread below
            outcome["error"] = error
        finally:
            done.set()

    # A Ctrl-C while the thread starts is held until it runs (no half-started thread).
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        threading.Thread(target=work, name="pulumi-up", daemon=True).start()
    finally:
        signal.signal(signal.SIGINT, previous)
    interrupted = False
    while not done.is_set():
        try:
            if held and not interrupted:
                raise KeyboardInterrupt
            done.wait(0.2)
        except KeyboardInterrupt:
            if interrupted:
                raise
            interrupted = True
            say(
                "Ctrl-C: the Pulumi CLI is cancelling the update (operations in flight "
                "finish first); waiting for it to stop. Ctrl-C again stops waiting"
            )
    if interrupted or held:
        raise KeyboardInterrupt
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _cluster(config: Mapping[str, Any], outputs: Mapping[str, Any], drift: Any,
             missing: frozenset[str]) -> Cluster:  # fmt: skip
    rows = output_value(outputs.get("nodes"))
    if not rows:
        raise RollRefused("the stack has no `nodes` output: deploy it first (`make up`)")
    if not isinstance(drift, Mapping):
        raise RollRefused(
            "the preview shows no `bootDrift` output: the program does not export it yet; "
            "update the code (issue 21), `make up`, then `make roll`"
        )
    return Cluster(
        cluster_name=str(config.get("multicloud:clusterName", "")),
        nodes=nodes_from_rows(rows),
        drift={str(k): tuple(str(r) for r in v) for k, v in drift.items()},
        masters_wanted=stack_file.site_counts(config, "masters"),
        workers_wanted=stack_file.site_counts(config, "workers"),
        missing=missing,
    )


def _write(directory: Path, name: str, text: str) -> str:
    path = directory / name
    write_secret(path, text)  # 0600: it holds the stack's encrypted secrets
    return str(path)


def roll(
    options: Options,
    stack: StackLike,
    checks: ChecksFactory,
    say: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Run the roll; 0 when done (or nothing to do), 1 on a refusal or failure, 130 on
    Ctrl-C. Messages go to ``say``."""
    path = options.root / f"Pulumi.{options.stack}.yaml"
    try:
        text = path.read_text()
        config = stack_file.load(text, path.name)
        outputs = stack.outputs()
        with scratch_dir("roll", "stack-") as tmp:
            rows = output_value(outputs.get("nodes")) or []
            now = {s: 0 for s in stack_file.site_counts(config, "masters")}
            for row in rows:
                if "etcd" in (row.get("roles") or ()):
                    now[str(row["site"])] = now.get(str(row["site"]), 0) + 1
            wanted = sum(stack_file.site_counts(config, "masters").values())
            # the deployed master counts: the preview shows drift, not a count change
            target = roll_target(sum(now.values()), wanted)
            preview_file = stack_file.temp_stack_file(text, now, (), target, path.name)
            say(f"previewing {options.stack} to find the nodes behind the code")
            events: list[Any] = []
            try:
                stack.preview(
                    config_file=_write(tmp, "preview.yaml", preview_file), on_event=events.append
                )
            except Exception as error:  # the Automation API's CommandError and the like
                raise RollRefused(
                    f"the preview failed, nothing was changed (`make preview STACK="
                    f"{options.stack}` shows it in full):\n{_failure(error, events)}"
                ) from None
            drift = output_value((stack_outputs_event(events) or {}).get("bootDrift"))
            names = {str(r["name"]) for r in rows}
            # A deployed node's VM that the preview creates (or replaces: no `rebuild` is
            # set here) lost its VM to an interrupted replace: the plan finishes it first.
            missing = frozenset(
                c.node
                for c in vm_changes(events)
                if c.op in ("create", "create-replacement") and c.node in names
            )
            _refuse_pending(events, missing, options)
            the_plan = plan(_cluster(config, outputs, drift, missing), options.only, options.site)
            show(the_plan, say)
            if options.dry_run or not the_plan.steps:
                return 0
            with checks(outputs) as cluster_checks:
                return _run(the_plan, options, stack, text, tmp, cluster_checks, say, clock)
    except RollRefused as refused:
        say(f"make roll: refused: {refused}")
        return 1


def _provider_update(step: ResourceStep) -> bool:
    """A provider's update other than Kubernetes': it reconfigures a plugin, changes nothing
    deployed (the dynamic providers' default provider shows one with a config file)."""
    return (
        step.op == "update"
        and step.type.startswith("pulumi:providers:")
        and step.type != "pulumi:providers:kubernetes"
    )


def _refuse_pending(events: Sequence[Any], missing: frozenset[str], options: Options) -> None:
    """Refuse a roll while the code holds other changes than boot drift (a VM updated,
    deleted or added, a worker count, a removal an update left unfinished, any other
    resource changed): every step's update would carry them unseen. Only a node that lost
    its VM shows changes: its own resources, and updates of those that name its VM."""
    ops = [op for op in CHANGES if not (missing and op == "update")]
    pending = [c for c in others_changed(events, missing, ops) if not _provider_update(c)]
    if pending:
        raise RollRefused(
            f"the preview shows changes a roll does not make: {', '.join(map(str, pending[:8]))}"
            f"{' …' if len(pending) > 8 else ''}; review them (`make preview STACK="
            f"{options.stack}`), apply them with `make up STACK={options.stack}`, then roll"
        )


def show(the_plan: Plan, say: Callable[[str], None]) -> None:
    for note in the_plan.notes:
        say(f"note: {note}")
    if not the_plan.steps:
        say("nothing to roll: every node in scope runs what the code gives now")
        return
    say(f"plan: {len(the_plan.steps)} step(s), one `pulumi up` each")
    for i, step in enumerate(the_plan.steps, 1):
        say(f"  {i}. {step.kind} {step.node} ({step.site}): {step.why}")


def _run(
    the_plan: Plan,
    options: Options,
    stack: StackLike,
    text: str,
    tmp: Path,
    cluster_checks: Checks,
    say: Callable[[str], None],
    clock: Callable[[], float],
) -> int:
    start = clock()
    total = len(the_plan.steps)
    for i, step in enumerate(the_plan.steps, 1):
        phase = "checking before"
        events: list[Any] = []

        def progress(what: str, i: int = i, step: Step = step) -> None:
            say(f"node {i} of {total}: {step.node} {what} ({_elapsed(clock() - start)})")

        try:
            progress(f"{step.kind}: {phase}")
            cluster_checks.before(step, stack.outputs())
            step_file = stack_file.temp_stack_file(
                text, dict(step.masters), step.rebuild, step.target_masters, f"step {i}"
            )
            config_file = _write(tmp, f"step-{i}.yaml", step_file)
            # The step's own preview first: nothing happens unless the engine would change
            # exactly the planned VM and delete or replace nothing but the node's own.
            phase = "pulumi preview"
            progress(f"{step.kind}: {phase}")
            planned: list[Any] = []
            stack.preview(config_file=config_file, on_event=planned.append)
            check_update(step, planned, stage="preview")
            phase = "pulumi up"
            progress(f"{step.kind}: pulumi up")

            def seen(event: Any, i: int = i, step: Step = step, events: list[Any] = events) -> None:
                events.append(event)
                for change in vm_changes([event]):  # the VM steps as the engine takes them
                    say(f"node {i} of {total}: {step.node}: engine {change.op} {change.node}")

            until_stopped(functools.partial(stack.up, config_file=config_file, on_event=seen), say)
            check_update(step, events)
            phase = "waiting"
            progress(f"{step.kind}: waiting")
            cluster_checks.after(step, stack.outputs())
            progress("done")
        except KeyboardInterrupt:
            half = phase == "pulumi up" and step.kind in ("replace", "finish")
            say(
                f"interrupted at node {i} of {total}: {step.node} ({step.kind}, {phase}). "
                + (
                    f"The Pulumi CLI cancelled the update; {step.node} may be half-replaced "
                    "(its old VM deleted, the new one not yet created). "
                    if half
                    else ""
                )
                + f"`make roll STACK={options.stack}` finishes it and continues"
            )
            return 130
        except (CheckFailed, StepFailed, RollRefused) as error:
            return _stopped(i, total, step, phase, str(error), options, say)
        except Exception as error:  # the Automation API's CommandError and the like
            return _stopped(i, total, step, phase, _failure(error, events), options, say)
    say(f"rolled {total} node(s) in {_elapsed(clock() - start)}")
    return 0


def _stopped(i: int, total: int, step: Step, phase: str, what: str, options: Options,
             say: Callable[[str], None]) -> int:  # fmt: skip
    say(
        f"stopped at node {i} of {total}: {step.node} ({step.kind}) failed while {phase}:\n"
        f"{what}\n"
        + (f"Steps 1-{i - 1} are done. " if i > 1 else "")
        + f"Fix the cause, then `make roll STACK={options.stack}` "
        "again: it recomputes the plan from the stack and resumes with the nodes still behind"
    )
    return 1

"""The stack outputs ``boot`` and ``bootDrift``: the boot record (``components/boot_record.py``)
computed from the nodes' VMs and carried forward from this stack's previous update.

In a preview a VM that is created or replaced has no id yet: ``boot`` stays unknown until
that update ran, while ``bootDrift`` stays known, leaving that node out (its new VM takes
the current inputs). An unchanged VM keeps its id, so a preview of an image change shows
every node's drift, and a preview that also finishes an interrupted replace (a VM to
create) still shows the others' (what ``make roll`` plans from).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from components.boot.overlay import ZEROTIER_VERSION
from components.boot_record import (
    BOOT_OUTPUT,
    BootEntry,
    BootInputs,
    BootRecordError,
    carry_forward,
    drift_table,
    record_from_output,
    record_to_output,
    user_data_digest,
)
from components.cluster_node import ClusterNode
from components.previous import this_stack


@dataclass(frozen=True)
class BootOutputs:
    record: pulumi.Output[dict[str, Any]]  # the stack output `boot`
    drift: pulumi.Output[dict[str, list[str]]]  # the stack output `bootDrift`


def boot_versions(engine_versions: Mapping[str, str]) -> dict[str, str]:
    """What every node's boot document installs: zerotier-one (held at its pin,
    components/boot/overlay.py) and the engine's part."""
    return {"zerotier-one": ZEROTIER_VERSION, **engine_versions}


def _or_none(value: pulumi.Output[str]) -> pulumi.Output[str | None]:
    """``value``, or None while it is not known (a preview), as a known Output:
    ``Output.apply(..., run_with_unknowns=True)`` hands the callback ``pulumi.UNKNOWN``
    (pulumi sdk/python/lib/pulumi/output.py, ``Output.apply``)."""
    return pulumi.Output.unsecret(value.apply(lambda v: None if v is pulumi.UNKNOWN else v, True))


def boot_outputs(
    nodes: Sequence[ClusterNode],
    versions: Mapping[str, str],
    engine_digest: Callable[[str], pulumi.Output[str] | None] = lambda node: None,
) -> BootOutputs:
    """The record this update leaves and the nodes behind their code, from each node's VM
    id, image, size and user-data (only its digest leaves the secret; ``engine_digest``:
    the engine's own digest of a node's user-data, ``Install.boot_digest``)."""
    names = [node.name for node in nodes]
    ids: list[pulumi.Output[str]] = []
    digests: list[pulumi.Output[str]] = []
    for node in nodes:
        assert isinstance(node.vm, pulumi.CustomResource) and node.user_data is not None
        ids.append(node.vm.id)
        own = engine_digest(node.name)
        exact = node.user_data.apply(user_data_digest)
        digests.append(pulumi.Output.unsecret(own if own is not None else exact))
    previous = this_stack("boot-previous").get_output(BOOT_OUTPUT)

    def now(digests: Sequence[str | None]) -> dict[str, BootInputs]:
        return {
            node.name: BootInputs(node.image, node.spec.size, digest, versions)
            for node, digest in zip(nodes, digests, strict=True)
        }

    def before(recorded: Any) -> dict[str, BootEntry] | None:
        try:
            return record_from_output(recorded)
        except BootRecordError as err:  # phrased for the person reading the stack
            raise pulumi.RunError(str(err)) from None

    def record(values: list[Any]) -> dict[str, Any]:
        recorded, *rest = values
        vm_ids, sha = rest[: len(names)], rest[len(names) :]
        kept = carry_forward(before(recorded), dict(zip(names, vm_ids, strict=True)), now(sha))
        return record_to_output(kept)

    def drift(values: list[Any]) -> dict[str, list[str]]:
        recorded, *rest = values
        vm_ids, sha = rest[: len(names)], rest[len(names) :]
        current = now(sha)
        # a VM without an id yet is created in this update, from the current inputs
        known = {name: vm for name, vm in zip(names, vm_ids, strict=True) if vm is not None}
        kept = carry_forward(before(recorded), known, {n: current[n] for n in known})
        return drift_table(kept, current)

    maybe = [_or_none(o) for o in [*ids, *digests]]
    return BootOutputs(
        pulumi.Output.all(previous, *ids, *digests).apply(record),
        pulumi.Output.all(previous, *maybe).apply(drift),
    )

"""Which nodes are behind their code: the boot record, pure.

A VM reads its image, size and user-data (its boot document) only when it is created
(``BOOT_ONLY`` in ``components/sites/base.py``), so after a change in code a running node
keeps what it booted with until it is rebuilt. The program records, per node, the boot
inputs its running VM was created with in the stack output ``boot`` and carries them
forward through a StackReference to this very stack (as ``rke2/join.py``'s record): an
entry is kept while the node's VM id stays the same, and taken from the current inputs
when the VM is new (created or replaced in this update, or no record yet).
``bootDrift`` names, per node behind, what differs (``drift``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

BOOT_OUTPUT = "boot"
DRIFT_OUTPUT = "bootDrift"
RECORD_FORMAT = 1
DOCUMENT_CHANGED = "boot document changed"


class BootRecordError(ValueError):
    """The stack output ``boot`` is not a record this program wrote."""


@dataclass(frozen=True)
class BootInputs:
    """What a node's VM is created from: image, size (flavor or droplet size), the sha256
    of its rendered user-data, and the versions of the components its boot document
    installs (zerotier-one and the engine's part)."""

    image: str
    size: str
    user_data: str | None  # sha256 hex of the exact user-data; None: not known (a preview)
    versions: Mapping[str, str]

    def to_output(self, vm: str) -> dict[str, Any]:
        return {
            "vm": vm,
            "image": self.image,
            "size": self.size,
            "userData": self.user_data,
            "versions": dict(sorted(self.versions.items())),
        }


@dataclass(frozen=True)
class BootEntry:
    """One node of the record: its VM's id and the inputs that VM was created with."""

    vm: str
    inputs: BootInputs


def user_data_digest(user_data: str) -> str:
    """sha256 hex of the user-data given to the VM (the user-data is a secret, this is not)."""
    return hashlib.sha256(user_data.encode()).hexdigest()


def package_versions(packages: Iterable[str]) -> dict[str, str]:
    """``name=version`` apt pins as a map; unpinned packages have no version to name."""
    pinned = (p.split("=", 1) for p in packages if "=" in p)
    return {name: version for name, version in pinned}


def record_to_output(entries: Mapping[str, BootEntry]) -> dict[str, Any]:
    """The stack output ``boot`` (format 1), nodes in name order."""
    return {
        "format": RECORD_FORMAT,
        "nodes": {
            name: entries[name].inputs.to_output(entries[name].vm) for name in sorted(entries)
        },
    }


def record_from_output(value: Any) -> dict[str, BootEntry] | None:
    """The record in a stack output ``boot``; None when there is none (no update since this
    feature). Raises ``BootRecordError`` for an output this program did not write."""
    if value is None:
        return None
    try:
        if not isinstance(value, Mapping) or value.get("format") != RECORD_FORMAT:
            raise TypeError("not format 1")
        nodes = value["nodes"]
        if not isinstance(nodes, Mapping):
            raise TypeError("nodes is not a map")
        return {str(name): _entry(entry) for name, entry in nodes.items()}
    except (KeyError, TypeError, AttributeError):
        raise BootRecordError(
            f"the stack output '{BOOT_OUTPUT}' is not a boot record of format {RECORD_FORMAT}: "
            f"{value!r}; it is written by this program and must not be edited"
        ) from None


def _entry(entry: Any) -> BootEntry:
    versions = entry["versions"]
    if not isinstance(versions, Mapping):
        raise TypeError("versions is not a map")
    inputs = BootInputs(
        image=str(entry["image"]),
        size=str(entry["size"]),
        user_data=str(entry["userData"]),
        versions={str(k): str(v) for k, v in versions.items()},
    )
    return BootEntry(vm=str(entry["vm"]), inputs=inputs)


def carry_forward(
    previous: Mapping[str, BootEntry] | None,
    vm_ids: Mapping[str, str],
    now: Mapping[str, BootInputs],
) -> dict[str, BootEntry]:
    """This update's record: per node (of ``now``), the previous entry if its VM is the
    same (same id), otherwise the current inputs with the VM's id. Nodes gone are dropped."""
    record = {}
    for name, inputs in now.items():
        vm = vm_ids[name]
        kept = (previous or {}).get(name)
        record[name] = kept if kept is not None and kept.vm == vm else BootEntry(vm, inputs)
    return record


def drift(created: BootInputs, now: BootInputs) -> list[str]:
    """Why a VM created from ``created`` is behind ``now`` (empty: it is not)."""
    reasons = []
    if created.image != now.image:
        reasons.append(f"image {created.image} → {now.image}")
    if created.size != now.size:
        reasons.append(f"size {created.size} → {now.size}")
    if now.user_data is not None and created.user_data != now.user_data:
        changed = [
            f"{part} {created.versions.get(part, '-')} → {now.versions.get(part, '-')}"
            for part in sorted(created.versions.keys() | now.versions.keys())
            if created.versions.get(part) != now.versions.get(part)
        ]
        reasons += [f"{DOCUMENT_CHANGED}: {c}" for c in changed] or [DOCUMENT_CHANGED]
    return reasons


def drift_table(
    record: Mapping[str, BootEntry], now: Mapping[str, BootInputs]
) -> dict[str, list[str]]:
    """The stack output ``bootDrift``: the nodes behind and why (``{}`` when none)."""
    table = {name: drift(record[name].inputs, now[name]) for name in sorted(now) if name in record}
    return {name: reasons for name, reasons in table.items() if reasons}

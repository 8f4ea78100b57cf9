"""Markdown for a preview's "Nodes behind their code": the new value of the stack output
``bootDrift`` (components/boot_record.py) in the engine's event log of `pulumi preview`.

The root Stack's outputs event (pkg/engine/events.go ``resOutputsEvent``, metadata
``new.outputs``) carries the values the program computed in the preview: the nodes whose
running VM was created from other boot inputs than the code gives now. Standard library
only (runs as ``python3 scripts/preview_drift.py`` in the preview workflow)::

    PULUMI_DEBUG_COMMANDS=true pulumi preview --stack prod --event-log events.jsonl
    python3 scripts/preview_drift.py --event-log events.jsonl >> "$GITHUB_STEP_SUMMARY"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DRIFT_OUTPUT = "bootDrift"  # = components.boot_record.DRIFT_OUTPUT
STACK_TYPE = "pulumi:pulumi:Stack"
# what the engine's JSON shows for a value not known in a preview (sdk/go/common/resource
# plugin UnknownStringValue / the event's computed marker)
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
HEADING = "### Nodes behind their code"


def stack_outputs(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The root Stack's outputs in the last outputs event of the log; None without one."""
    found = None
    for event in events:
        outputs = event.get("resOutputsEvent")
        if outputs and outputs["metadata"].get("type") == STACK_TYPE:
            found = (outputs["metadata"].get("new") or {}).get("outputs") or {}
    return found


def drift_section(outputs: dict[str, Any] | None) -> str:
    """The section's markdown: a table of the nodes behind and why, or why there is none."""
    drift = None if outputs is None else outputs.get(DRIFT_OUTPUT)
    if outputs is None or drift is None:
        return f"{HEADING}\n\nThe preview reported no `{DRIFT_OUTPUT}` output.\n"
    if drift == UNKNOWN or not isinstance(drift, dict):
        return (
            f"{HEADING}\n\nNot known before this update: it creates or replaces a VM, "
            "whose id exists only once the update ran.\n"
        )
    if not drift:
        return f"{HEADING}\n\nNone: every node runs the boot inputs of this code.\n"
    rows = ["| node | why |", "| --- | --- |"]
    rows += [
        f"| {node} | {'; '.join(map(str, reasons))} |" for node, reasons in sorted(drift.items())
    ]
    return (
        f"{HEADING}\n\n{len(drift)} node(s) run a VM created from older boot inputs; "
        "`make roll` replaces them one at a time (docs/operations.md).\n\n" + "\n".join(rows) + "\n"
    )


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--event-log", type=Path, required=True, help="pulumi --event-log file")
    args = parser.parse_args(argv)
    sys.stdout.write(drift_section(stack_outputs(read_events(args.event_log))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

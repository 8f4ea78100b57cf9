"""Which engine a stack installs Kubernetes with, for CI: ``rke`` or ``rke2``.

The value is ``multicloud:engine`` in ``Pulumi.<stack>.yaml``, else the project default
(``config.engine.default`` in ``Pulumi.yaml``: ``rke``), the same rule Pulumi applies to
the program's config. The deploy workflow installs the ``rke`` binary only for ``rke``
stacks: an RKE2 stack needs none.

Usage (prints the engine; when $GITHUB_OUTPUT is set, also writes ``engine=<value>``)::

    python scripts/stack_engine.py <stack>

Exit 2 with the reason on a stack name that is not a Pulumi stack name, a missing stack
file, or an engine value the program does not accept.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

try:
    from scripts import stack_yaml
except ImportError:  # run as `python scripts/stack_engine.py`: scripts/ is sys.path[0]
    import stack_yaml  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parent.parent
PROJECT = "multicloud"
ENGINES = ("rke", "rke2")  # components/config/settings.py ClusterSettings.engine (a test checks)
STACK_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class EngineError(Exception):
    """The stack's engine cannot be told (exit 2)."""


def _config(path: Path) -> dict[str, Any]:
    try:
        doc = stack_yaml.load_file(path) or {}
    except (OSError, stack_yaml.StackFileError) as err:
        raise EngineError(f"{path.name}: cannot read it ({err})") from None
    if not isinstance(doc, dict):
        raise EngineError(f"{path.name}: not a YAML mapping")
    return doc


def stack_engine(stack: str, root: Path = REPO) -> str:
    """The engine of stack ``stack`` (``rke`` or ``rke2``), from ``root``'s
    ``Pulumi.<stack>.yaml`` or, when it does not set ``multicloud:engine``, Pulumi.yaml's
    default. Raises EngineError naming the file and key when the value is not an engine."""
    if not STACK_NAME.match(stack):
        raise EngineError(f"{stack!r} is not a stack name")
    stack_file = root / f"Pulumi.{stack}.yaml"
    if not stack_file.exists():
        raise EngineError(f"no stack file {stack_file.name} for stack {stack!r}")
    config = _config(stack_file).get("config") or {}
    value = config.get(f"{PROJECT}:engine")
    where = f"{stack_file.name}: {PROJECT}:engine"
    if value is None:
        declared = (_config(root / "Pulumi.yaml").get("config") or {}).get("engine") or {}
        value = declared.get("default") if isinstance(declared, dict) else None
        where = "Pulumi.yaml: config.engine.default"
    if value not in ENGINES:
        raise EngineError(f"{where} is {value!r}; expected one of {', '.join(ENGINES)}")
    return str(value)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python scripts/stack_engine.py <stack>", file=sys.stderr)
        return 2
    try:
        engine = stack_engine(argv[0])
    except EngineError as err:
        print(f"stack_engine: {err}", file=sys.stderr)
        return 2
    print(engine)
    output = os.environ.get("GITHUB_OUTPUT")
    if output:
        with open(output, "a") as handle:
            handle.write(f"engine={engine}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

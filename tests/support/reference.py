"""The upstream facts the tests check against: ``reference/`` in this repository."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REFERENCE = Path(__file__).resolve().parents[2] / "reference"


def load(name: str) -> Any:
    """A JSON file of ``reference/`` (see ``reference/README.md`` for where each came from)."""
    return json.loads((REFERENCE / name).read_text())

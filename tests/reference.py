"""The team's reference data: ../shared/reference beside the checkout (as in CI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def load(name: str) -> Any:
    path = REFERENCE / name
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: the tests expect ../shared/reference beside the checkout"
        )
    return json.loads(path.read_text())

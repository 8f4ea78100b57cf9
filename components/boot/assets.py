"""Scripts, units and rules shipped as package files, with ``@NAME@`` placeholders.

``@NAME@`` is neither shell nor systemd syntax, so the files stay readable as what they
are; ``render`` fills every placeholder and refuses a missing or an unused value.
"""

from __future__ import annotations

import re
from importlib.resources import files

_PLACEHOLDER = re.compile(r"@([A-Z][A-Z0-9_]*)@")


def render(package: str, name: str, **values: object) -> str:
    """The text of ``<package>/files/<name>`` with its placeholders filled from ``values``."""
    text = (files(package) / "files" / name).read_text(encoding="utf-8")
    used = set(_PLACEHOLDER.findall(text))
    if used != set(values):
        raise ValueError(
            f"{package}/files/{name}: placeholders {sorted(used)}, values {sorted(values)}"
        )
    return _PLACEHOLDER.sub(lambda match: str(values[match[1]]), text)

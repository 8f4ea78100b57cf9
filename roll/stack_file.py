"""The temporary stack file of one roll step: Pulumi.<stack>.yaml with a few keys changed.

``pulumi up --config-file <copy>`` (Automation API ``stack.up(config_file=...)``) reads the
stack's config from the copy instead of the stack file, which is never written. The copy
keeps the file byte for byte (comments, ``secure:`` values, ``encryptionsalt``) except:
``multicloud:sites.<site>.masters`` lines changed in place, and ``multicloud:rebuild`` /
``multicloud:roll`` inserted as the first keys under ``config:``. No YAML library that keeps
formatting is a dependency here, so the edit is textual and then checked: the copy must
load (PyYAML) to exactly the original's data with those keys changed, or it is refused.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from roll.plan import RollRefused

PROJECT = "multicloud"
SITES = f"{PROJECT}:sites"
REBUILD = f"{PROJECT}:rebuild"
ROLL = f"{PROJECT}:roll"
_COMMENT = r"\s*(#.*)?$"


def load(text: str, path: str) -> dict[str, Any]:
    """The stack file's ``config`` mapping; refuses keys only `make roll` may set."""
    data = yaml.safe_load(text) or {}
    config = data.get("config") or {}
    if not isinstance(config, dict):
        raise RollRefused(f"{path}: `config` is not a mapping")
    for key in (REBUILD, ROLL):
        if key in config:
            raise RollRefused(
                f"{path} sets {key}: `make roll` sets it itself in a temporary copy; remove "
                f"it (`pulumi config rm {key.split(':', 1)[1]}`), then `make roll` again"
            )
    return config


def site_counts(config: Mapping[str, Any], key: str) -> dict[str, int]:
    """``sites.<site>.<key>`` (masters/workers) per site, 0 where unset (the default)."""
    sites = config.get(SITES) or {}
    return {str(s): int((v or {}).get(key, 0)) for s, v in sites.items()}


def _block_end(lines: Sequence[str], start: int, indent: int) -> int:
    """The index after the block of lines under ``lines[start]`` (deeper than ``indent``)."""
    end = start + 1
    while end < len(lines):
        line = lines[end]
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and _indent(line) <= indent:
            break
        end += 1
    return end


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _find(lines: Sequence[str], lo: int, hi: int, key: str) -> int | None:
    pattern = re.compile(rf"^\s*{re.escape(key)}:{_COMMENT}")
    for i in range(lo, hi):
        if pattern.match(lines[i].rstrip("\n")):
            return i
    return None


def _child_indent(lines: Sequence[str], start: int, end: int) -> int | None:
    for line in lines[start + 1 : end]:
        if line.strip() and not line.strip().startswith("#"):
            return _indent(line)
    return None


def _set_masters(lines: list[str], site: str, count: int) -> None:
    top = _find(lines, 0, len(lines), SITES)
    if top is None:
        raise ValueError(f"no block `{SITES}:`")
    top_end = _block_end(lines, top, _indent(lines[top]))
    at = _find(lines, top + 1, top_end, site)
    if at is None:
        raise ValueError(f"no block `{site}:` under `{SITES}:`")
    end = _block_end(lines, at, _indent(lines[at]))
    child = _child_indent(lines, at, end)
    pattern = re.compile(r"^(\s*masters:\s*)(\d+)(.*)$", re.DOTALL)
    for i in range(at + 1, end):
        match = pattern.match(lines[i])
        if match and _indent(lines[i]) == child:
            lines[i] = f"{match[1]}{count}{match[3]}"
            return
    newline = "\r\n" if lines[at].endswith("\r\n") else "\n"
    lines.insert(at + 1, " " * (child or _indent(lines[at]) + 2) + f"masters: {count}{newline}")


def temp_stack_file(
    text: str,
    masters: Mapping[str, int],
    rebuild: Sequence[str] = (),
    target_masters: int | None = None,
    path: str = "the stack file",
) -> str:
    """``text`` (the stack file) with the step's keys; see the module docstring."""
    config = load(text, path)
    data = yaml.safe_load(text)
    expected = copy.deepcopy(data)
    lines = text.splitlines(keepends=True)
    current = site_counts(config, "masters")
    try:
        for site, count in sorted(masters.items()):
            if current.get(site, 0) != count:
                _set_masters(lines, site, count)
                expected["config"][SITES][site]["masters"] = count
        inserted = []
        if rebuild:
            inserted.append(f"{REBUILD}: {json.dumps(list(rebuild))}")
            expected["config"][REBUILD] = list(rebuild)
        if target_masters is not None:
            inserted.append(f"{ROLL}: {json.dumps({'targetMasters': target_masters})}")
            expected["config"][ROLL] = {"targetMasters": target_masters}
        if inserted:
            at = next(i for i, ln in enumerate(lines) if re.match(rf"^config:{_COMMENT}", ln))
            end = _block_end(lines, at, 0)
            indent = _child_indent(lines, at, end) or 2
            newline = "\r\n" if lines[at].endswith("\r\n") else "\n"
            lines[at + 1 : at + 1] = [" " * indent + ln + newline for ln in inserted]
    except (ValueError, StopIteration, KeyError, TypeError) as error:
        raise RollRefused(
            f"{path}: cannot write the roll's temporary copy ({error}); keep `config:` and "
            f"`{SITES}:` in block style, one key per line"
        ) from None
    result = "".join(lines)
    if yaml.safe_load(result) != expected:
        raise RollRefused(
            f"{path}: the roll's temporary copy would not read back as intended; keep "
            f"`config:` and `{SITES}:` in block style, one key per line"
        )
    return result

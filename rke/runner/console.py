"""The runner's voice: its progress lines on stderr and its refusals."""

from __future__ import annotations

import sys

from rke.runner.processes import Console

_console: Console | None = None


class RunnerError(Exception):
    """A refusal or failure with an explanation for the person running ``pulumi up``."""


def attach(console: Console | None) -> None:
    """Send ``log`` and ``line`` to ``console`` (the command line does, per run)."""
    global _console
    _console = console


def line(text: str) -> None:
    """One line of a tool's (already redacted) output."""
    assert _console is not None
    _console.line(text)


def log(message: str) -> None:
    text = f"[rke-runner] {message}"
    if _console is not None:
        for part in text.splitlines() or [""]:
            _console.line(part)
    else:
        print(text, file=sys.stderr, flush=True)

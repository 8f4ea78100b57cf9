"""A preflight row (``NetworkPath``), the keyword constructor families build rows with
(``Flow``), the plan they make up (``NetworkPlan``) and the check that stops a broken one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from components.config.deployer import Deployer
from components.config.model import NAMESPACE, ConfigError
from components.sites.firewall import SitePolicy

Verdict = Literal["ok", "warn", "broken"]
WORLD = "0.0.0.0/0"
COLUMNS = ("path", "from", "to", "port", "verdict", "note")


@dataclass(frozen=True)
class NetworkPath:
    """One row of the reachability table.

    ``key``: the config key (without namespace) to change when ``verdict`` is not ok;
    ``note``: why it holds, or what breaks and the fix.
    """

    path: str
    source: str
    target: str
    port: str
    verdict: Verdict
    note: str
    key: str | None = None

    def row(self) -> tuple[str, str, str, str, str, str]:
        """The table's columns: path, from, to, port, verdict, note."""
        return (self.path, self.source, self.target, self.port, self.verdict, self.note)

    def with_note(self, more: str) -> NetworkPath:
        """The same row with ``more`` appended to its note."""
        return replace(self, note=f"{self.note}; {more}")


@dataclass(frozen=True)
class Flow:
    """What a row checks (its kind, source, target and port), before its verdict: a family
    names the flow once and gives each outcome as ``flow.ok(note)``, ``flow.broken(...)``."""

    path: str
    source: str
    target: str
    port: str = "-"

    def verdict(self, verdict: Verdict, note: str, key: str | None = None) -> NetworkPath:
        return NetworkPath(self.path, self.source, self.target, self.port, verdict, note, key)

    def ok(self, note: str) -> NetworkPath:
        return self.verdict("ok", note)

    def warn(self, note: str, *, key: str) -> NetworkPath:
        return self.verdict("warn", note, key)

    def broken(self, note: str, *, key: str) -> NetworkPath:
        return self.verdict("broken", note, key)


@dataclass(frozen=True)
class NetworkPlan:
    """The rendered firewall policy per site and every path it must carry."""

    deployer: Deployer
    firewall: Mapping[str, SitePolicy]
    paths: tuple[NetworkPath, ...]

    def markdown(self) -> str:
        """The reachability table as Markdown (what ``make render`` prints and writes)."""
        lines = [
            f"Deployer: {self.deployer.describe()}",
            "",
            "| " + " | ".join(COLUMNS) + " |",
            "|" + "---|" * len(COLUMNS),
        ]
        for path in self.paths:
            cells = (cell.replace("|", "\\|") for cell in path.row())
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def require_reachable(paths: Sequence[NetworkPath]) -> None:
    """Raise ``ConfigError`` listing every broken path once (warnings pass)."""
    lines: dict[str, None] = {}
    for path in paths:
        if path.verdict == "broken":
            lines.setdefault(f"{NAMESPACE}:{path.key}: {path.note}")
    if lines:
        count = f"{len(lines)} broken path{'s' if len(lines) > 1 else ''}"
        raise ConfigError(
            f"invalid stack config: the network preflight found {count} "
            "(see docs/network.md):\n  " + "\n  ".join(lines)
        )

"""etcd around member changes: quorum before a removal, health after each step."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rke.plan import Host, Step
from rke.runner.console import RunnerError, log
from rke.runner.session import Session


@dataclass(frozen=True)
class EtcdStatus:
    """``etcdctl member list`` and ``endpoint health --cluster`` as seen from one member."""

    members: dict[str, tuple[str, ...]]  # member name -> client URLs
    healthy: frozenset[str]  # member names whose endpoint answered healthy

    def quorum_after_removing(self, names: Iterable[str]) -> tuple[bool, str]:
        gone = set(names)
        remaining = [m for m in self.members if m not in gone]
        healthy = [m for m in remaining if m in self.healthy]
        need_now = len(self.members) // 2 + 1
        need_after = len(remaining) // 2 + 1
        ok = len(self.healthy) >= need_now and len(healthy) >= need_after
        return ok, (
            f"{len(self.healthy)} of {len(self.members)} members healthy now; after the "
            f"removal {len(healthy)} of {len(remaining)} (quorum {need_after})"
        )


def etcd_status(s: Session, hosts: Sequence[Host]) -> EtcdStatus | None:
    """The members and their health, asked on the first etcd host that answers
    (``docker exec etcd etcdctl``: RKE sets ETCDCTL_* in the etcd container,
    ``BuildEtcdProcess`` in ``cluster/plan.go``). Health is each member's
    ``/health``, as RKE's own ``isEtcdHealthy`` (``services/etcd_util.go``) asks."""
    ssh = s.tool("ssh", "checking etcd health between steps")
    command = (
        "docker exec etcd etcdctl member list -w json; echo; echo ==multicloud==; "
        "docker exec etcd etcdctl endpoint health --cluster -w json"
    )
    for host in hosts:
        _, out = s.ask(ssh, host, command)
        if "==multicloud==" not in out:
            continue
        members_text, health_text = out.split("==multicloud==", 1)
        try:
            members = {
                str(m.get("name") or ""): tuple(m.get("clientURLs") or ())
                for m in json.loads(members_text).get("members", [])
            }
            health = json.loads(health_text.strip() or "[]")
        except (ValueError, AttributeError):
            continue
        good = {str(e.get("endpoint")) for e in health if e.get("health") is True}
        healthy = frozenset(n for n, urls in members.items() if n and set(urls) & good)
        return EtcdStatus(members, healthy)
    return None


def check_removal(s: Session, step: Step, current: Sequence[Host]) -> None:
    """Before a step that removes an etcd member: the others keep quorum without it."""
    leaving = {h.address for h in step.change.etcd_removed}
    askable = [h for h in current if h.has("etcd") and h.address not in leaving]
    status = etcd_status(s, askable)
    if status is None:
        raise RunnerError(
            "before removing "
            + ", ".join(h.member for h in step.change.etcd_removed)
            + ": no remaining etcd member answered `etcdctl member list` over SSH; "
            "refusing to change the members of an etcd cluster whose health is unknown"
        )
    ok, detail = status.quorum_after_removing(h.member for h in step.change.etcd_removed)
    if not ok:
        unhealthy = sorted(set(status.members) - status.healthy)
        raise RunnerError(
            "removing "
            + ", ".join(h.member for h in step.change.etcd_removed)
            + f" now would lose etcd quorum ({detail}; unhealthy: "
            + (", ".join(unhealthy) or "none")
            + "). Bring the unhealthy members back "
            "first; nothing was changed in this step."
        )


def wait_healthy(s: Session, step: Step) -> None:
    """After an etcd step: the members are exactly the step's etcd hosts, all healthy."""
    bound = s.given.etcd_health_timeout
    expected = {h.member for h in step.hosts if h.has("etcd")}
    etcd_hosts = [h for h in step.hosts if h.has("etcd")]
    deadline = time.monotonic() + bound
    while True:
        status = etcd_status(s, etcd_hosts)
        if status is not None and set(status.members) == expected and status.healthy == expected:
            log(f"etcd healthy: {len(expected)} members ({', '.join(sorted(expected))})")
            return
        if time.monotonic() >= deadline:
            seen = (
                "no member answered"
                if status is None
                else f"members {sorted(status.members)}, healthy {sorted(status.healthy)}"
            )
            raise RunnerError(
                f"etcd did not become healthy within {bound:.0f}s after the step "
                f"(expected {sorted(expected)}; {seen}). Stopped here; the state of the "
                "completed steps is kept and the next `pulumi up` continues from it. "
                "Check `docker exec etcd etcdctl member list` on a master "
                "(docs/recovery.md)."
            )
        s.supervisor.check()
        time.sleep(min(5.0, max(bound / 10, 0.05)))

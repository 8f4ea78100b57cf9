"""What the runner asks the API server with ``kubectl``: draining the workers that leave,
and waiting for the ingress controller after ``rke up``."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from components import ingress_admission as ingress_wait
from rke.ingress import RKE_INGRESS
from rke.plan import Host
from rke.runner.console import RunnerError, log
from rke.runner.documents import ingress_enabled
from rke.runner.processes import run_split
from rke.runner.session import Session
from rke.workdir import KUBECONFIG_FILE

DEFAULT_DRAIN_TIMEOUT = 300
KUBECTL_TIMEOUT = 30.0


def drain(s: Session, hosts: Sequence[Host]) -> None:
    kubectl = s.tool("kubectl", "draining workers before RKE removes them")
    timeout = int(
        ((s.doc.get("upgrade_strategy") or {}).get("node_drain_input") or {}).get(
            "timeout", DEFAULT_DRAIN_TIMEOUT
        )
    )
    for host in hosts:
        log(f"draining worker {host.label()} before RKE removes it")
        rc, tail = s.stream(
            [
                kubectl, "--kubeconfig", str(s.workdir / KUBECONFIG_FILE), "drain",
                host.name, "--ignore-daemonsets", "--delete-emptydir-data",
                f"--timeout={timeout}s",
            ],
            keep_state=False,
        )  # fmt: skip
        if rc != 0 and any("NotFound" in ln or "not found" in ln for ln in tail):
            log(f"node {host.name} is not in the cluster any more; nothing to drain")
        elif rc != 0:
            raise RunnerError(
                f"`kubectl drain {host.name}` failed (exit {rc}).\n"
                + "\n".join(tail)
                + "\nIf the node is dead and cannot be drained, run this `pulumi up` with "
                "RKE_SKIP_DRAIN=1 (docs/recovery.md)."
            )


def ingress_state(s: Session, kubectl: str) -> tuple[list[str], str]:
    """One look at the ingress controller: (what is still pending, why kubectl could
    not answer). kubectl's stderr (warnings, errors) never reaches the JSON parser."""
    c = RKE_INGRESS
    base = [kubectl, "--kubeconfig", str(s.workdir / KUBECONFIG_FILE), "-n", c.namespace]
    rc, out, err = run_split(
        [
            *base, "get", f"daemonset/{c.daemonset}",
            f"validatingwebhookconfiguration/{c.webhook_configuration}",
            "--ignore-not-found", "-o", "json",
        ],
        s.child_env, KUBECTL_TIMEOUT,
    )  # fmt: skip
    if rc != 0:
        return [], f"kubectl exit {rc}: {s.redact(err.strip())[-300:]}"
    rc2, out2, err2 = run_split(
        [
            *base, "get", "endpointslices", "-l",
            f"{ingress_wait.SERVICE_NAME_LABEL}={c.webhook_service}", "-o", "json",
        ],
        s.child_env, KUBECTL_TIMEOUT,
    )  # fmt: skip
    if rc2 != 0:
        return [], f"kubectl exit {rc2}: {s.redact(err2.strip())[-300:]}"
    try:
        objects = ingress_wait.items(json.loads(out) if out.strip() else None)
        slices = ingress_wait.items(json.loads(out2) if out2.strip() else None)
    except ValueError as error:
        return [], f"kubectl printed no JSON ({error})"
    return ingress_wait.pending(c, objects, slices), ""


def wait_ingress(s: Session) -> None:
    """Bounded wait until an Ingress can be created: RKE's ingress-nginx DaemonSet rolled
    out on the nodes its selector picks, its admission webhook Service has a ready
    endpoint and the webhook's CA is patched in (``components/ingress_admission.py``).
    Nothing to wait for when cluster.yml's ingress provider is ``none``. Raises RunnerError
    naming what was still pending and how long it waited."""
    if not ingress_enabled(s.doc):
        return
    kubectl = s.tool("kubectl", "waiting for the ingress controller's admission webhook")
    bound, poll = s.given.ingress_timeout, s.given.ingress_poll
    c = RKE_INGRESS
    start = time.monotonic()
    deadline = start + bound
    log(f"waiting up to {bound:g}s for ingress-nginx ({c.namespace}/{c.daemonset}) and "
        f"its admission webhook ({c.namespace}/{c.webhook_service})")  # fmt: skip
    last = ""
    while True:
        waiting, error = ingress_state(s, kubectl)
        if not waiting and not error:
            took = time.monotonic() - start
            log(f"ingress-nginx ready after {took:.0f}s: the controller rolled out and "
                "the admission webhook has a ready endpoint")  # fmt: skip
            return
        now_seen = error or "; ".join(waiting)
        if now_seen != last:
            log(f"ingress-nginx not ready yet: {now_seen}")
            last = now_seen
        if time.monotonic() >= deadline:
            raise RunnerError(
                f"`rke up` succeeded, but the ingress-nginx controller and its admission "
                f"webhook were not ready after {bound:g}s (RKE_INGRESS_TIMEOUT): "
                f"{now_seen}. Until they are, the API server rejects every Ingress "
                "(the webhook's failurePolicy is Fail). The cluster state is kept and "
                "the next `pulumi up` starts from it. Look at `kubectl -n "
                f"{c.namespace} get pods,jobs` and `kubectl -n {c.namespace} describe "
                f"daemonset {c.daemonset}` (docs/recovery.md)."
            )
        s.supervisor.check()
        time.sleep(max(0.0, min(poll, deadline - time.monotonic())))

"""Which RKE state a run starts from: Pulumi's previous output, the local copy, the
cluster's ``full-cluster-state`` Secret, or none. The rules and the evidence behind
them: docs/recovery.md, "Where the RKE state lives"."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from rke import plan as planning
from rke.plan import Host
from rke.runner.console import RunnerError, log
from rke.runner.documents import load_yaml
from rke.runner.nodes import (
    NODE_CA_PATH,
    probe_certificates,
    state_from_rke,
    state_from_secret,
)
from rke.runner.session import Session
from rke.state import (
    LocalCopy,
    Result,
    StateError,
    admin_kubeconfig,
    applied_nodes,
    ca_fingerprint,
    certificate_pems,
    check_rkestate,
    digest,
    newest_certificate,
    now,
    parse_previous,
    same_state,
)
from rke.workdir import KUBECONFIG_FILE

NO_STATE = (
    "Nodes of this cluster already carry RKE certificates ({nodes}), but no RKE state is "
    "known: not in Pulumi (the RKE command's previous stdout is empty: a first run that "
    "failed, a replaced or renamed command), not in this machine's local copy ({copy}), "
    "and it could not be read back from the cluster ({why}).\n"
    "Refusing to run `rke up`: without the state RKE mints a new cluster CA and every node "
    "stops trusting the others.\n"
    "Recover the state (docs/recovery.md, 'The RKE state is lost'): copy the local copy "
    "from the machine that ran the last `pulumi up`, or read "
    "kube-system/full-cluster-state on a control-plane node, then `python -m rke.runner "
    "import-state {key} cluster.rkestate` and run `pulumi up` again."
)
OLDER_OR_AMBIGUOUS = (
    "Refusing to guess which state the cluster should continue from: starting from "
    "an older state would push its older certificates and node set. Likely causes: "
    "an etcd snapshot restore that failed after etcd was restored (etcd, and the "
    "Secret in it, went back to snapshot time), or a control-plane node serving "
    "stale data. Check which state is right (docs/recovery.md, 'Where the RKE state "
    "lives'), then either put it in place with `python -m rke.runner import-state` "
    "(docs/recovery.md, 'The RKE state is lost') and run `pulumi up` again, or, "
    "after a failed restore, run the restore again with `rke.restore` "
    "(docs/recovery.md, 'Restore etcd from a snapshot')."
)


class Start(NamedTuple):
    """The state a run starts from, before the cluster is asked."""

    state: Result | None
    source: str  # where it came from, for the log; "" for none
    ask_cluster: bool  # Pulumi's state and no local copy: compare with the cluster's


def applied_hosts(start: Result | None) -> list[Host]:
    """The hosts a state says RKE applied (its cluster.yml's for an older state)."""
    if start is None:
        return []
    nodes = applied_nodes(check_rkestate(start.rkestate))
    if nodes is not None:
        return planning.hosts_from_state(nodes)
    if start.cluster_yml:
        return planning.hosts_from_cluster_yml(load_yaml(start.cluster_yml))
    return []


def starting_state(s: Session) -> Start:
    """Pulumi's previous output and the local copy, the newer of the two."""
    try:
        previous = parse_previous(s.given.previous_stdout)
    except StateError as err:
        raise RunnerError(
            f"PULUMI_COMMAND_STDOUT (the previous run's output) is set but holds no RKE "
            f"state ({err}). Refusing to run `rke up` without it: a missing state makes "
            "RKE mint a new CA and breaks the cluster."
        ) from None
    try:
        local = s.store.load()
    except StateError as err:
        raise RunnerError(f"{err}. Move it aside after checking it (docs/recovery.md).") from None
    pulumi_source = "the RKE command's previous output in Pulumi"
    if local is None:
        # a new machine (a throw-away CI runner) or a clean finish: a failed run
        # elsewhere may have left a newer state in the cluster (newer_in_cluster)
        return Start(previous, pulumi_source if previous else "", previous is not None)
    where = f"the local copy {s.store.root} ({local.origin}, {local.state_time})"
    if previous is None:
        return Start(local.as_result(), where, False)
    if digest(previous.rkestate) == digest(local.rkestate):
        return Start(previous, f"{pulumi_source} (= the local copy)", False)
    if local.base_hash == digest(previous.rkestate):
        return Start(
            local.as_result(), where + ", newer than Pulumi's: a run after it failed", False
        )
    ca_pulumi = ca_fingerprint(check_rkestate(previous.rkestate))
    ca_local = ca_fingerprint(check_rkestate(local.rkestate))
    if ca_pulumi != ca_local:
        raise RunnerError(
            f"Pulumi's RKE state and {where} hold two different cluster CAs. Refusing "
            "to guess: find out which one the nodes trust (`openssl x509 -in "
            f"{NODE_CA_PATH} -noout -fingerprint` on a node), remove the other "
            "(docs/recovery.md), and run `pulumi up` again."
        )
    if (previous.state_time or "") >= local.state_time:
        return Start(previous, f"{pulumi_source} (newer than the local copy)", False)
    return Start(local.as_result(), where + ", newer than Pulumi's", False)


def newer_in_cluster(
    s: Session, previous: Result, source: str, hosts: Sequence[Host]
) -> tuple[Result, str]:
    """Pulumi's state, or the cluster's ``full-cluster-state`` Secret when that is newer
    (``secret_is_newer``); read on the control-plane nodes of Pulumi's applied state
    first. Pulumi's when the Secret cannot be read. Returns (state, where it came from)."""
    applied = {h.address for h in applied_hosts(previous)}
    masters = [h for h in hosts if h.has("controlplane")]
    ordered = [h for h in masters if h.address in applied] + [
        h for h in masters if h.address not in applied
    ]
    text, why = state_from_secret(s, ordered)
    if text is None:
        log(f"could not read kube-system/full-cluster-state from the cluster ({why}); "
            "starting from Pulumi's state without comparing it with the cluster's "
            "(a first create, or the API server or nodes are down)")  # fmt: skip
        return previous, source
    cluster = check_rkestate(text)
    pulumi = check_rkestate(previous.rkestate)
    if same_state(cluster, pulumi):
        log("the cluster's full-cluster-state Secret equals Pulumi's state")
        return previous, source
    if ca_fingerprint(cluster) != ca_fingerprint(pulumi):
        raise RunnerError(
            "Pulumi's RKE state and the cluster's kube-system/full-cluster-state Secret "
            "hold two different cluster CAs. Refusing to guess: find out which one the "
            f"nodes trust (`openssl x509 -in {NODE_CA_PATH} -noout -fingerprint` on a "
            "node), put that state in place (docs/recovery.md, 'The RKE state is "
            "lost'), and run `pulumi up` again."
        )
    why_newer = secret_is_newer(cluster, pulumi, hosts)
    s.learn(text, admin_kubeconfig(cluster))
    copy = LocalCopy(
        key=s.key,
        rkestate=text,
        kubeconfig=admin_kubeconfig(cluster) or previous.kubeconfig or None,
        cluster_yml=None,
        node_ids={},  # machine ids are not in RKE's state
        base_hash=digest(previous.rkestate),
        state_time=now(),
        origin="the cluster's full-cluster-state Secret (newer than Pulumi's)",
    )
    s.store.save(copy)  # a run that fails before RKE writes still has it next time
    log(
        "the cluster's full-cluster-state Secret differs from Pulumi's state: a later "
        "`rke up` wrote it and its result never reached Pulumi (a failed run on "
        f"another machine; {why_newer}); starting from the cluster's, kept in "
        f"{s.store.root}"
    )
    return copy.as_result(), "the cluster's full-cluster-state Secret (newer than Pulumi's)"


def secret_is_newer(
    cluster: Mapping[str, Any], pulumi: Mapping[str, Any], hosts: Sequence[Host]
) -> str:
    """Why a same-CA Secret that differs from Pulumi's state may be started from: a later
    newest certificate, or (equal) the same certificates and encryption configuration
    with applied nodes equal to this run's ``hosts``. Raises ``RunnerError`` when it is
    older or nothing tells which is newer."""
    secret_at, pulumi_at = newest_certificate(cluster), newest_certificate(pulumi)
    if secret_at is not None and pulumi_at is not None and secret_at != pulumi_at:
        if secret_at > pulumi_at:
            return (
                f"its newest certificate was issued at {secret_at.isoformat()}, "
                f"Pulumi's at {pulumi_at.isoformat()}"
            )
        raise RunnerError(
            "the cluster's kube-system/full-cluster-state Secret differs from Pulumi's "
            "RKE state (same cluster CA) and is OLDER: its newest certificate was issued "
            f"at {secret_at.isoformat()}, Pulumi's at {pulumi_at.isoformat()} "
            "(certificate notAfter less RKE's ten years). " + OLDER_OR_AMBIGUOUS
        )

    def nodes(found: Iterable[Host]) -> set[tuple[str, str, str, tuple[str, ...]]]:
        return {(h.address, h.name, h.internal_address, tuple(sorted(h.roles))) for h in found}

    applied = applied_nodes(cluster)
    reapplied = (
        certificate_pems(cluster) == certificate_pems(pulumi)
        and (cluster.get("desiredState") or {}).get("encryptionConfig")
        == (pulumi.get("desiredState") or {}).get("encryptionConfig")
        and applied is not None
        and nodes(planning.hosts_from_state(applied)) == nodes(hosts)
    )
    if reapplied:
        return (
            "no newer certificate, but the same certificates as Pulumi's and its applied "
            "nodes are this run's: a previous run applied this change"
        )
    when = secret_at.isoformat() if secret_at else "unknown"
    raise RunnerError(
        "the cluster's kube-system/full-cluster-state Secret differs from Pulumi's RKE "
        "state (same cluster CA) and nothing tells which is newer: both newest "
        f"certificates were issued at {when}, and the Secret's applied nodes or "
        "certificates are not what this run applies. " + OLDER_OR_AMBIGUOUS
    )


def recover(s: Session, hosts: Sequence[Host]) -> Result | None:
    """No state known: a first run when no node has RKE certificates; otherwise the
    state read back from the cluster, or a refusal."""
    found = probe_certificates(s, hosts)
    carrying = [a for a, fp in found.items() if fp is not None]
    if not carrying:
        log("no RKE state known and no node carries RKE certificates: a first `rke up`")
        return None
    log(f"no RKE state known, but {len(carrying)} node(s) carry RKE certificates; "
        "reading the state back from the cluster")  # fmt: skip
    text, why = state_from_rke(s)
    if text is None:
        text, why2 = state_from_secret(s, [h for h in hosts if h.address in carrying])
        why = f"{why}; {why2}"
    if text is None:
        raise RunnerError(
            NO_STATE.format(nodes=", ".join(carrying), copy=s.store.root, why=why, key=s.key)
        )
    doc = check_rkestate(text)
    fingerprints = {fp for fp in found.values() if fp}
    if fingerprints and fingerprints != {ca_fingerprint(doc)}:
        raise RunnerError(
            "the state read back from the cluster has another CA than the nodes' "
            f"{NODE_CA_PATH}; refusing it (docs/recovery.md)"
        )
    kubeconfig = None
    with contextlib.suppress(OSError):
        kubeconfig = (s.workdir / KUBECONFIG_FILE).read_text() or None
    copy = LocalCopy(s.key, text, kubeconfig, None, {}, None, now(), "recovered from the cluster")
    s.store.save(copy)
    log(f"recovered the RKE state from the cluster; kept it in {s.store.root}")
    return copy.as_result()

"""Reading the live cluster when the state is in doubt: whether nodes carry RKE
certificates, and the state read back with ``rke`` or from the nodes over SSH."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from rke.plan import Host
from rke.runner.console import RunnerError
from rke.runner.session import Session
from rke.state import StateError, check_rkestate, pem_fingerprint
from rke.workdir import STATE_FILE

# RKE's paths on a node (pki/constants.go CertPathPrefix, pki/util.go GetCertPath).
NODE_CA_PATH = "/etc/kubernetes/ssl/kube-ca.pem"
NODE_KUBECONFIG = "/etc/kubernetes/ssl/kubecfg-kube-node.yaml"


def probe_certificates(s: Session, hosts: Sequence[Host]) -> dict[str, str | None]:
    """address -> node's kube-ca fingerprint ("" when present but unreadable), or
    None when the node has no RKE CA. Raises when a node cannot be asked."""
    ssh = s.tool("ssh", "checking whether the nodes already carry RKE certificates")
    command = (
        f"f={NODE_CA_PATH}; if sudo -n test -e $f 2>/dev/null || test -e $f; then "
        "echo RKE-CA-PRESENT; sudo -n cat $f 2>/dev/null || cat $f 2>/dev/null || true; "
        "else echo RKE-CA-ABSENT; fi"
    )

    def ask(host: Host) -> tuple[str, int, str]:
        rc, out = s.ask(ssh, host, command)
        return host.address, rc, out

    # control-plane and etcd nodes first: once one carries certificates the answer
    # is known; workers are asked only when none does
    inner = [h for h in hosts if h.has("controlplane") or h.has("etcd")]
    outer = [h for h in hosts if h not in inner]
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(ask, inner))
        if all(rc == 0 and "RKE-CA-ABSENT" in out for _, rc, out in answers):
            answers += list(pool.map(ask, outer))
    found: dict[str, str | None] = {}
    failed = []
    for address, rc, out in answers:
        if rc == 0 and "RKE-CA-ABSENT" in out:
            found[address] = None
        elif rc == 0 and "RKE-CA-PRESENT" in out:
            pem = out.split("RKE-CA-PRESENT", 1)[1]
            found[address] = pem_fingerprint(pem) if "BEGIN CERTIFICATE" in pem else ""
        else:
            failed.append(f"{address}: {s.redact(out.strip())[-200:]}")
    if failed:
        raise RunnerError(
            "no RKE state is known, and these nodes could not be asked whether they "
            "already carry RKE certificates, so running `rke up` could mint a second "
            "CA:\n  " + "\n  ".join(failed)
        )
    return found


def state_from_rke(s: Session) -> tuple[str | None, str]:
    """``rke util get-state-file`` (``cmd/util.go`` getStateFile): reads the
    ``full-cluster-state`` Secret with kube_config_cluster.yml when it works,
    otherwise (over SSH) a ConfigMap that RKE stopped writing in v1.5.10/v1.6.3
    (rancher-archives/rke#3760), so it mostly needs a kubeconfig."""
    rke = s.tool("rke", "reading the state back")
    s.write_cluster_yml(s.doc)
    # not kept as it comes: it is checked against the nodes' CA first
    rc, tail = s.stream(
        [rke, "util", "get-state-file", "--config", "cluster.yml"], keep_state=False
    )
    path = s.workdir / STATE_FILE
    if rc == 0 and path.exists():
        text = path.read_text()
        try:
            check_rkestate(text)
            return text, ""
        except StateError as err:
            return None, f"`rke util get-state-file` wrote no usable state ({err})"
    return None, f"`rke util get-state-file` failed (exit {rc}: {(tail or [''])[-1]})"


def state_from_secret(s: Session, hosts: Sequence[Host]) -> tuple[str | None, str]:
    """Read the Secret on a control-plane node with the node's own credentials, as
    RKE's broken fallback would (``RunGetStateFileFromConfigMap`` in
    ``services/controlplane.go``, for the Secret): RKE binds the ``system:node``
    ClusterRole to the nodes' group (``templates/authz.go``), and that role may get,
    list and watch secrets (Kubernetes' ``NodeRules`` in
    ``plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go``)."""
    ssh = s.tool("ssh", "reading the state back")
    command = (
        "img=$(docker inspect kubelet --format '{{.Config.Image}}') && docker run --rm "
        '--net=host -v /etc/kubernetes:/etc/kubernetes:ro --entrypoint kubectl "$img" '
        f"--kubeconfig {NODE_KUBECONFIG} --request-timeout=20s -n kube-system get "
        "secret full-cluster-state "
        "-o 'jsonpath={.data.full-cluster-state}'"
    )
    reasons = []
    for host in [h for h in hosts if h.has("controlplane")]:
        rc, out = s.ask(ssh, host, command)
        if rc == 0:
            try:
                text = base64.b64decode(out.strip(), validate=True).decode()
                check_rkestate(text)
                return text, ""
            except (binascii.Error, UnicodeDecodeError, StateError) as err:
                reasons.append(f"{host.address}: {type(err).__name__}")
        else:
            reasons.append(f"{host.address}: exit {rc}")
    return None, "the full-cluster-state Secret could not be read (" + (
        ", ".join(reasons) or "no control-plane node carries certificates"
    ) + ")"

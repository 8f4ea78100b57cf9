"""Shell run on nodes and servers for the RKE2 engine: pure functions returning POSIX sh.

- ``install_script``: on every node at boot, after ZeroTier holds the overlay address;
  installs the pinned RKE2 from its release tarball, sha256-verified (fail closed).
- ``cluster_ready_script``: on one server over SSH; waits, bounded, until every node of
  the stack is Ready (and rke2-ingress-nginx can admit an Ingress, when it is enabled),
  then prints the kubeconfig (a secret).
- ``remove_node_script``: on a server over SSH when a node leaves the stack; drains and
  deletes its Node. Deleting the Node of a server removes its etcd member: K3s's
  ``pkg/etcd/member_controller.go`` registers ``etcdMemberHandler.onRemove`` with
  ``nodes.OnRemove``, a wrangler finalizer (``pkg/generic/remove.go``,
  ``objectLifecycleAdapter``) that calls ``ETCD.RemovePeer`` before the Node is gone, so
  ``kubectl delete node --wait`` returns only once the member was removed.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Sequence

from components.boot.apt import BOOTSTRAP_FAILED
from components.ingress_admission import SERVICE_NAME_LABEL
from rke2.ingress import RKE2_INGRESS
from rke2.release import artifact_urls, tarball_sha256, version_key

KUBECTL = "/var/lib/rancher/rke2/bin/kubectl --kubeconfig /etc/rancher/rke2/rke2.yaml"
# rke2 pkg/executor/staticpod/spw.go PodManifestsDir: <data-dir>/agent/pod-manifests
APISERVER_MANIFEST = "/var/lib/rancher/rke2/agent/pod-manifests/kube-apiserver.yaml"
KUBECONFIG = "/etc/rancher/rke2/rke2.yaml"
PREFIX = "/usr/local"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def install_script(
    version: str, node_role: str, overlay_ip: str, interface_hint: str = "zt"
) -> str:
    """Install and start RKE2 ``version`` as ``rke2-<node_role>``.

    The tarball must match the sha256 recorded in ``reference/rke2-release.json``; that
    pin takes precedence, and the release's checksum file is then not read. While none is
    recorded, it must match its line in the release's ``sha256sum-amd64.txt``, downloaded
    over https from the same release, as RKE2's ``install.sh`` does (``download_checksums``,
    ``verify_tarball``), with a loud warning in the node's cloud-init log; a file without
    that line fails. Never an unverified install. It first waits for the overlay address,
    because ``node-ip`` must exist before RKE2 starts. ``TARBALL_URL``, ``SUMS_URL``,
    ``PREFIX`` and ``MULTICLOUD_NO_START`` in the environment let tests run it against a
    loopback server (https only: curl's ``--proto``).
    """
    version_key(version)
    if node_role not in ("server", "agent"):
        raise ValueError(f"node_role must be server or agent, not {node_role!r}")
    ip = str(ipaddress.IPv4Address(overlay_ip))
    tarball, sums = artifact_urls(version)
    pinned = tarball_sha256(version) or ""
    if pinned and not _SHA256.fullmatch(pinned):
        raise ValueError(f"the recorded sha256 of {version} is not 64 hex digits")
    return f"""#!/bin/sh
# Installs RKE2 {version} ({node_role}), sha256-verified: against the pin, or while
# none is recorded against the release's published checksum file (fail closed).
set -eu
version={shlex.quote(version)}
pinned={shlex.quote(pinned)}
tarball_url=${{TARBALL_URL:-{shlex.quote(tarball)}}}
sums_url=${{SUMS_URL:-{shlex.quote(sums)}}}
prefix=${{PREFIX:-{PREFIX}}}
fail() {{ echo "multicloud-rke2-install: $*" >&2; exit 1; }}

if [ -z "${{MULTICLOUD_NO_START:-}}" ]; then
  tries=0
  until ip -4 -o addr show | grep -qF ' inet {ip}/'; do
    tries=$((tries + 1))
    [ "$tries" -le 180 ] || fail "overlay address {ip} never appeared ({interface_hint}*)"
    sleep 5
  done
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
get() {{ curl -fsSL --proto =https --proto-redir =https --retry 5 -o "$1" "$2"; }}
get "$work/rke2.tar.gz" "$tarball_url"
actual=$(sha256sum "$work/rke2.tar.gz" | awk '{{print $1}}')
if [ -n "$pinned" ]; then
  expected=$pinned from="the pinned sha256 (reference/rke2-release.json)"
else
  warn() {{ echo "multicloud-rke2-install: WARNING: $*" >&2; }}
  warn "no sha256 of rke2.linux-amd64.tar.gz $version is pinned (reference/rke2-release.json)."
  warn "Verifying it against the release's published $sums_url only (trusting GitHub at"
  warn "download time). Run make pin-checksums and commit the result (docs/first-deploy.md)."
  get "$work/sha256sum.txt" "$sums_url"
  name=rke2.linux-amd64.tar.gz
  expected=$(awk -v n="$name" '$2 == n || $2 == "*" n {{print $1}}' "$work/sha256sum.txt")
  from="the release's $sums_url"
  [ -n "$expected" ] || fail "$sums_url does not list rke2.linux-amd64.tar.gz; refusing to install"
fi
[ "$actual" = "$expected" ] || fail "tarball sha256 $actual differs from $from: $expected"
mkdir -p "$prefix"
tar xzf "$work/rke2.tar.gz" -C "$prefix"
[ -n "${{MULTICLOUD_NO_START:-}}" ] && exit 0
systemctl daemon-reload
systemctl enable rke2-{node_role}.service
systemctl start --no-block rke2-{node_role}.service
"""


def _names(nodes: Sequence[str]) -> str:
    for name in nodes:
        if not _NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a Kubernetes node name")
    return " ".join(sorted(nodes))


def _ingress_wait(timeout_seconds: int, poll: str) -> str:
    """sh: wait (same deadline) until rke2-ingress-nginx can admit an Ingress. The names
    and why: ``components/ingress_admission.py``, ``rke2/ingress.py``; the DaemonSet test is
    kubectl's ``DaemonSetStatusViewer``, the endpoint one an EndpointSlice address that is ready."""
    c = RKE2_INGRESS
    ds = f"DaemonSet {c.namespace}/{c.daemonset}"
    fields = (
        "{.metadata.generation}/{.status.observedGeneration}/{.status.desiredNumberScheduled}"
        "/{.status.updatedNumberScheduled}/{.status.numberAvailable}"
    )
    ready = "{.items[*].endpoints[?(@.conditions.ready==true)].addresses[*]}"
    return f"""ingress_pending() {{
  if ! s=$(kubectl -n {c.namespace} get daemonset {c.daemonset} -o 'jsonpath={fields}' \
      2>/dev/null); then
    why="{ds} does not exist yet (the HelmChart {c.namespace}/rke2-ingress-nginx installs it)"
    return 0
  fi
  old_ifs=$IFS; IFS=/; set -- $s; IFS=$old_ifs
  gen=${{1:-0}} obs=${{2:-0}} des=${{3:-0}} upd=${{4:-0}} avl=${{5:-0}}
  if [ "$gen" -gt "$obs" ]; then why="{ds}: its spec update is not observed yet"; return 0; fi
  if [ "$des" -eq 0 ]; then why="{ds}: it selects no node (desiredNumberScheduled 0)"; return 0; fi
  if [ "$upd" -lt "$des" ]; then why="{ds}: $upd of $des pods updated"; return 0; fi
  if [ "$avl" -lt "$des" ]; then why="{ds}: $avl of $des pods available"; return 0; fi
  eps=$(kubectl -n {c.namespace} get endpointslices -l {SERVICE_NAME_LABEL}={c.webhook_service} \
    -o 'jsonpath={ready}' 2>/dev/null)
  if [ -z "$eps" ]; then
    why="Service {c.namespace}/{c.webhook_service}: no ready endpoint"
    return 0
  fi
  ca=$(kubectl get validatingwebhookconfiguration {c.webhook_configuration} \
    -o 'jsonpath={{.webhooks[*].clientConfig.caBundle}}' 2>/dev/null)
  if [ -z "$ca" ]; then
    why="ValidatingWebhookConfiguration {c.webhook_configuration}: its CA bundle is not"
    why="$why patched in yet (Job {c.namespace}/{c.patch_job})"
    return 0
  fi
  return 1
}}
while ingress_pending; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "rke2: ingress-nginx and its admission webhook are not ready after {timeout_seconds}s:" \
      "$why. Until they are, every Ingress is rejected (failurePolicy Fail)" \
      "(kubectl -n {c.namespace} get pods,jobs;" \
      "kubectl -n {c.namespace} describe daemonset {c.daemonset})" >&2
    exit 1
  fi
  sleep {poll}
done
echo "rke2: ingress-nginx is ready: the controller rolled out and the admission webhook" \
  "has a ready endpoint" >&2
"""


def cluster_ready_script(
    nodes: Sequence[str],
    timeout_seconds: int,
    ingress: bool = False,
    poll_seconds: float = 10,
) -> str:
    """Wait (bounded) until every node in ``nodes`` is Ready, and with ``ingress`` until
    rke2-ingress-nginx's controller has rolled out and its admission webhook has a ready
    endpoint and its CA (``components/ingress_admission.py``: creating an Ingress before that
    is rejected, and pulumi-kubernetes does not retry it); then print the admin kubeconfig.

    One deadline, ``timeout_seconds`` from the start, bounds every wait; ``poll_seconds``
    between looks. Exits non-zero naming the first node that did not register or is not
    Ready, or what of the ingress controller was still pending. stdout carries only the
    kubeconfig (a secret; the command marks it so).
    """
    if timeout_seconds < 1:
        raise ValueError("timeout_seconds must be positive")
    if not 0 < poll_seconds <= 60:
        raise ValueError("poll_seconds must be in (0, 60]")
    poll = f"{poll_seconds:g}"
    return f"""set -u
nodes="{_names(nodes)}"
deadline=$(( $(date +%s) + {timeout_seconds} ))
ready='{{.status.conditions[?(@.type=="Ready")].status}}'
kubectl() {{ sudo {KUBECTL} "$@"; }}
until sudo test -s {KUBECONFIG} && kubectl get --raw /readyz >/dev/null 2>&1; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "rke2: the API server on $(hostname) is not ready after {timeout_seconds}s" \
      "(journalctl -u rke2-server)" >&2
    exit 1
  fi
  sleep {poll}
done
for node in $nodes; do
  until [ "$(kubectl get node "$node" -o "jsonpath=$ready" 2>/dev/null)" = True ]; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      if kubectl get node "$node" >/dev/null 2>&1; then
        echo "rke2: node $node joined but is not Ready after {timeout_seconds}s" \
          "(kubectl describe node $node)" >&2
      else
        echo "rke2: node $node did not join the cluster within {timeout_seconds}s" \
          "(on it: cat {BOOTSTRAP_FAILED}; cloud-init status --long;" \
          "journalctl -u rke2-server -u rke2-agent)" >&2
      fi
      exit 1
    fi
    sleep {poll}
  done
  echo "rke2: $node is Ready" >&2
done
{_ingress_wait(timeout_seconds, poll) if ingress else ""}sudo cat {KUBECONFIG}
"""


def remove_node_script(node: str, drain_timeout_seconds: int, is_server: bool) -> str:
    """Drain and delete Node ``node`` (run on another server when the node leaves).

    A node that is already gone from Kubernetes is fine. If the API server cannot say
    whether it is (down, no kubeconfig, a timeout, RBAC), the command fails and the VM
    stays: deleting it then would skip the drain and, for a server, the etcd member
    removal. A drain that does not finish within the timeout (a dead node, a blocking
    PodDisruptionBudget) is reported and the Node deleted anyway. For a server the
    deletion waits for RKE2 to remove its etcd member (see the module docstring); if that
    fails the command fails, and Pulumi keeps the VM (it skips deleting the dependencies
    of a failed delete).
    """
    name = _names([node])
    what = "server (etcd member)" if is_server else "agent"
    # `get --ignore-not-found` exits 0 printing nothing for a missing Node and fails on
    # any other error (kubectl pkg/cmd/get/get.go: GetOptions.Run sets
    # r.IgnoreErrors(apierrors.IsNotFound), printGeneric returns the other errors).
    # --request-timeout bounds it: kubectl's default 0 waits without bound.
    # The server this runs on may have left the cluster itself: only when the whole
    # cluster goes (`pulumi destroy` drains every node, the runner's own Node before the
    # last), as one update changes one server alone. RKE2 then removed its control-plane
    # manifests (pkg/rke2/spc.go watchForSelfDelete, cleanupStaticPods) and its API is
    # gone for good: nothing is left to drain into.
    return f"""set -u
node={name}
kubectl() {{ sudo {KUBECTL} "$@"; }}
if ! sudo test -e {APISERVER_MANIFEST}; then
  echo "rke2: $(hostname) has left the cluster itself (no kube-apiserver manifest): the" \
    "cluster is being taken down; nothing to drain for $node" >&2
  exit 0
fi
if ! found=$(kubectl get node "$node" --ignore-not-found -o name --request-timeout=30s); then
  echo "rke2: cannot tell whether node $node is in the cluster: kubectl on $(hostname)" \
    "failed (above). Its VM is kept. Make the API server on $(hostname) answer" \
    "(journalctl -u rke2-server), then run pulumi up again" >&2
  exit 1
fi
if [ -z "$found" ]; then
  echo "rke2: node $node is not in the cluster; nothing to drain" >&2
  exit 0
fi
echo "rke2: draining {what} $node" >&2
kubectl drain "$node" --ignore-daemonsets --delete-emptydir-data --force \
  --timeout={drain_timeout_seconds}s >&2 ||
  echo "rke2: drain of $node incomplete after {drain_timeout_seconds}s; deleting it anyway" >&2
kubectl delete node "$node" --wait=true --timeout=600s >&2
"""

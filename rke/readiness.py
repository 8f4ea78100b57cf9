"""Readiness gate per node: SSH in and wait until the node can take RKE.

Ready means: cloud-init finished, Docker answers, and the ZeroTier interface holds
the node's overlay address. The gate prints the node's ``/etc/machine-id`` as its
stdout: ``RkeCluster`` feeds those into the RKE command, so a VM replaced with the
same addresses still re-runs ``rke up`` (and counts as a replaced etcd member).
"""

from __future__ import annotations

import ipaddress
import re
import shlex

import pulumi
from pulumi_command import remote

from components.cluster_node import ClusterNode

DEFAULT_TIMEOUT_SECONDS = 15 * 60
_IFACE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
# pulumi-command dials with the Pulumi SDK's retry.Until defaults (dialWithRetry in
# provider/pkg/provider/remote/connection.go, v1.2.1; sdk/go/common/util/retry/until.go):
# first wait 0.1 s, times 1.5 after each failure, never more than 5 s.
DIAL_DELAY, DIAL_BACKOFF, DIAL_MAX_DELAY = 0.1, 1.5, 5.0
PER_DIAL_TIMEOUT = 30
TIMEOUT_GRACE_SECONDS = 60


def dial_wait_seconds(limit: int) -> float:
    """Seconds pulumi-command spends waiting between dials before it gives up, when every
    dial fails at once (connection refused, a host key or handshake error).

    With ``dialErrorLimit`` L it dials L+1 times (it stops once ``dials > limit``,
    ``reachedDialingErrorLimit``) and waits after each of the first L failures; the k-th
    wait is min(0.1 * 1.5**k, 5) s. The waits reach the 5 s cap at k = 10 (0.1 * 1.5**10
    = 5.77), and the first ten add up to 0.1 * (1.5**10 - 1) / 0.5 = 11.33 s, so

        dial_wait_seconds(L) = 11.33 + 5 * (L - 10)   for L >= 10.

    L = 30 waits 111.3 s: that is why a gate with ``dialErrorLimit: 30`` gave up after
    about 2 minutes instead of 15 when nodes refused connections.
    """
    return sum(min(DIAL_DELAY * DIAL_BACKOFF**k, DIAL_MAX_DELAY) for k in range(limit))


def dial_error_limit(bound_seconds: int) -> int:
    """The smallest ``dialErrorLimit`` whose fast failures keep dialling for
    ``bound_seconds``: 188 for 15 minutes (11.33 + 5 * 178 = 901.3 s). Slow failures (each
    dial waiting ``PER_DIAL_TIMEOUT``) would take longer; the gate's custom timeout cuts
    those off at the same bound (``node_readiness``)."""
    limit, waited = 1, dial_wait_seconds(1)
    while waited < bound_seconds:
        waited += min(DIAL_DELAY * DIAL_BACKOFF**limit, DIAL_MAX_DELAY)  # the next wait
        limit += 1
    return limit


def readiness_script(
    node_name: str, zerotier_ip: str, interface: str, timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
) -> str:
    """POSIX sh that waits (bounded) for cloud-init, Docker and the overlay address."""
    ip = str(ipaddress.IPv4Address(zerotier_ip))
    if not _IFACE.fullmatch(interface):
        raise ValueError(f"interface {interface!r} is not a Linux interface name")
    if timeout_seconds < 1:
        raise ValueError("timeout_seconds must be positive")
    name, iface = shlex.quote(node_name), shlex.quote(interface)
    return f"""set -u
node={name}
deadline=$(( $(date +%s) + {timeout_seconds} ))
left() {{ echo $(( deadline - $(date +%s) )); }}
fail() {{ echo "readiness of $node: $*" >&2; exit 1; }}

if command -v cloud-init >/dev/null 2>&1; then
  rc=0
  timeout "$(left)" cloud-init status --wait >/dev/null 2>&1 || rc=$?
  case $rc in
    0) ;;
    2) echo "readiness of $node: cloud-init finished with recoverable errors" >&2 ;;
    124) fail "cloud-init still busy after {timeout_seconds}s (/var/log/cloud-init-output.log)" ;;
    *) fail "cloud-init failed (exit $rc); run 'cloud-init status --long' on the node" ;;
  esac
fi

until docker info >/dev/null 2>&1 || sg docker -c 'docker info' >/dev/null 2>&1 </dev/null; do
  [ "$(left)" -gt 0 ] || fail "docker info fails for $(id -un) (docker up? user in group docker?)"
  sleep 5
done

until ip -4 -o addr show dev {iface} 2>/dev/null | grep -qF ' inet {ip}/'; do
  [ "$(left)" -gt 0 ] || fail "interface {interface} does not hold {ip} (zerotier-cli listnetworks)"
  sleep 5
done

cat /etc/machine-id
"""


def node_readiness(
    node: ClusterNode,
    connection_user: str,
    private_key: pulumi.Input[str] | None,
    interface: pulumi.Input[str],
    opts: pulumi.ResourceOptions | None = None,
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS,
) -> remote.Command:
    """A remote Command that succeeds once ``node`` is ready for RKE (SSH key or agent).

    It waits ``timeout_seconds`` however the node fails to answer: ``dialErrorLimit`` is
    computed from pulumi-command's backoff (``dial_error_limit``), and a custom timeout of
    ``timeout_seconds`` + 60 s bounds the whole create/update, dials that hang included
    (pulumi-go-provider turns a resource's timeout into the operation's context deadline,
    ``middleware/cancel/cancel.go`` Wrap, and the dial loop stops with the context).

    The node's SSH host key is pinned when ``node.host_key`` is known: pulumi-command
    v1.2.1 (``provider/pkg/provider/remote/connection.go``, ``SSHConfig``) parses
    ``hostKey`` with ``ssh.ParseAuthorizedKey``, accepts only that key
    (``ssh.FixedHostKey``) and offers only its algorithm; without it the host key is not
    checked at all (``ssh.InsecureIgnoreHostKey``). The pin is taken when the gate is
    created, which is when its VM is (``triggers``), and ``connection.hostKey`` is
    ignored afterwards: a VM keeps the host key it booted with (user-data is boot-only,
    ``components/sites/base.py``), so a gate created before host keys existed keeps
    working, unpinned, until its node is rebuilt.
    """
    depends: list[pulumi.Resource] = [node.vm] + ([node.member] if node.member else [])
    # A replaced VM gets a new id: replace the gate so it runs again (it has no delete).
    triggers = [node.vm.id] if isinstance(node.vm, pulumi.CustomResource) else None
    return remote.Command(
        f"{node.name}-ready",
        connection=remote.ConnectionArgs(
            host=node.ssh_address,
            user=connection_user,
            private_key=pulumi.Output.secret(private_key) if private_key is not None else None,
            host_key=node.host_key,
            # The VM may still be booting: keep dialling for the same bound.
            dial_error_limit=dial_error_limit(timeout_seconds),
            per_dial_timeout=PER_DIAL_TIMEOUT,
        ),
        create=pulumi.Output.from_input(interface).apply(
            lambda iface: readiness_script(node.name, node.zerotier_ip, iface, timeout_seconds)
        ),
        triggers=triggers,
        opts=pulumi.ResourceOptions.merge(
            opts,
            pulumi.ResourceOptions(
                depends_on=depends,
                # the pin is the key the VM booted with; see above (ignoreChanges paths go
                # through secrets: pulumi sdk/go/common/resource/properties_path.go reset)
                ignore_changes=["connection.hostKey"],
                custom_timeouts=pulumi.CustomTimeouts(
                    create=f"{timeout_seconds + TIMEOUT_GRACE_SECONDS}s",
                    update=f"{timeout_seconds + TIMEOUT_GRACE_SECONDS}s",
                ),
            ),
        ),
    )

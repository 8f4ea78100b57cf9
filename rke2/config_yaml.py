"""``/etc/rancher/rke2/config.yaml`` for one node: a pure function of the node and the cluster.

Every key is an ``rke2 server``/``rke2 agent`` flag of the pinned release
(``reference/rke2-cli-flags.json``); K3s's config parser drops unknown keys with only a
warning (``pkg/configfilearg/parser.go``, ``stripInvalidFlags``), so ``check_keys`` refuses
them here instead. All cluster traffic uses the overlay: ``node-ip`` and (servers)
``advertise-address`` are the node's ZeroTier address, so kubelet, etcd peers, the
supervisor and the ``kubernetes`` Service endpoints are overlay addresses. A node's
public address (``node-external-ip``): an OpenStack floating IP is allocated (a Pulumi
resource) before the VM, so the program writes it into config.yaml (``external_ip``); an
address on the node's own interface (a public network, a droplet) the node reads at boot
from its default route into ``config.yaml.d/`` (``external_ip_dropin``). Neither asks the
metadata service, which the node's guard blocks after cloud-init
(``components/boot/metadata_guard.py``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from components.config.cluster import RkeSettings
from components.nodes import NodeSpec
from rke2.release import cli_flags

Role = Literal["server", "agent"]
CONFIG_PATH = "/etc/rancher/rke2/config.yaml"
DROPIN_DIR = "/etc/rancher/rke2/config.yaml.d"
MANIFESTS_DIR = "/var/lib/rancher/rke2/server/manifests"  # applied by every server
CONTROL_PLANE_TAINT = "node-role.kubernetes.io/control-plane:NoSchedule"


@dataclass(frozen=True)
class ConfigYamlSettings:
    """Cluster-wide inputs of every node's config besides the node itself."""

    cluster_name: str
    rke: RkeSettings  # the shared `multicloud:rke` section: CIDRs, etcd, ingress
    masters_schedulable: bool


@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str


def role(spec: NodeSpec) -> Role:
    """Masters (etcd + control plane) run ``rke2 server``, workers ``rke2 agent``."""
    return "server" if "etcd" in spec.roles else "agent"


def _labels(spec: NodeSpec) -> list[str]:
    return [f"{key}={value}" for key, value in sorted(spec.labels.items())]


def _snapshot_cron(hours: int) -> str:
    """Every ``hours`` hours on the hour (the RKE path's ``interval_hours``)."""
    if hours >= 24:
        return "0 0 * * *" if hours == 24 else f"0 0 */{hours // 24} * *"
    return f"0 */{hours} * * *"


def node_config(
    spec: NodeSpec,
    settings: ConfigYamlSettings,
    *,
    token: str,
    agent_token: str | None,
    server_url: str | None,
    s3: S3Credentials | None = None,
    external_ip: str | None = None,
) -> dict[str, Any]:
    """The node's config.yaml as plain data.

    ``external_ip``: the node's public IPv4 address when the program knows it (an OpenStack
    floating IP), written as ``node-external-ip``; None leaves it to the boot-time drop-in
    or unset.

    ``server_url`` is ``https://<server overlay address>:9345``, or None on the one server
    that initializes the cluster (agents always join). Both tokens are secrets: the rendered
    document must stay inside a Pulumi secret.

    ``token`` is the server token, ``agent_token`` the agent token: a server gets both
    (``token``, ``agent-token``), an agent only the agent token, as its ``token``. K3s's
    supervisor serves the cluster's CA keys (``/server-bootstrap``) only to the user
    ``server``, whose password is the server token, and to the user ``node`` (password: the
    agent token) only a node's certificates and config (``pkg/server/handlers/router.go``,
    ``NewHandler``; ``pkg/daemons/control/deps/deps.go``, ``genUsers``); an agent sends its
    ``token`` as ``node``'s password (``pkg/agent/run.go``, ``createProxyAndValidateToken``).
    ``agent_token`` None is a cluster created before the two were separated: its servers
    have no ``agent-token``, and ``genUsers`` (``getNodePass``) sets ``node``'s password
    to the server token at every server start, so its agents must keep the server token.

    Raises ``ValueError`` for an agent without ``server_url``, an empty token, or S3
    credentials missing while ``rke.etcd.s3`` is set.
    """
    node_role = role(spec)
    if node_role == "agent" and server_url is None:
        raise ValueError(f"{spec.name}: an agent must join a server (server_url)")
    if not token or agent_token == "":
        raise ValueError(f"{spec.name}: the RKE2 tokens must not be empty")
    if agent_token == token:
        raise ValueError(f"{spec.name}: the agent token must differ from the server token")
    config: dict[str, Any] = {
        "node-name": spec.name,
        "node-ip": spec.zerotier_ip,
        # An agent holds only the agent token: with the server token it could join as a
        # server and read every CA key.
        "token": token if node_role == "server" or agent_token is None else agent_token,
    }
    if node_role == "server" and agent_token is not None:
        config["agent-token"] = agent_token
    if server_url is not None:
        config["server"] = server_url
    if external_ip is not None:
        config["node-external-ip"] = str(ipaddress.IPv4Address(external_ip))
    config["node-label"] = _labels(spec)
    if node_role == "agent":
        return config

    rke = settings.rke
    etcd = rke.etcd
    config |= {
        "advertise-address": spec.zerotier_ip,
        "tls-san": [spec.zerotier_ip],
        "cni": ["canal"],
        "ingress-controller": ["ingress-nginx" if rke.ingress.enabled else "none"],
        "cluster-cidr": rke.pod_cidr,
        "service-cidr": rke.service_cidr,
        "cluster-dns": rke.cluster_dns_server,
        "cluster-domain": rke.cluster_domain,
        "secrets-encryption": True,  # RKE2 forces it on anyway (pkg/rke2/rke2.go, Server)
        "write-kubeconfig-mode": "0600",
        "etcd-arg": [
            f"heartbeat-interval={etcd.heartbeat_interval_ms}",
            f"election-timeout={etcd.election_timeout_ms}",
        ],
        "etcd-snapshot-schedule-cron": _snapshot_cron(etcd.snapshot_interval_hours),
        "etcd-snapshot-retention": etcd.retention,
        # The same controller flags as the RKE path (rke/cluster_yml.py, _controller_args).
        "kube-controller-manager-arg": [
            f"node-monitor-grace-period={rke.node_monitor_grace_period_seconds}s",
            f"node-eviction-rate={rke.node_eviction_rate:g}",
        ],
    }
    if not settings.masters_schedulable:
        config["node-taint"] = [CONTROL_PLANE_TAINT]
    if etcd.s3 is not None:
        if s3 is None:
            raise ValueError("rke.etcd.s3 is set but the S3 credentials are missing")
        config |= {
            "etcd-s3": True,
            "etcd-s3-bucket": etcd.s3.bucket,
            "etcd-s3-endpoint": etcd.s3.endpoint,
            "etcd-s3-access-key": s3.access_key,
            "etcd-s3-secret-key": s3.secret_key,
        }
        if etcd.s3.region is not None:
            config["etcd-s3-region"] = etcd.s3.region
        if etcd.s3.folder is not None:
            config["etcd-s3-folder"] = etcd.s3.folder
    return config


SECRET_KEYS = ("token", "agent-token", "etcd-s3-access-key", "etcd-s3-secret-key")


def masked(config: Mapping[str, Any]) -> dict[str, Any]:
    """The document with every secret value replaced by ``[secret]`` (for printing)."""
    return {k: "[secret]" if k in SECRET_KEYS else v for k, v in config.items()}


def service_environment(rke: RkeSettings, node_role: Role) -> tuple[str, str] | None:
    """(path, text) of the RKE2 unit's environment file, or None when nothing is set.

    The units read ``EnvironmentFile=-/etc/default/%N`` (``bundle/lib/systemd/system``), and
    RKE2 starts kubelet with ``exec.CommandContext`` and no ``Env``
    (``pkg/executor/staticpod/staticpod.go``, ``Kubelet``), so kubelet inherits it: that is
    how kubelets get ``rke.kubelet_http2_env`` here (the RKE path uses ``extra_env``).
    """
    env = rke.kubelet_http2_env
    if not env:
        return None
    text = "".join(f"{key}={value}\n" for key, value in sorted(env.items()))
    return f"/etc/default/rke2-{node_role}", text


def unknown_keys(config: Mapping[str, Any], node_role: Role) -> list[str]:
    """Keys the pinned release's ``rke2 <role>`` would drop (``+`` append suffix allowed)."""
    valid = cli_flags()[node_role]
    return sorted(k for k in config if k.removesuffix("+") not in valid)


def check_keys(config: Mapping[str, Any], node_role: Role) -> None:
    """Raise ``ValueError`` naming any key RKE2 would silently ignore."""
    unknown = unknown_keys(config, node_role)
    if unknown:
        raise ValueError(f"rke2 {node_role} has no flag(s) {', '.join(unknown)}")


def render(config: Mapping[str, Any]) -> str:
    """YAML text, keys in insertion order (a reviewer reads identity first)."""
    return yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False, width=1000)


def shown(text: str) -> str:
    """A node's config.yaml text as ``make render`` shows it: secrets masked."""
    return render(masked(yaml.safe_load(text)))


# Where a node's public address comes from: ``floating-ip`` the program passes in
# (``node_config(external_ip=...)``), ``default-route`` the node reads at boot.
EXTERNAL_IP_SOURCES = ("default-route", "floating-ip")


def external_ip_dropin(source: str) -> str:
    """POSIX sh that writes ``config.yaml.d/50-node-external-ip.yaml`` at boot.

    ``default-route``: the source address of the default route, which is the public
    address on a public network (Ramnode's) and on a DigitalOcean droplet (eth0 holds it);
    read from the node's own routing table, never from the metadata service.
    Raises ``ValueError`` for another source: a floating IP is not on any interface
    (Neutron NATs it), and the metadata service that knows it is blocked by the node's
    guard after cloud-init, so the program writes it into config.yaml instead.
    """
    if source != "default-route":
        raise ValueError(f"no boot-time lookup for external address source {source!r}")
    lookup = "ip -4 route get 1.1.1.1 | sed -n 's/.* src \\([0-9.]*\\).*/\\1/p'"
    return f"""#!/bin/sh
# Writes node-external-ip: the address of the interface the default route leaves by
# (bounded wait: the network may still be coming up).
set -u
tries=0
until ip=$({lookup} 2>/dev/null) && echo "$ip" | grep -Eqx '[0-9]+([.][0-9]+){{3}}'; do
  tries=$((tries + 1))
  if [ "$tries" -ge 60 ]; then
    echo "multicloud: no public IPv4 address found ({source}); node-external-ip unset" >&2
    exit 1
  fi
  sleep 5
done
dir=${{MULTICLOUD_DROPIN_DIR:-{DROPIN_DIR}}}
mkdir -p "$dir"
printf 'node-external-ip: "%s"\\n' "$ip" > "$dir/50-node-external-ip.yaml"
"""


def dropin_keys() -> Sequence[str]:
    """Keys the boot-time drop-ins write (checked against the flag list like config.yaml)."""
    return ("node-external-ip",)

"""The ``multicloud:rke`` stack config section: cluster networking, etcd, ingress, upgrades.

Both engines read it (the key keeps RKE's name so stacks do not change); the keys only
RKE v1 reads are refused under rke2 by that engine's rules (``rke2/config_rules.py``).
Every field is optional; the defaults describe a WAN-stretched cluster (slow etcd
heartbeats, flannel on the overlay). S3 credentials for etcd snapshots are *not*
here: they are separate secret config values, injected by the runner at run time.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from components.config.model import (
    Bool,
    Cidr,
    ConfigModel,
    Int,
    IpAddress,
    Number,
    dns_name_problem,
    printable,
)

_MAX_UNAVAILABLE = re.compile(r"^[1-9][0-9]*%?$")

# What the RKE command can carry. pulumi-command hands the runner's previous stdout
# (the compressed RKE state) back in ONE environment variable, at most 128 KiB on Linux.
# Measured with the fake RKE's state (tests/rke/test_rke_state.py, whose certificates have
# RSA-2048 sizes): ~42 KB for the shared certificates and kubeconfig, ~3 KB per etcd
# member (its own certificate), ~24 bytes per node. 3 sites x (1 master + 200 workers)
# take 62.5 KB (48% of the limit); 640 nodes with 7 etcd members 76 KB (58%). etcd itself
# is best at 3, 5 or 7 members.
RUNNER_MAX_NODES = 640
RUNNER_MAX_ETCD_MEMBERS = 7

# etcd refuses an election timeout above 50 s (etcdserver: "election-timeout ... 50000").
_ETCD_MAX_ELECTION_TIMEOUT_MS = 50_000
# Snapshots: at most one a week apart, and at most 1000 kept (each is a full copy of the
# etcd database, up to etcd's 2 GiB default --quota-backend-bytes, on every etcd node).
MAX_SNAPSHOT_INTERVAL_HOURS = 7 * 24
MAX_SNAPSHOT_RETENTION = 1000

# S3 bucket names (AWS "Bucket naming rules", which DigitalOcean Spaces and MinIO follow):
# 3 to 63 lower-case letters, digits, dots and hyphens, starting and ending with a letter
# or digit, no two dots in a row, not an IP address.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# host[:port]: a DNS name, an IPv4 address or a bracketed IPv6 one.
_ENDPOINT = re.compile(r"(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")
_S3_REGION = re.compile(r"[A-Za-z0-9_-]{1,63}")
# A key prefix of AWS's "safe characters" for object keys, as /-separated segments.
_FOLDER_SEGMENT = re.compile(r"[A-Za-z0-9!_.*'()-]+")

# How often a kubelet sends a node health signal, in seconds. Kubernetes'
# node_lifecycle_controller.go (the ``nodeMonitorGracePeriod`` field comment) calls it "the
# minimal of" kubelet's --node-status-update-frequency (default 10 s) and the node Lease renew
# interval (25 % of nodeLeaseDurationSeconds, default 40 s: 10 s). RKE and its KDM service options
# set neither, and the lease duration is a kubelet config-file field with no flag RKE could pass.
KUBELET_HEARTBEAT_SECONDS = 10
# The same comment: the grace "must be N times more than the node health signal update
# frequency, where N means number of retries allowed". Kubernetes' own default allows 4 (40 s);
# three missed heartbeats is the least this project accepts over a WAN overlay.
MIN_MISSED_HEARTBEATS = 3
# ... and it "should be greater than the sum of HTTP2_PING_TIMEOUT_SECONDS and
# HTTP2_READ_IDLE_TIMEOUT_SECONDS": client-go drops a silently dead API connection only after
# both (defaults 30 s + 15 s, apimachinery pkg/util/net/http.go readIdleTimeoutSeconds,
# pingTimeoutSeconds). A kubelet whose connection went (through RKE's nginx-proxy) to a master
# that died would otherwise miss heartbeats for that long and be marked NotReady while alive.
HTTP2_DEFAULT_DETECTION_SECONDS = 30 + 15
# What the kubelets get (services.kubelet.extra_env) when the grace is not above that default.
KUBELET_HTTP2_ENV = {"HTTP2_READ_IDLE_TIMEOUT_SECONDS": 10, "HTTP2_PING_TIMEOUT_SECONDS": 5}


def _network(value: str, field: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as err:
        raise ValueError(f"{field}: {value!r} is not a CIDR such as 10.43.0.0/16 ({err})") from err
    if not isinstance(net, ipaddress.IPv4Network):
        raise ValueError(f"{field}: {value!r} must be an IPv4 CIDR (RKE v1 here is IPv4-only)")
    return net


class EtcdS3Settings(ConfigModel):
    """Where RKE uploads etcd snapshots (an S3-compatible bucket); keys come as secrets."""

    bucket: str = Field(min_length=1, description="Bucket for the snapshots; must exist.")
    endpoint: str = Field(min_length=1, description="host[:port], e.g. s3.us-east-1.amazonaws.com")
    region: str | None = Field(None, description="The bucket's region, if the endpoint needs one.")
    folder: str | None = Field(None, description="Folder (key prefix) in the bucket.")

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        try:
            ipaddress.IPv4Address(v)
            address = True
        except ValueError:
            address = False
        if not _BUCKET.fullmatch(v) or ".." in v or address:
            raise ValueError(
                f"{printable(v)!r} is not an S3 bucket name: expected 3 to 63 lower-case "
                "letters, digits, '.' and '-', starting and ending with a letter or digit "
                "(S3's bucket naming rules), e.g. mc-prod-etcd"
            )
        return v

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if "://" in v:
            raise ValueError(f"endpoint: give a host name without scheme, not {printable(v)!r}")
        match = _ENDPOINT.fullmatch(v)
        problem = dns_name_problem(match["host"]) if match else None
        port = int(match["port"]) if match and match["port"] else None
        if not match or problem or (port is not None and not 1 <= port <= 65535):
            raise ValueError(
                f"endpoint: {printable(v)!r} is not host[:port] such as "
                "nyc3.digitaloceanspaces.com or 10.0.0.5:9000 (no credentials, path or "
                f"spaces{'; the host is ' + problem if problem else ''})"
            )
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        if v is not None and not _S3_REGION.fullmatch(v):
            raise ValueError(
                f"region: {printable(v)!r} is not a region name such as us-east-1 "
                "(letters, digits, '-' and '_')"
            )
        return v

    @field_validator("folder")
    @classmethod
    def _folder(cls, v: str | None) -> str | None:
        if v is not None and not all(
            _FOLDER_SEGMENT.fullmatch(part) and part not in (".", "..") for part in v.split("/")
        ):
            raise ValueError(
                f"folder: {printable(v)!r} is not a key prefix such as etcd or backups/prod: "
                "'/'-separated names of letters, digits and !_.*'()- (S3's safe characters "
                "for object keys), without a leading or trailing '/'"
            )
        return v


class EtcdSettings(ConfigModel):
    """etcd snapshots and timing; the defaults suit members that talk across the internet."""

    snapshot_interval_hours: Int = Field(
        6,
        ge=1,
        le=MAX_SNAPSHOT_INTERVAL_HOURS,
        description="Hours between etcd snapshots (backup_config.interval_hours).",
    )
    retention: Int = Field(
        28,
        ge=1,
        le=MAX_SNAPSHOT_RETENTION,
        description="number of snapshots kept (backup_config.retention)",
    )
    heartbeat_interval_ms: Int = Field(
        500,
        ge=10,
        le=_ETCD_MAX_ELECTION_TIMEOUT_MS // 5,
        description="etcd --heartbeat-interval in ms; raised for members across a WAN.",
    )
    election_timeout_ms: Int = Field(
        5000,
        ge=50,
        le=_ETCD_MAX_ELECTION_TIMEOUT_MS,
        description="etcd --election-timeout in ms; at least 5x heartbeatIntervalMs.",
    )
    s3: EtcdS3Settings | None = Field(
        None,
        description="Also upload snapshots to this S3-compatible bucket; needs the secrets "
        "etcdS3AccessKey and etcdS3SecretKey.",
    )

    @model_validator(mode="after")
    def _election_vs_heartbeat(self) -> EtcdSettings:
        if self.election_timeout_ms < 5 * self.heartbeat_interval_ms:
            raise ValueError(
                f"electionTimeoutMs ({self.election_timeout_ms}) must be at least 5 x "
                f"heartbeatIntervalMs ({self.heartbeat_interval_ms}); etcd recommends 10x"
            )
        return self


class IngressSettings(ConfigModel):
    """RKE's nginx ingress controller, on worker-role nodes of sites with `ingress` public
    or private (the `multicloud.io/ingress-controller` label, components/nodes.py)."""

    enabled: Bool = Field(
        True, description="Run RKE's nginx ingress controller on the ingress nodes."
    )


class UpgradeSettings(ConfigModel):
    """RKE ``upgrade_strategy``: how many nodes go down at once, and draining."""

    max_unavailable_worker: Int | str = Field(
        "10%", description="Workers upgraded at once: a count, or a percentage like '10%'."
    )
    max_unavailable_controlplane: Int | str = Field(
        1, description="Masters upgraded at once: a count, or a percentage."
    )
    drain: Bool = Field(True, description="Drain each node before upgrading it.")
    drain_timeout_seconds: Int = Field(
        300, ge=1, le=10800, description="How long a drain may take before the upgrade fails."
    )

    @field_validator("max_unavailable_worker", "max_unavailable_controlplane")
    @classmethod
    def _count_or_percent(cls, v: int | str, info: ValidationInfo) -> int | str:
        name = (
            "maxUnavailableWorker"
            if info.field_name == "max_unavailable_worker"
            else "maxUnavailableControlplane"
        )
        if isinstance(v, int):
            if not 1 <= v <= RUNNER_MAX_NODES:
                raise ValueError(f"{name}: expected a count from 1 to {RUNNER_MAX_NODES}, got {v}")
            return v
        if not _MAX_UNAVAILABLE.fullmatch(v) or (v.endswith("%") and int(v[:-1]) > 100):
            raise ValueError(
                f"{name}: expected a count or a percentage from 1% to 100% such as '10%', "
                f"got {printable(v)!r}"
            )
        return v


_SNAPSHOT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,252}$")


class RestoreSettings(ConfigModel):
    """An etcd snapshot restore the RKE command runs once, instead of ``rke up``.

    The runner calls ``rke etcd snapshot-restore --name <snapshot>`` (with every S3
    flag when ``s3`` is true) and stores the resulting state like any other run; while
    the setting names the same snapshot, later runs are plain ``rke up`` runs. Remove
    it after the restore (docs/recovery.md).
    """

    snapshot: str = Field(
        description="snapshot name as RKE lists it (without .zip), e.g. "
        "rke_etcd_snapshot_2026-11-29T06:00:00Z"
    )
    s3: Bool = Field(
        False,
        description="download the snapshot from rke.etcd.s3 (true) or use the copy in "
        "/opt/rke/etcd-snapshots on the etcd nodes (false)",
    )

    @field_validator("snapshot")
    @classmethod
    def _name(cls, v: str) -> str:
        if v.endswith(".zip"):
            raise ValueError(f"snapshot: give the name without .zip ({v[:-4]!r})")
        if not _SNAPSHOT.fullmatch(v):
            raise ValueError(f"snapshot: {v!r} is not an RKE snapshot name")
        return v


class RkeSettings(ConfigModel):
    """``multicloud:rke``: cluster networking, etcd, ingress and upgrades; every key optional."""

    network_plugin: Literal["canal", "flannel"] = Field(
        "canal",
        description="RKE network plugin, on the ZeroTier interface. canal (flannel's VXLAN plus "
        "Calico enforcing NetworkPolicy) for new clusters; flannel enforces no NetworkPolicy "
        "and is here only for clusters created with it: RKE cannot change the plugin of a "
        "running cluster, so keep the value a cluster was created with.",
    )
    service_cidr: Cidr = Field(
        "10.43.0.0/16", description="Kubernetes Service range (IPv4, /28 or larger)."
    )
    pod_cidr: Cidr = Field(
        "10.42.0.0/16", description="Pod range (IPv4, /24 or larger: flannel gives a /24 per node)."
    )
    cluster_domain: str = Field("cluster.local", description="The cluster's DNS domain.")
    dns_upstreams: tuple[IpAddress, ...] = Field(
        ("1.1.1.1", "9.9.9.9"), description="Resolvers CoreDNS forwards to (IP addresses)."
    )
    etcd: EtcdSettings = Field(EtcdSettings(), description="etcd snapshots and timing.")
    ingress: IngressSettings = Field(IngressSettings(), description="RKE's ingress controller.")
    upgrade: UpgradeSettings = Field(UpgradeSettings(), description="RKE's upgrade strategy.")
    ssh_agent_auth: Bool = Field(
        True,
        description="rke authenticates with the SSH agent (the runner switches to the key "
        "file written from sshPrivateKey when it has one).",
    )
    node_monitor_grace_period_seconds: Int = Field(
        40,
        ge=1,
        le=600,
        description=(
            "kube-controller-manager --node-monitor-grace-period in seconds: how long a node may "
            "send no heartbeat before it is marked NotReady (its pods leave Service endpoints and "
            "it is tainted). RKE's default is 40. Shorter moves the entrypoint sooner and makes a "
            "WAN hiccup mark live nodes NotReady; at least 3 heartbeats (30)."
        ),
    )
    node_eviction_rate: Number = Field(
        0.1,
        gt=0,
        le=10,
        description=(
            "kube-controller-manager --node-eviction-rate: nodes per second of one zone (site) "
            "that get the NoExecute taint once they are NotReady. Kubernetes' default 0.1 taints "
            "the nodes of a dead site 10 s apart."
        ),
    )

    @field_validator("node_monitor_grace_period_seconds")
    @classmethod
    def _grace(cls, v: int) -> int:
        least = MIN_MISSED_HEARTBEATS * KUBELET_HEARTBEAT_SECONDS
        if v < least:
            raise ValueError(
                f"nodeMonitorGracePeriodSeconds: {v} allows fewer than {MIN_MISSED_HEARTBEATS} "
                f"missed kubelet heartbeats ({KUBELET_HEARTBEAT_SECONDS} s apart); Kubernetes "
                f"requires N times the heartbeat interval: use at least {least}"
            )
        return v

    @property
    def kubelet_http2_env(self) -> dict[str, int]:
        """Environment for the kubelets: tighter HTTP/2 health checks when the grace period is
        not above client-go's default dead-connection detection (45 s), else none."""
        if self.node_monitor_grace_period_seconds > HTTP2_DEFAULT_DETECTION_SECONDS:
            return {}
        return dict(KUBELET_HTTP2_ENV)

    restore: RestoreSettings | None = Field(
        None, description="run `rke etcd snapshot-restore` once (docs/recovery.md)"
    )

    @field_validator("restore")
    @classmethod
    def _restore_source(
        cls, v: RestoreSettings | None, info: ValidationInfo
    ) -> RestoreSettings | None:
        etcd = info.data.get("etcd")
        if v is not None and v.s3 and (etcd is None or etcd.s3 is None):
            raise ValueError("s3 is true but rke.etcd.s3 is not configured")
        return v

    @field_validator("service_cidr")
    @classmethod
    def _service(cls, v: str) -> str:
        net = _network(v, "serviceCidr")
        if net.prefixlen > 28:
            raise ValueError(
                f"serviceCidr: {v} is too small; use /28 or larger (RKE needs .1 and .10)"
            )
        return str(net)

    @field_validator("pod_cidr")
    @classmethod
    def _pod(cls, v: str) -> str:
        net = _network(v, "podCidr")
        if net.prefixlen > 24:
            raise ValueError(f"podCidr: {v} is too small; flannel gives every node a /24")
        return str(net)

    @field_validator("cluster_domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        label = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
        if not re.fullmatch(rf"{label}(\.{label})*", v):
            raise ValueError(f"clusterDomain: {printable(v)!r} is not a lower-case DNS name")
        problem = dns_name_problem(v)
        if problem:
            raise ValueError(f"clusterDomain: {problem}")
        return v

    @field_validator("dns_upstreams")
    @classmethod
    def _upstreams(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("dnsUpstreams: give at least one resolver address")
        return v

    @model_validator(mode="after")
    def _pod_vs_service(self) -> RkeSettings:
        if ipaddress.ip_network(self.pod_cidr).overlaps(ipaddress.ip_network(self.service_cidr)):
            raise ValueError(f"podCidr {self.pod_cidr} overlaps serviceCidr {self.service_cidr}")
        return self

    @property
    def cluster_dns_server(self) -> str:
        """The cluster DNS service address: the .10 of the service range (RKE convention)."""
        return str(ipaddress.ip_network(self.service_cidr)[10])

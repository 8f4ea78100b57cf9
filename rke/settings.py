"""The ``multicloud:rke`` stack config section: cluster networking, etcd, ingress, upgrades.

Every field is optional; the defaults describe a WAN-stretched cluster (slow etcd
heartbeats, flannel on the overlay). S3 credentials for etcd snapshots are *not*
here: they are separate secret config values, injected by the runner at run time.
"""

from __future__ import annotations

import ipaddress
import re

from pydantic import Field, ValidationInfo, field_validator, model_validator

from components.config.model import ConfigModel

_MAX_UNAVAILABLE = re.compile(r"^[0-9]+%?$")

# etcd refuses an election timeout above 50 s (etcdserver: "election-timeout ... 50000").
_ETCD_MAX_ELECTION_TIMEOUT_MS = 50_000


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

    bucket: str = Field(min_length=1)
    endpoint: str = Field(min_length=1, description="host[:port], e.g. s3.us-east-1.amazonaws.com")
    region: str | None = None
    folder: str | None = None

    @field_validator("endpoint")
    @classmethod
    def _no_scheme(cls, v: str) -> str:
        if "://" in v:
            raise ValueError(f"endpoint: give a host name without scheme, not {v!r}")
        return v


class EtcdSettings(ConfigModel):
    """etcd snapshots and timing; the defaults suit members that talk across the internet."""

    snapshot_interval_hours: int = Field(6, ge=1)
    retention: int = Field(
        28, ge=1, description="number of snapshots kept (backup_config.retention)"
    )
    heartbeat_interval_ms: int = Field(500, ge=10)
    election_timeout_ms: int = Field(5000, ge=50, le=_ETCD_MAX_ELECTION_TIMEOUT_MS)
    s3: EtcdS3Settings | None = None

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

    enabled: bool = True


class UpgradeSettings(ConfigModel):
    """RKE ``upgrade_strategy``: how many nodes go down at once, and draining."""

    max_unavailable_worker: int | str = "10%"
    max_unavailable_controlplane: int | str = 1
    drain: bool = True
    drain_timeout_seconds: int = Field(300, ge=1, le=10800)

    @field_validator("max_unavailable_worker", "max_unavailable_controlplane")
    @classmethod
    def _count_or_percent(cls, v: int | str, info: ValidationInfo) -> int | str:
        name = (
            "maxUnavailableWorker"
            if info.field_name == "max_unavailable_worker"
            else "maxUnavailableControlplane"
        )
        if isinstance(v, int):
            if v < 1:
                raise ValueError(f"{name}: must be >= 1, got {v}")
            return v
        if not _MAX_UNAVAILABLE.match(v):
            raise ValueError(f"{name}: expected a count or a percentage such as '10%', got {v!r}")
        return v


class RkeSettings(ConfigModel):
    """Typed ``multicloud:rke`` config object."""

    service_cidr: str = "10.43.0.0/16"
    pod_cidr: str = "10.42.0.0/16"
    cluster_domain: str = "cluster.local"
    dns_upstreams: tuple[str, ...] = ("1.1.1.1", "9.9.9.9")
    etcd: EtcdSettings = EtcdSettings()
    ingress: IngressSettings = IngressSettings()
    upgrade: UpgradeSettings = UpgradeSettings()
    ssh_agent_auth: bool = True

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
            raise ValueError(f"clusterDomain: {v!r} is not a lower-case DNS name")
        return v

    @field_validator("dns_upstreams")
    @classmethod
    def _upstreams(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("dnsUpstreams: give at least one resolver address")
        for item in v:
            try:
                ipaddress.ip_address(item)
            except ValueError as err:
                raise ValueError(f"dnsUpstreams: {item!r} is not an IP address") from err
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

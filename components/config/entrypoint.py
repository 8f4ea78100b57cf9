"""The ``multicloud:entrypoint`` stack config: Cloudflare record, DNS updater, cluster services.

Every image and chart is pinned to an exact version; validators name the offending key.
``failover_bound_seconds`` is the documented worst case for the record to follow a dead node.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from components.config.model import ConfigModel

# favonia/cloudflare-ddns 1.15.1: the fix for Cloudflare "error code: 1034" in cloudflare.trace,
# and the first line supporting the CLOUDFLARE_* variable names used in workloads.py.
DEFAULT_UPDATER_IMAGE = "favonia/cloudflare-ddns:1.15.1"
DEFAULT_CERT_MANAGER_CHART = "v1.16.3"  # jetstack/cert-manager; crds.enabled since v1.15
DEFAULT_LONGHORN_CHART = "1.8.1"  # longhorn/longhorn
DEFAULT_APP_IMAGE = "traefik/whoami:v1.10.3"

# kube-controller-manager --node-monitor-grace-period default for Kubernetes <= 1.31 (40s; it
# became 50s in 1.32). RKE v1 does not override it unless services.kube-controller.extra_args
# does. After this grace the node is NotReady/Unknown and gets the NoExecute taints the updater
# tolerates for only ``tolerationSeconds``.
NODE_MONITOR_GRACE_SECONDS = 40

_ZONE_ID = re.compile(r"^[0-9a-f]{32}$")
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SEMVER = r"\d+\.\d+\.\d+"
_MOVING_TAGS = {"latest", "edge", "main", "master", "stable"}


def _pinned_image(value: str, field: str) -> str:
    """An image reference with an explicit, non-moving tag (or a digest)."""
    if "@sha256:" in value:
        return value
    name, sep, tag = value.rpartition(":")
    if not sep or "/" in tag or not name:
        raise ValueError(f"{field} must pin a tag, e.g. 'repo/image:1.2.3' (got {value!r})")
    if tag in _MOVING_TAGS or not re.fullmatch(rf"v?{_SEMVER}([-.+][0-9A-Za-z.-]+)?", tag):
        raise ValueError(f"{field} must pin an exact version tag like 1.2.3 (got {tag!r})")
    return value


class CloudflareSettings(ConfigModel):
    """The zone and the A record that is the cluster's public entrypoint."""

    zone_id: str
    zone: str
    record_name: str
    ttl: int = Field(default=60, ge=60, le=86400)
    proxied: bool = False

    @field_validator("zone_id")
    @classmethod
    def _zone_id(cls, value: str) -> str:
        if not _ZONE_ID.fullmatch(value):
            raise ValueError(
                f"cloudflare.zoneId must be 32 lowercase hex characters (got {value!r})"
            )
        return value

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if not _DOMAIN.fullmatch(value):
            raise ValueError(f"cloudflare.zone must be a domain like example.com (got {value!r})")
        return value

    @field_validator("record_name")
    @classmethod
    def _record_name(cls, value: str) -> str:
        base = value.removeprefix("*.")
        if not _DOMAIN.fullmatch(base):
            raise ValueError(
                "cloudflare.recordName must be a lowercase FQDN without trailing dot, "
                f"optionally starting with '*.' (got {value!r})"
            )
        return value

    @model_validator(mode="after")
    def _record_in_zone(self) -> CloudflareSettings:
        base = self.record_base
        if base != self.zone and not base.endswith("." + self.zone):
            raise ValueError(
                f"cloudflare.recordName {self.record_name!r} is not within cloudflare.zone "
                f"{self.zone!r}"
            )
        return self

    @property
    def wildcard(self) -> bool:
        return self.record_name.startswith("*.")

    @property
    def record_base(self) -> str:
        """The record name without its ``*.`` wildcard label."""
        return self.record_name.removeprefix("*.")

    def covers(self, host: str) -> bool:
        """Whether a name resolves through this one record."""
        if host == self.record_name:
            return True
        if not self.wildcard:
            return False
        label, _, rest = host.partition(".")
        return rest == self.record_base and bool(label) and label != "*"


class UpdaterSettings(ConfigModel):
    """The in-cluster favonia/cloudflare-ddns Deployment that moves the record."""

    enabled: bool = True
    image: str = DEFAULT_UPDATER_IMAGE
    update_interval_seconds: int = Field(default=60, ge=10, le=3600)
    toleration_seconds: int = Field(default=30, ge=0, le=3600)

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        _pinned_image(value, "updater.image")
        if not value.startswith(("favonia/cloudflare-ddns:", "ghcr.io/favonia/cloudflare-ddns:")):
            raise ValueError(
                "updater.image must be favonia/cloudflare-ddns:<version>: its environment "
                f"variables are what workloads.py sets (got {value!r})"
            )
        return value


class CertManagerSettings(ConfigModel):
    """cert-manager from the jetstack chart plus Let's Encrypt ClusterIssuers."""

    enabled: bool = True
    chart_version: str = DEFAULT_CERT_MANAGER_CHART
    email: str | None = None
    issuer: Literal["staging", "production"] = "production"  # the one the example app uses

    @field_validator("chart_version")
    @classmethod
    def _chart_version(cls, value: str) -> str:
        match = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", value)
        if not match:
            raise ValueError(f"certManager.chartVersion must look like v1.16.3 (got {value!r})")
        if (int(match[1]), int(match[2])) < (1, 15):
            raise ValueError(
                f"certManager.chartVersion must be v1.15.0 or later (crds.enabled; got {value!r})"
            )
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.fullmatch(value):
            raise ValueError(f"certManager.email is not an email address (got {value!r})")
        return value

    @model_validator(mode="after")
    def _email_required(self) -> CertManagerSettings:
        if self.enabled and not self.email:
            raise ValueError(
                "certManager.email is required when certManager.enabled is true "
                "(Let's Encrypt ACME account contact)"
            )
        return self


class LonghornSettings(ConfigModel):
    """Longhorn from its chart: the default StorageClass, replicas spread over sites."""

    enabled: bool = True
    chart_version: str = DEFAULT_LONGHORN_CHART
    replicas: int | None = Field(default=None, ge=1, le=10)  # None: one per site, at most 3

    @field_validator("chart_version")
    @classmethod
    def _chart_version(cls, value: str) -> str:
        if not re.fullmatch(_SEMVER, value):
            raise ValueError(f"longhorn.chartVersion must look like 1.8.1 (got {value!r})")
        return value


class AppSettings(ConfigModel):
    """A small example web app behind the RKE nginx ingress."""

    enabled: bool = True
    image: str = DEFAULT_APP_IMAGE
    host: str | None = None  # default: app.<record base> for a wildcard record, else the record

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        return _pinned_image(value, "app.image")

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is not None and not _DOMAIN.fullmatch(value):
            raise ValueError(f"app.host must be a lowercase FQDN (got {value!r})")
        return value


class EntrypointSettings(ConfigModel):
    """``multicloud:entrypoint``: everything about how the world reaches the cluster."""

    cloudflare: CloudflareSettings | None = None  # None: no public record (a lab behind NAT)
    updater: UpdaterSettings = UpdaterSettings()
    cert_manager: CertManagerSettings = CertManagerSettings(enabled=False)
    longhorn: LonghornSettings = LonghornSettings()
    app: AppSettings = AppSettings()

    @model_validator(mode="after")
    def _app_host_resolves(self) -> EntrypointSettings:
        if self.cloudflare is None:
            if self.updater.enabled:
                raise ValueError(
                    "updater.enabled needs cloudflare (the record it keeps current); "
                    "set updater.enabled: false for a cluster without a public record"
                )
            if self.app.enabled and not self.app.host:
                raise ValueError("app.host is required when there is no cloudflare record")
            return self
        if self.app.enabled and not self.cloudflare.covers(self.app_host):
            raise ValueError(
                f"app.host {self.app_host!r} does not resolve through cloudflare.recordName "
                f"{self.cloudflare.record_name!r}"
            )
        return self

    @property
    def app_host(self) -> str:
        if self.app.host:
            return self.app.host
        cf = self.cloudflare
        assert cf is not None  # validation requires app.host without a record
        return f"app.{cf.record_base}" if cf.wildcard else cf.record_name


def failover_bound_seconds(settings: EntrypointSettings) -> int:
    """Worst-case seconds from a node's death until resolvers return a live node's address.

    The record always points at the node running the updater (it publishes its own egress
    address). When that node dies: ``NODE_MONITOR_GRACE_SECONDS`` until the node is marked
    NotReady and tainted, ``toleration_seconds`` until the pod is evicted and rescheduled on
    another ingress node, then one ``update_interval_seconds`` (the updater also updates on
    start; the interval covers pod start-up and one failed first attempt), then the record's
    ``ttl`` for cached answers to expire. A proxied record has no client-visible TTL to wait
    for (Cloudflare's edge follows the origin change). Resolvers that cap TTLs upward are not
    covered.
    """
    cf = settings.cloudflare
    if cf is None:
        raise ValueError("no cloudflare record: there is no DNS failover to bound")
    eviction = NODE_MONITOR_GRACE_SECONDS + settings.updater.toleration_seconds
    ttl = 0 if cf.proxied else cf.ttl
    return eviction + settings.updater.update_interval_seconds + ttl

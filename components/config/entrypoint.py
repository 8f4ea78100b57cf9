"""The ``multicloud:entrypoint`` stack config: Cloudflare record, DNS updater, cluster services.

Every image and chart is pinned to an exact version; validators name the offending key.
The failover budget over these settings is ``components/config/failover.py``.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from components.config.model import Bool, ConfigModel, Int, dns_name_problem, printable

# favonia/cloudflare-ddns 1.17.0 (tagged 2026-07-28), the newest release and so the only
# supported one (docs/SECURITY.md, "Supported Versions"). Its README "All Settings" still reads
# every variable workloads.py sets (internal/config/config_read.go ``ReadEnv``); 1.15.0 was the
# first with the CLOUDFLARE_* names, 1.15.1 the first with cloudflare.trace on api.cloudflare.com.
DEFAULT_UPDATER_IMAGE = "favonia/cloudflare-ddns:1.17.0"
# jetstack/cert-manager, per engine (cert-manager/website content/docs/releases/README.md,
# 2026-08-22): v1.21 supports Kubernetes 1.33 to 1.36, so RKE2's 1.35; no supported release
# covers RKE's 1.30, and RKE keeps v1.18.6, the last patch of the newest release whose range
# (1.29 to 1.33) holds 1.30 (end of life 2026-03-10). docs/operations.md says why.
DEFAULT_CERT_MANAGER_CHART = "v1.21.1"
DEFAULT_CERT_MANAGER_CHART_RKE = "v1.18.6"
# longhorn/longhorn 1.12.1: Kubernetes >= 1.25 (chart/Chart.yaml kubeVersion; longhorn/website
# content/docs/1.12.1/deploy/install), so both engines; 1.12 is an active line (README.md).
DEFAULT_LONGHORN_CHART = "1.12.1"
DEFAULT_APP_IMAGE = "traefik/whoami:v1.10.3"

# Record TTLs, from the dns_record resource of terraform-provider-cloudflare v5 (what
# pulumi-cloudflare 6.x bridges): internal/services/dns_record/schema.go describes ttl as "Setting
# to 1 means 'automatic'. Value must be between 60 and 86400, with the minimum reduced to 30 for
# Enterprise zones", and resource.go Create refuses `proxied` with any ttl but 1.
PROXIED_TTL = 1
MIN_TTL = 60
MAX_TTL = 86400
DEFAULT_TTL = 60

_ZONE_ID = re.compile(r"^[0-9a-f]{32}$")
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})+$")
_EMAIL = re.compile(rf"^[!-?A-~]+@{_LABEL}(\.{_LABEL})+$")  # printable ASCII, then a domain
_SEMVER = r"\d+\.\d+\.\d+"
_MOVING_TAGS = {"latest", "edge", "main", "master", "stable"}


def _short_enough(name: str, field: str) -> str:
    """``name`` if DNS can hold it (see ``dns_name_problem``)."""
    problem = dns_name_problem(name)
    if problem:
        raise ValueError(f"{field} {printable(name)!r} is too long for DNS: {problem}")
    return name


# An image reference as the container runtimes parse it (distribution/reference's grammar,
# reference/regexp.go): [registry[:port]/]path[:tag][@sha256:digest].
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_REGISTRY = rf"(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})*(?::[0-9]+)?/)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"(?P<name>{_REGISTRY}{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?P<digest>@sha256:[0-9a-f]{64})?"
)


def _pinned_image(value: str, field: str) -> str:
    """An image reference with an explicit, non-moving tag (or a digest)."""
    match = _IMAGE.fullmatch(value)
    if not match or len(value) > 255:
        raise ValueError(
            f"{field} must be an image reference such as 'repo/image:1.2.3' "
            f"(got {printable(value)!r})"
        )
    if match["digest"]:
        return value
    tag = match["tag"]
    if tag is None:
        raise ValueError(f"{field} must pin a tag, e.g. 'repo/image:1.2.3' (got {value!r})")
    if tag in _MOVING_TAGS or not re.fullmatch(rf"v?{_SEMVER}([-.+][0-9A-Za-z.-]+)?", tag):
        raise ValueError(f"{field} must pin an exact version tag like 1.2.3 (got {tag!r})")
    return value


class CloudflareSettings(ConfigModel):
    """The zone and the A record that is the cluster's public entrypoint."""

    zone_id: str = Field(description="Cloudflare zone id (32 lowercase hex characters).")
    zone: str = Field(description="The zone's domain, e.g. example.com.")
    record_name: str = Field(
        description=(
            "The A record the updater keeps on a live ingress node: a lowercase FQDN inside "
            "zone, optionally *.<name> (a wildcard)."
        )
    )
    proxied: Bool = Field(
        False,
        description=(
            "Proxy the record through Cloudflare: visitors resolve Cloudflare's addresses, which "
            "never change, and Cloudflare's edge follows the record. Only HTTP(S) on Cloudflare's "
            "ports passes; the TTL is Cloudflare's (1, automatic)."
        ),
    )
    ttl: Int | None = Field(
        None,
        description=(
            "TTL in seconds of a DNS-only record: 60 to 86400 (Cloudflare's range outside "
            "Enterprise zones), default 60. Leave it out for a proxied record."
        ),
    )
    edge_propagation_seconds: Int = Field(
        10,
        ge=0,
        le=300,
        description=(
            "Proxied records only: allowance for Cloudflare to carry a record change to its "
            "edge (Cloudflare says its configuration reaches every location within seconds)."
        ),
    )

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, value: int | None, info: ValidationInfo) -> int | None:
        if info.data.get("proxied"):
            if value not in (None, PROXIED_TTL):
                raise ValueError(
                    f"a proxied record's TTL is Cloudflare's ({PROXIED_TTL}, automatic; the "
                    f"provider refuses any other): remove ttl, or set proxied: false (got {value})"
                )
            return value
        if value is not None and not MIN_TTL <= value <= MAX_TTL:
            hint = " (1, automatic, is 300 s for a DNS-only record: write 300)"
            raise ValueError(
                f"a DNS-only record's TTL must be {MIN_TTL} to {MAX_TTL} seconds"
                f"{hint if value == 1 else ''} (got {value})"
            )
        return value

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
            raise ValueError(
                f"cloudflare.zone must be a domain like example.com (got {printable(value)!r})"
            )
        return _short_enough(value, "cloudflare.zone")

    @field_validator("record_name")
    @classmethod
    def _record_name(cls, value: str) -> str:
        base = value.removeprefix("*.")
        if not _DOMAIN.fullmatch(base):
            raise ValueError(
                "cloudflare.recordName must be a lowercase FQDN without trailing dot, "
                f"optionally starting with '*.' (got {printable(value)!r})"
            )
        return _short_enough(value, "cloudflare.recordName")

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
    def record_ttl(self) -> int:
        """The TTL the record is created with: 1 (automatic) when proxied, else the DNS TTL."""
        if self.proxied:
            return PROXIED_TTL
        return self.ttl if self.ttl is not None else DEFAULT_TTL

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

    enabled: Bool = Field(
        True, description="Run the DNS updater (needs cloudflare): the record follows a live node."
    )
    image: str = Field(
        DEFAULT_UPDATER_IMAGE,
        description="favonia/cloudflare-ddns image with an exact tag, 1.15.0 or a later 1.x.",
    )
    update_interval_seconds: Int = Field(
        60,
        ge=10,
        le=3600,
        description=(
            "UPDATE_CRON '@every <n>s': how often the updater re-checks its node's address, so "
            "also how long a failed update waits for its retry. A new updater updates at once."
        ),
    )
    toleration_seconds: Int = Field(
        30,
        ge=0,
        le=3600,
        description=(
            "tolerationSeconds of the updater for the node.kubernetes.io/not-ready and "
            "unreachable NoExecute taints: how long it stays on a node once that is tainted."
        ),
    )
    startup_seconds: Int = Field(
        20,
        ge=1,
        le=600,
        description=(
            "Allowance from the eviction of the updater's pod to its replacement's first "
            "update: scheduling, image pull, start, address detection, Cloudflare API calls."
        ),
    )

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        _pinned_image(value, "updater.image")
        if not value.startswith(("favonia/cloudflare-ddns:", "ghcr.io/favonia/cloudflare-ddns:")):
            raise ValueError(
                "updater.image must be favonia/cloudflare-ddns:<version>: its environment "
                f"variables are what workloads.py sets (got {value!r})"
            )
        # The settings workloads.py passes hold from 1.15.0, the first release reading
        # CLOUDFLARE_API_TOKEN (README "All Settings" at v1.17.0, which keeps the variable names
        # "until version 2.0.0"); a 2.x release may rename them and has not been checked.
        match = _IMAGE.fullmatch(value)
        version = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)", (match["tag"] or "") if match else "")
        if version and not (1, 15, 0) <= tuple(map(int, version.groups())) < (2, 0, 0):
            raise ValueError(
                "updater.image must be favonia/cloudflare-ddns 1.15.0 or a later 1.x release "
                "(older ones ignore CLOUDFLARE_API_TOKEN; 2.x is not checked against "
                f"workloads.py); got {value!r}, the default is {DEFAULT_UPDATER_IMAGE!r}"
            )
        return value


class CertManagerSettings(ConfigModel):
    """cert-manager from the jetstack chart plus Let's Encrypt ClusterIssuers."""

    enabled: Bool = Field(True, description="Install cert-manager and Let's Encrypt issuers.")
    chart_version: str | None = Field(
        None,
        description=(
            f"jetstack/cert-manager chart, v1.15.0 or later; default {DEFAULT_CERT_MANAGER_CHART} "
            f"with engine rke2, {DEFAULT_CERT_MANAGER_CHART_RKE} with rke (docs/operations.md). "
            "A running cluster moves one minor at a time."
        ),
    )
    email: str | None = Field(None, description="Let's Encrypt ACME account contact.")
    issuer: Literal["staging", "production"] = Field(
        "production", description="The ClusterIssuer the example app's certificate comes from."
    )
    solver: Literal["http01", "dns01"] = Field(
        "http01",
        description=(
            "ACME challenge: http01 through the ingress (port 80 must reach it; behind a proxied "
            "record see docs/entrypoint.md), or dns01 with a second token scoped to "
            "cloudflare.zone like the updater's (works behind the proxy; needs cloudflare)."
        ),
    )

    @field_validator("chart_version")
    @classmethod
    def _chart_version(cls, value: str | None) -> str | None:
        if value is None:
            return value
        match = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", value)
        if not match:
            raise ValueError(f"certManager.chartVersion must look like v1.21.1 (got {value!r})")
        if (int(match[1]), int(match[2])) < (1, 15):
            raise ValueError(
                f"certManager.chartVersion must be v1.15.0 or later (crds.enabled; got {value!r})"
            )
        return value

    def chart_for(self, default: str) -> str:
        """The chart version to deploy: the configured one, else the engine's ``default``
        (``EngineFacts.cert_manager_chart``)."""
        return self.chart_version if self.chart_version is not None else default

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.fullmatch(value):
            raise ValueError(
                f"certManager.email is not an email address such as ops@example.com "
                f"(got {printable(value)!r})"
            )
        if value is not None:
            _short_enough(value.split("@")[1], "certManager.email")
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

    enabled: Bool = Field(True, description="Install Longhorn as the default StorageClass.")
    chart_version: str | None = Field(
        None,
        description=(
            f"longhorn/longhorn chart; default {DEFAULT_LONGHORN_CHART}. A running cluster moves "
            "one minor at a time and never back (docs/operations.md)."
        ),
    )
    replicas: Int | None = Field(
        default=None, ge=1, le=10, description="Replicas per volume; default one per site, max 3."
    )

    @field_validator("chart_version")
    @classmethod
    def _chart_version(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(_SEMVER, value):
            raise ValueError(f"longhorn.chartVersion must look like 1.12.1 (got {value!r})")
        return value

    @property
    def chart(self) -> str:
        """The chart version to deploy: the configured one, else the default."""
        return self.chart_version or DEFAULT_LONGHORN_CHART


class AppSettings(ConfigModel):
    """A small example web app behind the RKE nginx ingress."""

    enabled: Bool = Field(True, description="Deploy the example app.")
    image: str = Field(DEFAULT_APP_IMAGE, description="The app's image, with an exact tag.")
    host: str | None = Field(
        None,
        description="The app's host; default app.<record> for a wildcard record, else the record.",
    )

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        return _pinned_image(value, "app.image")

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        if value is not None and not _DOMAIN.fullmatch(value):
            raise ValueError(f"app.host must be a lowercase FQDN (got {printable(value)!r})")
        return value if value is None else _short_enough(value, "app.host")


class EntrypointSettings(ConfigModel):
    """``multicloud:entrypoint``: everything about how the world reaches the cluster."""

    cloudflare: CloudflareSettings | None = Field(
        None, description="The public record; leave out for a cluster without one (behind NAT)."
    )
    updater: UpdaterSettings = Field(UpdaterSettings(), description="The DNS updater.")
    cert_manager: CertManagerSettings = Field(
        CertManagerSettings(enabled=False), description="cert-manager (opt-in: needs an email)."
    )
    longhorn: LonghornSettings = Field(LonghornSettings(), description="Longhorn storage.")
    app: AppSettings = Field(AppSettings(), description="The example app.")
    failover_bound_seconds: Int | None = Field(
        90,
        ge=1,
        le=86400,
        description=(
            "Refuse the stack when the computed worst case for traffic to leave a dead ingress "
            "site exceeds this many seconds (make render prints the terms); null: no bound."
        ),
    )

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

    @model_validator(mode="after")
    def _dns01_needs_the_zone(self) -> EntrypointSettings:
        cm = self.cert_manager
        if cm.enabled and cm.solver == "dns01" and self.cloudflare is None:
            raise ValueError(
                "certManager.solver: dns01 needs cloudflare (its token is scoped to that zone); "
                "use http01 without a Cloudflare zone"
            )
        return self

    @property
    def app_host(self) -> str:
        if self.app.host:
            return self.app.host
        cf = self.cloudflare
        assert cf is not None  # validation requires app.host without a record
        return f"app.{cf.record_base}" if cf.wildcard else cf.record_name

"""The ``multicloud:sites`` entries: one model per cloud, sharing ``SiteBase``."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from components.config.model import Bool, Cidr, ConfigModel, Int, Name, check_https_url, printable
from components.nodes import INGRESS_MODES, IngressMode


def _ingress_mode(value: Any) -> Any:
    # `ingress: true/false` was the setting before public and LAN ingress were split.
    if isinstance(value, bool):
        raise ValueError(
            f"expected one of {' | '.join(INGRESS_MODES)}, got the boolean {value}: "
            "'public' runs the ingress controller and takes public 80/443 (what true meant), "
            "'private' runs it for the site's LAN only (lanCidr), 'none' runs none "
            "(what false meant)"
        )
    return value


Count = Annotated[Int, Field(ge=0)]
Ingress = Annotated[IngressMode, BeforeValidator(_ingress_mode)]
# Cinder's largest volume size in GiB (cinder/api/validation/parameter_types.py,
# volume_size: "maximum": constants.DB_MAX_INT), which Nova's boot-from-volume hands on.
MAX_VOLUME_GB = 2**31 - 1
# DigitalOcean slugs (regions nyc1, sizes s-2vcpu-4gb, images debian-12-x64) and the
# UUID of a VPC.
DO_SLUG = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class OpenStackAuth(ConfigModel):
    """Explicit OpenStack auth; the password or application-credential secret comes
    from the secret config key ``<site>OpenstackSecret``."""

    auth_url: str = Field(
        description="Keystone URL, e.g. https://cloud.example.com:5000/v3; https only (the "
        "password or application credential secret is sent to it)."
    )
    user_name: Name | None = Field(
        None, description="User for password auth (exclusive with applicationCredentialId)."
    )
    project_name: Name | None = Field(
        None, description="Project to scope to; password auth needs it."
    )
    user_domain_name: Name | None = Field(None, description="Domain of the user (password auth).")
    project_domain_name: Name | None = Field(None, description="Domain of the project.")
    application_credential_id: Name | None = Field(
        None, description="Application credential id; its secret is `<site>OpenstackSecret`."
    )

    @field_validator("auth_url")
    @classmethod
    def _auth_url(cls, value: str) -> str:
        return check_https_url(
            value,
            "https://cloud.example.com:5000/v3",
            "the OpenStack password or application credential secret goes to",
        )

    @model_validator(mode="after")
    def _one_identity(self) -> OpenStackAuth:
        if bool(self.user_name) == bool(self.application_credential_id):
            raise ValueError(
                "set exactly one of userName (password auth) or applicationCredentialId"
            )
        if self.user_name and not self.project_name:
            raise ValueError("password auth needs projectName")
        return self


class SiteBase(ConfigModel):
    site_id: Int = Field(
        ge=1,
        description="The site's /24 block of the overlay (siteId 2 -> 10.147.2.0/24); never "
        "change or reuse it: every node address derives from it.",
    )
    masters: Count = Field(
        0,
        description="Number of masters (RKE controlplane + etcd) in this site; the total "
        "must be odd, with no site holding a majority.",
    )
    workers: Count = Field(0, description="Number of workers (RKE worker role) in this site.")
    ingress: Ingress = Field(
        default="none",
        description=(
            "`public`: the site's workers run the ingress controller and take public 80/443 "
            "(firewall open to the world, or to Cloudflare's ranges only when the record is "
            "proxied; DNS record target, DNS updater); `private`: they "
            "run it for the site's LAN only (80/443 from `lanCidr`); `none`: no controller."
        ),
    )
    ssh_via: Literal["public", "private", "overlay"] = Field(
        default="public",
        description=(
            "Which address RKE and the readiness gates SSH to: `public`, `private` (the LAN "
            "address; the deployer sits on this site's LAN) or `overlay` (refused by the RKE "
            "v1 engine: kubelet would get no --node-ip)."
        ),
    )
    lan_cidr: Cidr | None = Field(
        default=None,
        description=(
            "The site's LAN (for DigitalOcean: its VPC's IP range): nodes' private addresses "
            "live there; the deployer on it reaches `sshVia: private` nodes from it. A "
            "private range (RFC 1918, or IPv6 unique local fc00::/7): the firewall opens SSH, "
            "the API and LAN ingress to all of it."
        ),
    )

    @property
    def has_public_address(self) -> bool:
        raise NotImplementedError

    def size_for(self, kind: str) -> str:
        raise NotImplementedError


class OpenStackSiteConfig(SiteBase):
    kind: Literal["openstack"] = Field(description="The site's cloud: an OpenStack.")
    cloud: Name | None = Field(
        None, description="Entry of clouds.yaml holding the credentials (exclusive with auth)."
    )
    auth: OpenStackAuth | None = Field(
        None, description="Explicit credentials instead of a clouds.yaml entry."
    )
    region: Name | None = Field(None, description="OpenStack region, if the cloud has several.")
    image: Name = Field(description="Image name for every VM (Debian 12), e.g. debian-12.")
    flavor: Name = Field(description="Flavor of every VM unless masterFlavor/workerFlavor say.")
    master_flavor: Name | None = Field(None, description="Flavor of masters (default: flavor).")
    worker_flavor: Name | None = Field(None, description="Flavor of workers (default: flavor).")
    network: Name = Field(description="Name of the network the VMs' ports are on.")
    network_is_public: Bool = Field(
        False, description="The network's addresses are public (no floating IP needed)."
    )
    floating_ip_pool: Name | None = Field(
        None, description="Pool to give each VM a floating (public) IP from."
    )
    boot_volume_gb: Int | None = Field(
        default=None,
        ge=10,
        le=MAX_VOLUME_GB,
        description="Boot from a volume of this size instead of the flavor's disk.",
    )
    address_groups: Bool = Field(
        False,
        description=(
            "The cloud has Neutron address groups (`openstack extension show address-group` "
            "and `security-groups-remote-address-group`): a range list such as Cloudflare's "
            "(a proxied record) becomes one address group and one rule per port instead of "
            "one rule per range and port."
        ),
    )
    security_group_rule_quota: Int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,  # neutron/db/quota/models.py Quota.limit: an sa.Integer column
        description=(
            "The project's security-group rule quota (`openstack quota show -c "
            "secgroup-rules`), less what other stacks there use: the preflight refuses a "
            "plan that needs more (the program's rules plus the ones Neutron adds to each "
            "group). Unset: not checked, a warning above Neutron's default of 100."
        ),
    )

    @model_validator(mode="after")
    def _one_auth(self) -> OpenStackSiteConfig:
        if (self.cloud is None) == (self.auth is None):
            raise ValueError(
                "set exactly one of cloud (an entry of clouds.yaml) or auth (explicit credentials)"
            )
        return self

    @property
    def has_public_address(self) -> bool:
        return self.network_is_public or self.floating_ip_pool is not None

    def size_for(self, kind: str) -> str:
        specific = self.master_flavor if kind == "master" else self.worker_flavor
        return specific or self.flavor


class DigitalOceanSiteConfig(SiteBase):
    kind: Literal["digitalocean"] = Field(description="The site's cloud: DigitalOcean.")
    region: str = Field(description="Droplet region slug, e.g. nyc1.")
    size: str = Field(description="Droplet size slug of every VM unless masterSize/workerSize say.")
    master_size: str | None = Field(None, description="Droplet size of masters (default: size).")
    worker_size: str | None = Field(None, description="Droplet size of workers (default: size).")
    image: str = Field(description="Droplet image slug (Debian 12), e.g. debian-12-x64.")
    vpc_uuid: str | None = Field(
        None, description="VPC to put the droplets in (default VPC if unset)."
    )

    @field_validator("region", "size", "master_size", "worker_size", "image")
    @classmethod
    def _slug(cls, value: str | None) -> str | None:
        if value is not None and not DO_SLUG.fullmatch(value):
            raise ValueError(
                f"{printable(value)!r} is not a DigitalOcean slug such as nyc1, s-2vcpu-4gb "
                "or debian-12-x64 (lower-case letters, digits, '.', '_' and '-')"
            )
        return value

    @field_validator("vpc_uuid")
    @classmethod
    def _vpc(cls, value: str | None) -> str | None:
        if value is not None and not UUID.fullmatch(value):
            raise ValueError(
                f"{printable(value)!r} is not a VPC id: expected its lower-case UUID as "
                "`doctl vpcs list` prints it"
            )
        return value

    @property
    def has_public_address(self) -> bool:
        return True

    def size_for(self, kind: str) -> str:
        specific = self.master_size if kind == "master" else self.worker_size
        return specific or self.size


SiteConfig = Annotated[OpenStackSiteConfig | DigitalOceanSiteConfig, Field(discriminator="kind")]

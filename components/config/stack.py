"""The typed, validated stack config: the only module that reads ``pulumi.Config``.

``parse_config`` is pure (plain values in, ``ClusterConfig`` out) and raises
``ConfigError`` naming the key path and what was expected. ``load_config`` reads
the stack through Pulumi, wraps every secret as a Pulumi secret at once, and turns
a ``ConfigError`` into ``pulumi.RunError`` so the CLI prints the message without a
stack trace, before any resource is registered.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
import typing
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pulumi
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from components.config.deployer import Deployer, DeployerSettings
from components.config.entrypoint import (
    EntrypointSettings,
    FailoverBudget,
    IngressSite,
    failover_budget,
)
from components.config.model import (
    NAMESPACE,
    Bool,
    Cidr,
    CidrList,
    ConfigError,
    ConfigModel,
    Int,
    Name,
    check_https_url,
    fail,
    invisible_character,
    printable,
)
from components.config.ranges import check_address_ranges
from components.nodes import INGRESS_MODES, IngressMode, NodeSpec
from components.overlay.addressing import MAX_MASTERS, MAX_WORKERS, overlay_address, site_blocks
from components.preflight import NetworkPlan, plan_network, require_reachable
from rke import releases as rke_releases
from rke.engine import ENGINE, ssh_via_problem
from components.config.cluster import RUNNER_MAX_ETCD_MEMBERS, RUNNER_MAX_NODES, RkeSettings
from rke2.release import supported_versions as rke2_versions

ENGINES = ("rke", "rke2")
DEFAULT_KUBERNETES_VERSION = "v1.30.14-rancher1-1"  # the RKE engine's default
# The versions the last RKE release ships (reference/rke-releases.json, read by
# rke.releases; the runner checks `rke --version` against the same data). The 1.31/1.32
# builds need RKE's paid extended-life subscription.
RKE_KUBERNETES_VERSIONS = rke_releases.supported_kubernetes_versions()
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
K8S_VERSION = re.compile(r"^v1\.\d+\.\d+-rancher\d+-\d+$")
SSH_KEY = re.compile(
    r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)|sk-ssh-ed25519@openssh\.com)"
    r" ([A-Za-z0-9+/]+={0,3})(?: (.*))?"
)
# OpenSSH (9.1 and later, Debian 12 ships 9.2) refuses RSA keys under 1024 bits:
# RequiredRSASize's default is SSH_RSA_MINIMUM_MODULUS_SIZE (ssh.h, sshd_config(5)).
MIN_RSA_BITS = 1024
# useradd's rule for a user name (shadow's is_valid_user_name, libmisc/chkname.c): a
# lower-case letter or '_', then letters, digits, '_' and '-', at most 32 characters.
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# Accounts and groups a Debian 12 node already has: every name of base-passwd 3.6's
# passwd.master and group.master, the groups systemd 252's sysusers.d creates
# (basic.conf.in), the daemons' of the cloud image (sshd, systemd, D-Bus, polkit) and of
# what the bootstrap installs (zerotier-one, docker, etcd, containerd). cloud-init would
# give SSH to the daemon's identity, or fail to create the user (useradd refuses a name
# whose group exists). root is refused as before: the deployer logs in as an
# unprivileged user. Names starting with '_' are system accounts by Debian's convention.
SYSTEM_ACCOUNTS = frozenset(
    (
        *("root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news"),
        *("uucp", "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody"),
        *("nogroup", "adm", "tty", "disk", "kmem", "dialout", "fax", "voice", "cdrom"),
        *("floppy", "tape", "sudo", "audio", "dip", "operator", "src", "shadow", "utmp"),
        *("video", "sasl", "plugdev", "staff", "users", "input", "kvm", "render", "sgx"),
        *("netdev", "crontab", "ssh", "_ssh", "messagebus", "sshd", "polkitd", "tss"),
        *("uuidd", "tcpdump", "systemd-network", "systemd-resolve", "systemd-timesync"),
        *("systemd-journal", "systemd-coredump", "systemd-oom", "docker", "etcd"),
        *("zerotier-one", "containerd", "iscsi", "statd", "_rpc", "rpc", "ntp", "_chrony"),
    )
)


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
# Wider than this is "the world" for adminCidrs and deployer.sourceCidrs: a /8 is the
# largest block one organisation holds (a legacy class A), a /32 is an ISP's usual
# IPv6 allocation (RIR minimum for an LIR).
WIDEST_ADMIN_PREFIX = {4: 8, 6: 32}


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


class ClusterSettings(ConfigModel):
    """Every non-secret key of the stack, validated field by field."""

    cluster_name: str = Field(min_length=1, max_length=24)
    engine: Literal["rke", "rke2"] = Field(
        "rke",
        description="what installs Kubernetes: 'rke' (RKE v1 over SSH, the default) or 'rke2' "
        "(each node installs the pinned RKE2 from cloud-init; see docs/rke2.md)",
    )
    kubernetes_version: str = Field(
        "",
        description="the engine's version string; empty takes the engine's default "
        f"({DEFAULT_KUBERNETES_VERSION} for rke, the pinned RKE2 release for rke2)",
    )
    overlay_cidr: Cidr = "10.147.0.0/16"
    ssh_user: str = "rke"
    ssh_public_key: str
    admin_cidrs: CidrList = Field(
        min_length=1,
        description=(
            "Ranges allowed to reach SSH (22) and the Kubernetes API (6443) on public "
            "addresses; the deployer's default public sources. Wider than a /8 (IPv6: /32) "
            "only with `allowWideAdminCidrs`."
        ),
    )
    masters_schedulable: Bool = False
    rebuild: list[str] = Field(default_factory=list)
    zerotier_network_id: str | None = None
    zerotier_central_url: str = Field(
        default="https://api.zerotier.com/api/v1",
        description="ZeroTier Central API base URL; https only (the Central token is sent with "
        "every request).",
    )
    sites: dict[str, SiteConfig] = Field(
        min_length=1,
        description="The sites by name (a DNS label of at most 20 characters): where the nodes "
        "run and how many.",
    )
    rke: RkeSettings = Field(
        default_factory=RkeSettings, description="Kubernetes networking, etcd, ingress, upgrades."
    )
    entrypoint: EntrypointSettings | None = Field(
        None,
        description="How the world reaches the cluster: the DNS record, its updater and the "
        "in-cluster services; unset: none of them.",
    )
    deployer: DeployerSettings | None = Field(
        default=None,
        description=(
            "Where the machine running `pulumi up` sits (see docs/network.md). Unset: on the "
            "LAN of the one site with `sshVia: private`, reaching public addresses from "
            "`adminCidrs`."
        ),
    )
    overlay_mtu: Int | None = Field(
        default=None,
        ge=1280,
        le=10000,
        description=(
            "MTU of the ZeroTier network (ZeroTier allows 1280..10000). Unset: a created "
            "network gets ZeroTier's default 2800 and an adopted one keeps its own."
        ),
    )
    allow_wide_admin_cidrs: Bool = Field(
        default=False,
        description=(
            "Accept `adminCidrs` or `deployer.sourceCidrs` wider than a /8 (IPv6: /32), such "
            "as 0.0.0.0/0: SSH and the Kubernetes API then face the internet."
        ),
    )

    @field_validator("cluster_name")
    @classmethod
    def _cluster_name(cls, value: str) -> str:
        if not DNS_LABEL.fullmatch(value):
            raise ValueError("expected a DNS-1123 label: lower-case letters, digits and '-'")
        return value

    @model_validator(mode="after")
    def _k8s_version(self) -> ClusterSettings:
        """``kubernetesVersion`` in the chosen engine's format, defaulted per engine."""
        value = self.kubernetes_version
        if self.engine == "rke2":
            supported = rke2_versions()
            if not value:
                object.__setattr__(self, "kubernetes_version", supported[0])
                return self
            if K8S_VERSION.fullmatch(value):
                raise ValueError(
                    f"kubernetesVersion: {value} is an RKE (v1) version, but engine is rke2; "
                    f"expected {' or '.join(supported)} (or remove the key for the default)"
                )
            if value not in supported:
                raise ValueError(
                    f"kubernetesVersion: {value} is not an RKE2 release this project verified; "
                    f"expected one of {', '.join(supported)} (reference/rke2-release.json)"
                )
            return self
        if not value:
            object.__setattr__(self, "kubernetes_version", DEFAULT_KUBERNETES_VERSION)
            return self
        if not K8S_VERSION.fullmatch(value):
            raise ValueError(
                f"kubernetesVersion: expected an RKE version such as {DEFAULT_KUBERNETES_VERSION}"
            )
        if value not in RKE_KUBERNETES_VERSIONS:
            raise ValueError(
                f"kubernetesVersion: RKE {rke_releases.latest().name} does not ship {value}; "
                f"expected one of {', '.join(RKE_KUBERNETES_VERSIONS)}"
            )
        return self

    @field_validator("overlay_cidr")
    @classmethod
    def _overlay(cls, value: str) -> str:
        network = ipaddress.ip_network(value)
        if network.version != 4 or site_blocks(network) < 1:
            raise ValueError("expected an IPv4 network of /23 or larger (one /24 per site)")
        return value

    @field_validator("ssh_user")
    @classmethod
    def _ssh_user(cls, value: str) -> str:
        if not USER_NAME.fullmatch(value):
            raise ValueError(
                f"{printable(value)!r} is not a Linux user name: expected a lower-case letter, "
                "then lower-case letters, digits, '_' and '-', at most 32 characters "
                "(useradd's rule), e.g. rke"
            )
        if value in SYSTEM_ACCOUNTS or value.startswith(("_", "systemd-")):
            raise ValueError(
                f"{value!r} is {'root' if value == 'root' else 'a system account or group'} "
                "on Debian nodes: the key would log in as it, or cloud-init would fail to "
                "create it; pick a user of its own such as rke"
            )
        return value

    @field_validator("ssh_public_key")
    @classmethod
    def _ssh_key(cls, value: str) -> str:
        match = SSH_KEY.fullmatch(value.strip())
        if not match:
            raise ValueError(
                "expected one OpenSSH public key line such as 'ssh-ed25519 AAAA... me@host' "
                "(a key type, its base64 body, an optional comment)"
            )
        problem = invisible_character(match.group(3) or "")
        if problem:  # authorized_keys is line-based: a newline would start another key
            raise ValueError(f"in the key's comment, {problem}: remove it")
        key_type, body = match.group(1), match.group(2)
        # The body is the wire encoding (RFC 4253 6.6): a length-prefixed copy of the key
        # type, then the key's own fields. cryptography parses and checks all of it.
        try:
            blob = base64.b64decode(body + "=" * (-len(body) % 4))
        except binascii.Error:
            raise ValueError(
                "the key's base64 body does not decode: paste the .pub file's line as "
                "ssh-keygen wrote it"
            ) from None
        inner = blob[4 : 4 + int.from_bytes(blob[:4], "big")] if len(blob) >= 4 else b""
        if inner != key_type.encode():
            raise ValueError(
                f"the key's body does not match its type: it says {key_type} but holds "
                f"{inner[:40].decode('ascii', 'replace')!r}; paste the .pub file's line as "
                "ssh-keygen wrote it"
            )
        try:
            key = serialization.load_ssh_public_key(f"{key_type} {body}".encode())
        except (ValueError, UnsupportedAlgorithm) as err:
            raise ValueError(
                f"the key's body is not a valid {key_type} key ({err}): paste the .pub file's "
                "line as ssh-keygen wrote it"
            ) from None
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
            raise ValueError(
                f"a {key.key_size}-bit RSA key: the nodes' sshd refuses RSA keys under "
                f"{MIN_RSA_BITS} bits (RequiredRSASize); use ssh-keygen -t ed25519"
            )
        return value.strip()

    @field_validator("zerotier_central_url")
    @classmethod
    def _central_url(cls, value: str) -> str:
        return check_https_url(
            value,
            "https://api.zerotier.com/api/v1",
            "the Central API token goes to (the preflight's zerotier-central row)",
            port=False,
        )

    @field_validator("zerotier_network_id")
    @classmethod
    def _nwid(cls, value: str | None) -> str | None:
        if value == "":  # Pulumi.yaml's default: create a network
            return None
        if value is not None and not re.fullmatch(r"[0-9a-f]{16}", value):
            raise ValueError("expected 16 lower-case hex digits")
        return value


@dataclass(frozen=True)
class Secrets:
    """Every secret the program uses, as Pulumi secrets (None where not configured)."""

    zerotier_token: pulumi.Output[str]
    ssh_private_key: pulumi.Output[str]
    digitalocean_token: pulumi.Output[str] | None = None
    cloudflare_api_token: pulumi.Output[str] | None = None
    etcd_s3_access_key: pulumi.Output[str] | None = None
    etcd_s3_secret_key: pulumi.Output[str] | None = None
    openstack: Mapping[str, pulumi.Output[str]] | None = None


@dataclass(frozen=True)
class ClusterConfig:
    """The validated stack: settings, node specs, the resolved deployer and the network plan
    (each site's firewall policy and the reachability table, see ``components.preflight``)."""

    settings: ClusterSettings
    nodes: tuple[NodeSpec, ...]
    deployer: Deployer
    network: NetworkPlan

    def site_nodes(self, site: str) -> tuple[NodeSpec, ...]:
        return tuple(node for node in self.nodes if node.site == site)


# Secret keys every stack must set: declared in Pulumi.yaml with `secret: true` and
# no default, so the CLI refuses a plaintext or missing value.
DECLARED_SECRETS = ("zerotierToken", "sshPrivateKey")
# Secret keys only some stacks need. Declaring them in Pulumi.yaml would make every
# stack set them (a declared key without a default is required, and a secret key
# cannot carry a default), so they are checked here instead: required when the
# feature is used, and refused when not set with --secret.
CONDITIONAL_SECRETS = (
    "digitaloceanToken",
    "cloudflareApiToken",
    "etcdS3AccessKey",
    "etcdS3SecretKey",
)
SCALAR_KEYS = (
    "clusterName",
    "engine",
    "kubernetesVersion",
    "overlayCidr",
    "sshUser",
    "sshPublicKey",
    "mastersSchedulable",
    "zerotierNetworkId",
    "zerotierCentralUrl",
    "overlayMtu",
    "allowWideAdminCidrs",
)
OBJECT_KEYS = ("sites", "adminCidrs", "rebuild", "rke", "entrypoint", "deployer")


def openstack_secret_key(site: str) -> str:
    return f"{_camel(site)}OpenstackSecret"


def _camel(name: str) -> str:
    head, *rest = name.split("-")
    return head + "".join(part.capitalize() for part in rest)


# What pydantic adds to an error's location for the member of a union it tried
# (`int | str`: "int", "str", "function-before[_whole_number(), int]").
_UNION_MEMBER = re.compile(r"str|int|float|bool|none|[a-z-]+\[.*\]")


def _location(loc: Sequence[int | str]) -> str:
    """Pydantic's error location as the key path a person types with --path."""
    parts: list[str] = []
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
            continue
        # the discriminated union puts the kind tag after the site name; drop it
        if i == 2 and loc[0] == "sites" and item in ("openstack", "digitalocean"):
            continue
        if i > 0 and not (i == 1 and loc[0] == "sites") and _UNION_MEMBER.fullmatch(item):
            continue  # a union member's tag, not a key
        parts.append(("." if parts else "") + item)
    return "".join(parts)


def _format(err: ValidationError) -> str:
    lines: list[str] = []
    for issue in err.errors():
        path = _location(issue["loc"])
        message = issue["msg"].removeprefix("Value error, ")
        key = re.match(r"^([a-zA-Z]+): ", message)
        if not path and key:  # a whole-model check names its key first
            path, message = key.group(1), message[key.end() :]
        item = re.match(r"^(\[\d+\]): ", message)
        if item:  # a whole-list check names the entry
            path, message = path + item.group(1), message[item.end() :]
        if issue["type"] == "extra_forbidden":
            message = "unknown key (check its spelling against docs/config-reference.md)"
        elif issue["type"] == "union_tag_invalid":
            path += ".kind"
            message = "expected 'openstack' or 'digitalocean'"
        elif issue["type"] == "union_tag_not_found":
            path += ".kind"
            message = "missing: expected 'openstack' or 'digitalocean'"
        elif issue["type"] == "missing":
            message = "missing: this key is required"
        if not any(line.startswith(f"{NAMESPACE}:{path}: ") for line in lines):
            lines.append(f"{NAMESPACE}:{path}: {message}")  # a union's first member speaks
    return "invalid stack config:\n  " + "\n  ".join(lines)


def parse_config(raw: Mapping[str, Any]) -> ClusterConfig:
    """Validate plain config values (keys without namespace) into a ``ClusterConfig``."""
    try:
        settings = ClusterSettings.model_validate(dict(raw))
    except ValidationError as err:
        raise ConfigError(_format(err)) from None
    _check_sites(settings)
    _check_admin_ranges(settings)
    nodes = _node_specs(settings)
    _check_topology(settings, nodes)
    check_address_ranges(settings)
    _check_engine(settings)
    deployer = _resolve_deployer(settings)
    network = plan_network(settings, nodes, deployer)
    require_reachable(network.paths)
    config = ClusterConfig(settings=settings, nodes=nodes, deployer=deployer, network=network)
    _check_failover(config)
    return config


_fail = fail


def _check_sites(settings: ClusterSettings) -> None:
    overlay = ipaddress.IPv4Network(settings.overlay_cidr)
    seen_ids: dict[int, str] = {}
    for name, site in settings.sites.items():
        path = f"sites.{name}"
        if not DNS_LABEL.fullmatch(name) or len(name) > 20:
            raise _fail(path, "site names are DNS-1123 labels of at most 20 characters")
        if site.site_id in seen_ids:
            raise _fail(
                f"{path}.siteId",
                f"{site.site_id} is already used by site {seen_ids[site.site_id]!r}",
            )
        seen_ids[site.site_id] = name
        if site.site_id > site_blocks(overlay):
            raise _fail(
                f"{path}.siteId",
                f"{site.site_id} does not fit overlay {overlay}, "
                f"which has site blocks 1..{site_blocks(overlay)}",
            )
        if site.masters > MAX_MASTERS:
            raise _fail(f"{path}.masters", f"at most {MAX_MASTERS} per site fit the overlay layout")
        if site.workers > MAX_WORKERS:
            raise _fail(f"{path}.workers", f"at most {MAX_WORKERS} per site fit the overlay layout")
        if site.ingress == "public" and not site.has_public_address:
            raise _fail(
                f"{path}.ingress",
                "'public' ingress needs a public address (floatingIpPool or networkIsPublic: "
                "true); use 'private' for an ingress controller reachable on the site's LAN",
            )
        if site.ingress == "private" and not site.lan_cidr:
            raise _fail(
                f"{path}.ingress",
                f"'private' opens 80/443 to the site's LAN only: set {path}.lanCidr",
            )
        if site.ssh_via == "public" and not site.has_public_address:
            raise _fail(
                f"{path}.sshVia",
                "'public' needs a public address (floatingIpPool or networkIsPublic); "
                "use 'private' for nodes reachable on a LAN",
            )


def _node_specs(settings: ClusterSettings) -> tuple[NodeSpec, ...]:
    overlay = ipaddress.IPv4Network(settings.overlay_cidr)
    specs = []
    for site_name, site in settings.sites.items():
        for kind, count in (("master", site.masters), ("worker", site.workers)):
            for index in range(count):
                if kind == "master":
                    roles: tuple[str, ...] = ("controlplane", "etcd")
                    if settings.masters_schedulable:
                        roles += ("worker",)
                else:
                    roles = ("worker",)
                ingress: IngressMode = site.ingress if "worker" in roles else "none"
                specs.append(
                    NodeSpec(
                        name=f"{settings.cluster_name}-{site_name}-{kind}-{index}",
                        site=site_name,
                        kind=kind,  # type: ignore[arg-type]
                        index=index,
                        roles=roles,
                        size=site.size_for(kind),
                        zerotier_ip=str(overlay_address(overlay, site.site_id, kind, index)),  # type: ignore[arg-type]
                        ingress=ingress,
                    )
                )
    return tuple(specs)


def _check_topology(settings: ClusterSettings, nodes: tuple[NodeSpec, ...]) -> None:
    etcd = Counter(node.site for node in nodes if "etcd" in node.roles)
    total = sum(etcd.values())
    if total == 0:
        raise _fail("sites", "no etcd member: give at least one site `masters: 1`")
    if total % 2 == 0:
        raise _fail(
            "sites",
            f"{total} etcd members (one per master): an even count survives no more failures "
            f"than {total - 1} would, and an even split leaves no quorum; "
            "use an odd number of masters",
        )
    if len(etcd) >= 2:  # one site holding them all is a choice, not a hidden single point
        for site, count in etcd.items():
            if count * 2 > total:
                two = (
                    " (with masters in two sites one of them always holds a majority: use one "
                    "site, or three or more)"
                    if len(etcd) == 2
                    else ""
                )
                raise _fail(
                    f"sites.{site}.masters",
                    f"{count} of {total} etcd members in one site: losing that site loses quorum; "
                    f"spread masters so no site holds a majority{two}",
                )
    if total > RUNNER_MAX_ETCD_MEMBERS:
        raise _fail(
            "sites",
            f"{total} etcd members (one per master); at most {RUNNER_MAX_ETCD_MEMBERS}: each "
            "member adds its certificates to the RKE state, which must fit one environment "
            "variable (components/config/cluster.py)",
        )
    if len(nodes) > RUNNER_MAX_NODES:
        raise _fail(
            "sites",
            f"{len(nodes)} nodes in total; the RKE command carries at most {RUNNER_MAX_NODES} "
            "(its state must fit one environment variable, components/config/cluster.py)",
        )
    if not any("worker" in node.roles for node in nodes):
        raise _fail(
            "sites",
            "no schedulable node: add workers to a site, or set mastersSchedulable: true "
            "so masters also carry the worker role",
        )
    for node in nodes:
        if len(node.name) > 63:
            raise _fail("clusterName", f"node name {node.name!r} exceeds 63 characters")
    names = {node.name: node for node in nodes}
    for i, name in enumerate(settings.rebuild):
        if name not in names:
            raise _fail(f"rebuild[{i}]", f"{name!r} is not a node of this stack")
    rebuilding_etcd = [name for name in settings.rebuild if "etcd" in names[name].roles]
    if len(rebuilding_etcd) > 1:
        raise _fail(
            "rebuild",
            f"{', '.join(rebuilding_etcd)} are etcd members; rebuild one master at a time",
        )


def _check_admin_ranges(settings: ClusterSettings) -> None:
    """Refuse admin/deployer source ranges that open SSH and the API to the world."""
    if settings.allow_wide_admin_cidrs:
        return
    lists = {"adminCidrs": settings.admin_cidrs}
    if settings.deployer is not None and settings.deployer.source_cidrs:
        lists["deployer.sourceCidrs"] = settings.deployer.source_cidrs
    for key, cidrs in lists.items():
        networks = [ipaddress.ip_network(c) for c in cidrs]
        for version, widest in WIDEST_ADMIN_PREFIX.items():
            same = [n for n in networks if n.version == version]
            # collapsed, so that 0.0.0.0/1 + 128.0.0.0/1 counts as the world it is
            for merged in ipaddress.collapse_addresses(same):  # type: ignore[type-var]
                if merged.prefixlen < widest:
                    index = next(
                        (
                            i
                            for i, n in enumerate(networks)
                            if n.version == version and n.subnet_of(merged)  # type: ignore[arg-type]
                        ),
                        0,
                    )
                    raise _fail(
                        f"{key}[{index}]",
                        f"{merged} is wider than a /{widest}: it opens SSH (22) and the "
                        "Kubernetes API (6443) of every node to the internet; list the "
                        "addresses you administer from, or set allowWideAdminCidrs: true "
                        "to accept that exposure on purpose",
                    )


def _check_engine(settings: ClusterSettings) -> None:
    """What the install engine cannot do with this stack. RKE v1's rules live in
    rke/engine.py; RKE2 sets kubelet's node-ip itself (``node-ip`` in rke2/config_yaml.py),
    so it takes every sshVia."""
    if settings.engine != ENGINE:
        _check_rke_only_keys(settings)
        _check_rke2_snapshots(settings)
        return
    for name, site in settings.sites.items():
        problem = ssh_via_problem(name, site.ssh_via)
        if problem:
            raise _fail(f"sites.{name}.sshVia", f"{problem} ({ENGINE} engine)")


# `multicloud:rke` keys only the RKE engine reads; with rke2 a set one would do nothing.
RKE_ONLY_KEYS = {
    "network_plugin": (
        "networkPlugin",
        "RKE2 always runs canal, the `cni` of rke2/config_yaml.py",
    ),
    "dns_upstreams": ("dnsUpstreams", "RKE2's CoreDNS forwards to the nodes' resolvers"),
    "ssh_agent_auth": ("sshAgentAuth", "RKE2 has no SSH installer"),
    "restore": ("restore", "an RKE2 cluster is restored as docs/rke2.md describes"),
}
RKE_ONLY_UPGRADE_KEYS = {
    "max_unavailable_worker": "maxUnavailableWorker",
    "max_unavailable_controlplane": "maxUnavailableControlplane",
}


def _check_rke2_snapshots(settings: ClusterSettings) -> None:
    """RKE2 takes snapshots on a cron schedule (``_snapshot_cron`` in rke2/config_yaml.py):
    "0 */h * * *" restarts every midnight, so only an interval dividing 24 hours keeps the
    gaps even (7 would give 7, 7, 7 and 3 hours), and a longer one is not expressible."""
    hours = settings.rke.etcd.snapshot_interval_hours
    if 24 % hours:
        even = ", ".join(str(h) for h in range(1, 25) if 24 % h == 0)
        raise _fail(
            "rke.etcd.snapshotIntervalHours",
            f"{hours} hours does not divide a day: RKE2 schedules snapshots with cron, every "
            f"{hours} hours from midnight, so the gaps would be uneven; with engine rke2 use "
            f"one of {even}",
        )


def _check_rke_only_keys(settings: ClusterSettings) -> None:
    """Refuse `multicloud:rke` keys the rke2 engine would silently ignore."""
    rke = settings.rke
    for field, (key, why) in RKE_ONLY_KEYS.items():
        if field in rke.model_fields_set:
            raise _fail(f"rke.{key}", f"only the rke engine reads it ({why}); remove it")
    for field, key in RKE_ONLY_UPGRADE_KEYS.items():
        if field in rke.upgrade.model_fields_set:
            raise _fail(
                f"rke.upgrade.{key}",
                "only the rke engine reads it (RKE2's upgrade Plans take one node at a time); "
                "remove it",
            )


def _resolve_deployer(settings: ClusterSettings) -> Deployer:
    """The deployer as configured, or the documented default.

    Default (``multicloud:deployer`` unset): a machine on the LAN of the one site whose
    nodes are reached with ``sshVia: private`` (none: on no LAN), reaching public
    addresses from ``adminCidrs``. Two or more such sites are ambiguous and refused:
    the deployer sits on one LAN.
    """
    configured = settings.deployer
    if configured is None:
        private = [n for n, s in settings.sites.items() if s.ssh_via == "private"]
        if len(private) > 1:
            raise _fail(
                "deployer.lan",
                f"sites {', '.join(private)} are all reached over SSH on LAN addresses "
                "(sshVia: private), and the deployer sits on one LAN: say which with "
                "`pulumi config set --path deployer.lan <site>` and reach the others on "
                "public addresses (sshVia: public); see docs/network.md",
            )
        lan = private[0] if private else None
        overlay, sources, explicit = False, tuple(settings.admin_cidrs), False
    else:
        lan = configured.lan
        if lan is not None and lan not in settings.sites:
            raise _fail(
                "deployer.lan",
                f"{lan!r} is not a site of this stack; expected one of "
                f"{', '.join(settings.sites)}, or leave it unset (on no site's LAN)",
            )
        overlay, explicit = configured.overlay, True
        sources = tuple(configured.source_cidrs or settings.admin_cidrs)
    lan_cidr = settings.sites[lan].lan_cidr if lan else None
    if lan is not None and lan_cidr is None:
        reason = "multicloud:deployer.lan names it" if explicit else "its nodes use sshVia: private"
        raise _fail(
            f"sites.{lan}.lanCidr",
            f"the deployer sits on this site's LAN ({reason}): give the LAN's range so the "
            "firewall opens SSH and the Kubernetes API to it",
        )
    return Deployer(lan=lan, lan_cidr=lan_cidr, overlay=overlay, sources=sources, explicit=explicit)


def stack_failover_budget(config: ClusterConfig) -> FailoverBudget:
    """The worst-case failover of the stack's entrypoint (see ``failover_budget``).

    Raises ``ValueError`` when there is no record the updater moves, or only one ingress site.
    """
    settings = config.settings
    if settings.entrypoint is None:
        raise ValueError("no entrypoint")
    sites = []
    for name in settings.sites:
        members = config.site_nodes(name)
        if any(node.public_ingress for node in members):
            control_plane = any("controlplane" in node.roles for node in members)
            sites.append(IngressSite(name, len(members), control_plane))
    return failover_budget(
        settings.entrypoint,
        grace_seconds=settings.rke.node_monitor_grace_period_seconds,
        eviction_rate=settings.rke.node_eviction_rate,
        sites=sites,
    )


def _check_failover(config: ClusterConfig) -> None:
    """Refuse a stack whose computed worst-case failover exceeds entrypoint.failoverBoundSeconds."""
    entry = config.settings.entrypoint
    if entry is None or entry.cloudflare is None or not entry.updater.enabled:
        return
    bound = entry.failover_bound_seconds
    if bound is None:
        return
    key = "entrypoint.failoverBoundSeconds"
    try:
        budget = stack_failover_budget(config)
    except ValueError as err:
        raise _fail(
            key,
            f"{err}. Give a second site ingress: public (nodes with a public address), or set "
            f"{key}: null to accept an entrypoint that dies with its site",
        ) from None
    if budget.total > bound:
        terms = "\n    ".join(budget.lines()[1:-1])
        raise _fail(
            key,
            f"the worst case for traffic to leave site {budget.site!r} is {budget.total} s, "
            f"over the bound of {bound} s:\n    {terms}\n  Shorten the terms that come "
            "from keys (a proxied record has no TTL to wait for), or raise the bound",
        )


# --- reading the stack through Pulumi -------------------------------------------------


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ConfigError(f"invalid stack config:\n  duplicate key {key!r}")
        seen[key] = value
    return seen


def read_raw() -> dict[str, Any]:
    """The stack's non-secret config, as the running Pulumi program receives it."""
    from pulumi.runtime import config as runtime_config

    keys = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env() or {})
    return raw_values({key: runtime_config.get_config(key) for key in keys})


def raw_values(config: Mapping[str, str]) -> dict[str, Any]:
    """Plain values from config as the CLI passes it (full keys -> strings, structured
    values as JSON), refusing unknown top-level keys. Secret keys are left out."""
    known = set(SCALAR_KEYS + OBJECT_KEYS + DECLARED_SECRETS + CONDITIONAL_SECRETS)
    raw: dict[str, Any] = {}
    for full_key in sorted(k for k in config if k.startswith(f"{NAMESPACE}:")):
        key = full_key.split(":", 1)[1]
        if key.endswith("OpenstackSecret"):
            continue
        if key not in known:
            raise ConfigError(
                f"invalid stack config:\n  {full_key}: unknown key (check its spelling)"
            )
        if key in DECLARED_SECRETS + CONDITIONAL_SECRETS:
            continue
        value = config[full_key]
        if key in SCALAR_KEYS:
            value = _scalar(key, value)
        if key in OBJECT_KEYS:
            try:
                value = json.loads(value, object_pairs_hook=_unique_keys)
            except json.JSONDecodeError:
                raise ConfigError(
                    f"invalid stack config:\n  {full_key}: expected a structured value "
                    "(set it with `pulumi config set --path`)"
                ) from None
            except ConfigError:
                raise  # a duplicate key
            except (RecursionError, ValueError) as err:  # nesting, or a 4300-digit number
                raise ConfigError(
                    f"invalid stack config:\n  {full_key}: not a value this program reads "
                    f"({type(err).__name__}: {printable(str(err))}); give a plain map or list "
                    "as docs/config-reference.md shows"
                ) from None
        raw[key] = value
    return raw


def _scalar(key: str, text: str) -> Any:
    """A top-level value as the stack file wrote it: the CLI passes every scalar as text
    ("2800", "true"), and the models take numbers and booleans only as such."""
    field = ClusterSettings.model_fields[re.sub(r"[A-Z]", lambda m: "_" + m[0].lower(), key)]
    kinds = _base_types(field.annotation)
    if int in kinds and re.fullmatch(r"-?[0-9]{1,20}", text):
        return int(text)
    if bool in kinds and text in ("true", "false"):
        return text == "true"
    return text


def _base_types(annotation: Any) -> set[Any]:
    """``Annotated[int, ...] | None`` -> {int, NoneType}."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _base_types(typing.get_args(annotation)[0])
    if typing.get_args(annotation) and typing.get_origin(annotation) is not Literal:
        return set().union(*(_base_types(a) for a in typing.get_args(annotation)))
    return {annotation}


def _secret(key: str, needed_for: str | None) -> pulumi.Output[str] | None:
    """A secret key as a Pulumi secret; refuses plaintext, and absence when needed."""
    from pulumi.runtime import config as runtime_config

    full_key = f"{NAMESPACE}:{key}"
    if runtime_config.get_config(full_key) is None:
        if needed_for:
            raise ConfigError(
                f"invalid stack config:\n  {full_key}: missing; {needed_for} needs it "
                f"(`pulumi config set --secret {key} ...`)"
            )
        return None
    if not runtime_config.is_config_secret(full_key):
        raise ConfigError(
            f"invalid stack config:\n  {full_key}: stored in plaintext; "
            f"set it again with `pulumi config set --secret {key} ...`"
        )
    return pulumi.Config(NAMESPACE).require_secret(key)


def read_secrets(config: ClusterConfig) -> Secrets:
    settings = config.settings
    do_sites = [n for n, s in settings.sites.items() if s.kind == "digitalocean"]
    s3 = settings.rke.etcd.s3 is not None
    cloudflare = settings.entrypoint is not None and settings.entrypoint.cloudflare is not None
    openstack: dict[str, pulumi.Output[str]] = {}
    for name, site in settings.sites.items():
        if isinstance(site, OpenStackSiteConfig) and site.auth is not None:
            value = _secret(openstack_secret_key(name), f"the explicit auth of site {name!r}")
            assert value is not None
            openstack[name] = value
    zerotier = _secret("zerotierToken", "the ZeroTier overlay")
    ssh = _secret("sshPrivateKey", "RKE and the readiness checks")
    assert zerotier is not None and ssh is not None
    return Secrets(
        zerotier_token=zerotier,
        ssh_private_key=ssh,
        digitalocean_token=_secret(
            "digitaloceanToken", f"site {do_sites[0]!r}" if do_sites else None
        ),
        cloudflare_api_token=_secret(
            "cloudflareApiToken", "entrypoint.cloudflare" if cloudflare else None
        ),
        etcd_s3_access_key=_secret("etcdS3AccessKey", "rke.etcd.s3" if s3 else None),
        etcd_s3_secret_key=_secret("etcdS3SecretKey", "rke.etcd.s3" if s3 else None),
        openstack=openstack,
    )


def load_config() -> tuple[ClusterConfig, Secrets]:
    """Read and validate the whole stack config, or stop with a readable error."""
    try:
        config = parse_config(read_raw())
        for path in config.network.paths:  # broken paths stopped parse_config already
            if path.verdict == "warn":
                pulumi.log.warn(f"network preflight: {NAMESPACE}:{path.key}: {path.note}")
        return config, read_secrets(config)
    except ConfigError as err:
        raise pulumi.RunError(str(err)) from None

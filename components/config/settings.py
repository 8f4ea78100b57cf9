"""``ClusterSettings``, every non-secret key of the stack, and ``ClusterConfig``, the
validated stack (settings, node specs, the resolved deployer) that ``parse_config`` returns."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import Field, field_validator

from components.config.cluster import RkeSettings
from components.config.deployer import Deployer, DeployerSettings
from components.config.engine_facts import EngineFacts
from components.config.entrypoint import EntrypointSettings
from components.config.model import (
    Bool,
    Cidr,
    CidrList,
    ConfigModel,
    Int,
    check_https_url,
    invisible_character,
    printable,
)
from components.config.sites import SiteConfig
from components.nodes import NodeSpec
from components.overlay.addressing import MAX_MASTERS, site_blocks

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
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


class RollSettings(ConfigModel):
    """What `make roll` steps towards, written only in its temporary copy of the stack file."""

    target_masters: Int = Field(
        ge=1,
        le=MAX_MASTERS,
        description="The master (etcd member) total the roll steps towards, one master per "
        "`pulumi up`; an even total is accepted only one master away from it.",
    )


class ClusterSettings(ConfigModel):
    """Every non-secret key of the stack, validated field by field."""

    cluster_name: str = Field(min_length=1, max_length=24)
    engine: Literal["rke", "rke2"] = Field(
        "rke",
        description="what installs Kubernetes: 'rke' (RKE v1 over SSH, the default) or 'rke2' "
        "(each node installs the pinned RKE2 from cloud-init; see docs/rke2.md)",
    )
    # the rke default is rke.config_rules.DEFAULT_KUBERNETES_VERSION
    # (tests/components/config/test_config.py)
    kubernetes_version: str = Field(
        "",
        description="the engine's version string; empty takes the engine's default "
        "(v1.30.14-rancher1-1 for rke, the pinned RKE2 release for rke2)",
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
    roll: RollSettings | None = Field(
        None,
        description="Set by `make roll` in its temporary copy of the stack file while it "
        "changes the master count one master per step; never write it yourself.",
    )
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
class ClusterConfig:
    """The validated stack: settings, node specs and the resolved deployer (the network
    plan over it is the preflight's, ``components.preflight.plan_network``)."""

    settings: ClusterSettings
    nodes: tuple[NodeSpec, ...]
    deployer: Deployer
    engine: EngineFacts  # the chosen engine's (``settings.engine``)

    def site_nodes(self, site: str) -> tuple[NodeSpec, ...]:
        return tuple(node for node in self.nodes if node.site == site)

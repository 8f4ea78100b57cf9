"""Reading the stack through Pulumi: its non-secret values as plain data (``read_raw``,
``raw_values``) and every secret as a Pulumi secret at once (``read_secrets``)."""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
from pulumi.runtime import config as runtime_config

from components.config.model import NAMESPACE, ConfigError, printable
from components.config.settings import ClusterConfig, ClusterSettings
from components.config.sites import OpenStackSiteConfig


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
OBJECT_KEYS = ("sites", "adminCidrs", "rebuild", "roll", "rke", "entrypoint", "deployer")


def openstack_secret_key(site: str) -> str:
    return f"{_camel(site)}OpenstackSecret"


def _camel(name: str) -> str:
    head, *rest = name.split("-")
    return head + "".join(part.capitalize() for part in rest)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ConfigError(f"invalid stack config:\n  duplicate key {key!r}")
        seen[key] = value
    return seen


def read_raw() -> dict[str, Any]:
    """The stack's non-secret config, as the running Pulumi program receives it."""
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

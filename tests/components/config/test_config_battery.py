"""A generated battery of bad stack config: every class of bad value is refused with a
``ConfigError`` naming its key path, never accepted and never a traceback of another type,
while valid values of the same keys still pass.

The keys come from walking the config models (``ClusterSettings`` and everything it
holds), so a key added later is covered by the class it belongs to: every number refuses
booleans and values over its bound, every boolean refuses numbers and words, every CIDR
refuses non-canonical spellings, every string refuses control characters.
Hypothesis runs derandomized (the same cases on every run) with small example counts.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import ipaddress
import json
import time
import types
import typing
from collections.abc import Iterator
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
import pulumi
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from components.config import (
    CONDITIONAL_SECRETS,
    DECLARED_SECRETS,
    ClusterSettings,
    ConfigError,
    DigitalOceanSiteConfig,
    OpenStackSiteConfig,
    raw_values,
)
from components.config.cluster import RUNNER_MAX_NODES
from components.config.entrypoint import MAX_TTL
from components.config.model import MAX_SOURCE_CIDRS, Cidr, Int, Number
from components.config.settings import SYSTEM_ACCOUNTS
from components.overlay.addressing import MAX_MASTERS, MAX_WORKERS
from engines import check_stack
from rke2.config_rules import RKE_ONLY_KEYS, RKE_ONLY_UPGRADE_KEYS
from scripts.offline import run_program
from tests.components.config.test_config import CLOUDFLARE_ENTRYPOINT, base

BATTERY = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# --- a stack with every optional section set, and editing it by key path --------------


def full() -> dict[str, Any]:
    """base() plus every optional object and key, so every key path of the models exists."""
    raw = base()
    raw["overlayMtu"] = 2800
    raw["entrypoint"] = copy.deepcopy(CLOUDFLARE_ENTRYPOINT) | {"failoverBoundSeconds": None}
    raw["entrypoint"]["cloudflare"]["ttl"] = 60
    raw["entrypoint"]["longhorn"] = {"replicas": 3}
    raw["rke"] = {
        "etcd": {
            "s3": {"bucket": "mc-etcd", "endpoint": "s3.example.com", "region": "r1", "folder": "f"}
        },
        "restore": {"snapshot": "rke_etcd_snapshot_1", "s3": False},
    }
    raw["deployer"] = {"lan": "home", "overlay": True, "sourceCidrs": ["198.51.100.0/24"]}
    ramnode = raw["sites"]["ramnode"]
    ramnode |= {"floatingIpPool": "public", "bootVolumeGb": 20, "region": "NYC"}
    ramnode |= {"masterFlavor": "4GB", "workerFlavor": "4GB"}
    raw["sites"]["digitalocean"] |= {"masterSize": "s-2vcpu-4gb", "workerSize": "s-2vcpu-4gb"}
    raw["sites"]["digitalocean"]["vpcUuid"] = "0d3f6a2e-1b2c-4d5e-8f90-a1b2c3d4e5f6"
    return raw


AUTH = {"authUrl": "https://keystone.example.com:5000/v3", "userName": "u", "projectName": "p"}
AUTH |= {"userDomainName": "Default", "projectDomainName": "Default"}


def with_auth() -> dict[str, Any]:
    """full() with explicit OpenStack credentials on site home (instead of its cloud)."""
    raw = full()
    del raw["sites"]["home"]["cloud"]
    raw["sites"]["home"]["auth"] = dict(AUTH)
    return raw


def edited(path: str, value: Any, raw: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of ``raw`` (default full()) with the dotted ``path`` set (``[i]`` for items)."""
    raw = copy.deepcopy(raw if raw is not None else full())
    node: Any = raw
    parts = path.replace("[", ".[").split(".")
    for part in parts[:-1]:
        node = node[int(part[1:-1])] if part.startswith("[") else node.setdefault(part, {})
    last = parts[-1]
    if last.startswith("["):
        node[int(last[1:-1])] = value
    else:
        node[last] = value
    return raw


def value_at(path: str, raw: dict[str, Any]) -> Any:
    node: Any = raw
    for part in path.replace("[", ".[").split("."):
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    return node


def refused(raw: dict[str, Any], path: str) -> str:
    """The ConfigError message for ``raw``; it must name ``path``."""
    try:
        check_stack(raw)
    except ConfigError as err:
        message = str(err)
    else:
        pytest.fail(f"accepted: {path} = {repr(value_at(path, raw))[:200]}")
    assert f"multicloud:{path}:" in message or f"multicloud:{path}[" in message, message
    return message


def test_the_full_stack_is_valid() -> None:
    check_stack(full())
    check_stack(with_auth())


# --- walking the models ------------------------------------------------------------------

# Where a model's fields live in full(): sites are keyed by their kind's example site.
SITE_OF = {OpenStackSiteConfig: "sites.ramnode", DigitalOceanSiteConfig: "sites.digitalocean"}


def _strip(annotation: Any) -> tuple[Any, list[Any]]:
    """``Annotated[X | None, ...]`` -> (X, metadata)."""
    metadata: list[Any] = []
    while True:
        if get_origin(annotation) is typing.Annotated:
            annotation, *extra = get_args(annotation)
            metadata += extra
        elif get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(
            annotation
        ):
            rest = [a for a in get_args(annotation) if a is not type(None)]
            annotation = rest[0] if len(rest) == 1 else Union[tuple(rest)]  # noqa: UP007
        else:
            return annotation, metadata


def leaves(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, Any, list[Any]]]:
    """(key path, annotation, metadata) of every scalar or list key under ``model``."""
    for name, field in model.model_fields.items():
        path = f"{prefix}{field.alias or name}"
        if path == "auth" or path.endswith(".auth"):
            continue  # exclusive with `cloud`: walked on with_auth()
        annotation, metadata = _strip(field.annotation)
        metadata += field.metadata
        if get_origin(annotation) is dict:  # sites
            union, _ = _strip(get_args(annotation)[1])
            for site_model in get_args(union):
                yield from leaves(site_model, SITE_OF[site_model] + ".")
            continue
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from leaves(annotation, path + ".")
            continue
        yield path, annotation, metadata


def _auth_leaves() -> Iterator[tuple[str, Any, list[Any]]]:
    auth = OpenStackSiteConfig.model_fields["auth"]
    model, _ = _strip(auth.annotation)
    yield from leaves(model, "sites.home.auth.")


LEAVES = [*leaves(ClusterSettings, ""), *_auth_leaves()]


def raw_for(path: str) -> dict[str, Any]:
    return with_auth() if ".auth." in path else full()


def _is(annotation: Any, kind: Any) -> bool:
    """Whether a stripped annotation is the project type ``kind`` (Int, Number, Bool)."""
    inner, _metadata = _strip(kind)
    return annotation is inner or any(
        a is inner or (get_origin(a) is typing.Annotated and get_args(a)[0] is inner)
        for a in get_args(annotation)
    )


def annotation_of(path: str) -> Any:
    return next(annotation for key, annotation, _ in LEAVES if key == path)


def numeric_keys() -> list[tuple[str, Any, list[Any]]]:
    return [leaf for leaf in LEAVES if _is(leaf[1], Int) or _is(leaf[1], Number)]


def boolean_keys() -> list[str]:
    return [path for path, annotation, _ in LEAVES if annotation is bool]


def string_keys() -> list[str]:
    """Keys holding text (plain, Literal, CIDR), with a string value in the valid stacks."""
    keys = []
    for path, annotation, _ in LEAVES:
        literal = get_origin(annotation) is Literal and str in {
            type(a) for a in get_args(annotation)
        }
        if annotation is str or literal:
            try:
                value = value_at(path, raw_for(path))
            except KeyError:
                value = None
            if isinstance(value, str) and len(value) >= 2:
                keys.append(path)
    return keys


def cidr_keys() -> list[str]:
    """Every key path (``[0]`` for a list's first item) that takes a CIDR."""
    checks = get_args(Cidr)[1:]
    keys = []
    for path, annotation, metadata in LEAVES:
        inner = get_args(annotation)[0] if get_origin(annotation) in (list, tuple) else None
        if inner is not None and any(m in checks for m in _strip(inner)[1]):
            keys.append(f"{path}[0]")
        elif any(m in checks for m in metadata):
            keys.append(path)
    return keys


# The bound of numbers a whole-stack check limits (not the field's `le`), by key path.
CHECKED_BOUNDS = {
    "sites.ramnode.siteId": 255,  # site blocks of the /16 overlay
    "sites.digitalocean.siteId": 255,
    "sites.ramnode.masters": MAX_MASTERS,
    "sites.digitalocean.masters": MAX_MASTERS,
    "sites.ramnode.workers": MAX_WORKERS,
    "sites.digitalocean.workers": MAX_WORKERS,
    "entrypoint.cloudflare.ttl": MAX_TTL,
    "rke.upgrade.maxUnavailableWorker": RUNNER_MAX_NODES,
    "rke.upgrade.maxUnavailableControlplane": RUNNER_MAX_NODES,
}


def upper_bound(path: str, metadata: list[Any]) -> float:
    for m in metadata:
        if isinstance(m, annotated_types.Le):
            return float(m.le)  # type: ignore[arg-type]
    assert path in CHECKED_BOUNDS, f"{path}: a number without an upper bound"
    return CHECKED_BOUNDS[path]


def test_the_walk_finds_every_kind_of_key() -> None:
    numeric = [path for path, _, _ in numeric_keys()]
    assert {"sites.ramnode.bootVolumeGb", "entrypoint.longhorn.replicas", "overlayMtu"} <= set(
        numeric
    )
    assert "rke.nodeEvictionRate" in numeric and "rke.etcd.retention" in numeric
    assert {"mastersSchedulable", "sites.ramnode.networkIsPublic"} <= set(boolean_keys())
    assert {"adminCidrs[0]", "deployer.sourceCidrs[0]", "overlayCidr", "rke.podCidr"} <= set(
        cidr_keys()
    )
    assert "sites.digitalocean.lanCidr" in cidr_keys() and "rke.etcd.s3.bucket" in string_keys()
    assert "sites.home.auth.authUrl" in string_keys()


# --- numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", [leaf[0] for leaf in numeric_keys()])
@BATTERY
@given(value=st.booleans() | st.sampled_from(["1", "true", 2.0, [1], {"n": 1}]))
def test_numbers_refuse_booleans_and_other_types(path: str, value: Any) -> None:
    if isinstance(value, str) and value.isdigit() and "." not in path:
        return  # a top-level key: the Pulumi CLI passes its number as text
    if path.startswith("rke.upgrade.maxUnavailable") and isinstance(value, str):
        return  # a count or a percentage: "1" is a count
    if value == 2.0 and _is(annotation_of(path), Number):
        return  # a fraction is a number
    refused(edited(path, value, raw_for(path)), path)


@pytest.mark.parametrize(("path", "annotation", "metadata"), numeric_keys())
@BATTERY
@given(excess=st.integers(min_value=1, max_value=2**70) | st.just(10**400))
def test_numbers_refuse_values_over_their_bound(
    path: str, annotation: Any, metadata: list[Any], excess: int
) -> None:
    # 10**400 ended in an OverflowError when Pulumi serialized bootVolumeGb as a double
    bound = upper_bound(path, metadata)
    value = int(bound) + excess
    refused(edited(path, value, raw_for(path)), path)


# --- booleans ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", boolean_keys())
@BATTERY
@given(value=st.sampled_from([0, 1, "yes", "no", "on", "True", "1", 1.0, None, []]))
def test_booleans_refuse_numbers_and_words(path: str, value: Any) -> None:
    if value is None and path == "sites.ramnode.networkIsPublic":
        value = 2
    refused(edited(path, value, raw_for(path)), path)


@pytest.mark.parametrize("key", [path for path in boolean_keys() if "." not in path])
@pytest.mark.parametrize("text", ["true", "false"])
def test_top_level_booleans_take_the_cli_text(key: str, text: str) -> None:
    """The Pulumi CLI passes a top-level boolean as the text true or false."""
    config = {
        f"multicloud:{k}": json.dumps(v) if isinstance(v, dict | list) else str(v)
        for k, v in base().items()
    }
    config[f"multicloud:{key}"] = text
    value = getattr(check_stack(raw_values(config))[0].settings, _snake(key))
    assert value is (text == "true")


def _snake(key: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in key)


# --- CIDRs -------------------------------------------------------------------------------


def _spellings(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[tuple[str, str]]:
    """Non-canonical spellings of ``network``, each with the canonical text the error offers."""
    canonical = str(network)
    address, prefix = network.network_address, network.prefixlen
    out = [
        (f"{address}/0{prefix}", canonical),  # leading zero in the prefix
        (f"{address + 1}/{prefix}", canonical)
        if network.num_addresses > 1
        else (f"{address}", canonical),  # host bits set / no prefix
    ]
    if network.version == 4:
        out.append((f"{address}/{network.netmask}", canonical))
        out.append((f"{address}/{network.hostmask}", canonical))
        octets = str(address).split(".")
        padded = ".".join(o.zfill(3) for o in octets)
        if padded != str(address):
            out.append((f"{padded}/{prefix}", canonical))
    else:
        out.append((f"{address.exploded}/{prefix}", canonical))
        out.append((f"{str(address).upper()}/{prefix}", canonical))
    return [(text, fix) for text, fix in out if text != canonical]


@st.composite
def networks(draw: st.DrawFn) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if draw(st.booleans()):
        prefix = draw(st.integers(min_value=1, max_value=31))
        value = draw(st.integers(min_value=0, max_value=2**32 - 1))
        return ipaddress.IPv4Network((value >> (32 - prefix) << (32 - prefix), prefix))
    prefix = draw(st.integers(min_value=1, max_value=127))
    value = draw(st.integers(min_value=1, max_value=2**128 - 1))
    return ipaddress.IPv6Network((value >> (128 - prefix) << (128 - prefix), prefix))


@pytest.mark.parametrize("path", cidr_keys())
@BATTERY
@given(network=networks(), pick=st.integers(min_value=0, max_value=10))
def test_cidrs_refuse_non_canonical_spellings(
    path: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network, pick: int
) -> None:
    spellings = _spellings(network)
    text, canonical = spellings[pick % len(spellings)]
    message = refused(edited(path, text, raw_for(path)), path)
    host_bits = "has host bits set" in message
    assert canonical in message or (host_bits and str(network) in message), message


@pytest.mark.parametrize("key", ["adminCidrs", "deployer.sourceCidrs"])
@BATTERY
@given(
    cidrs=st.lists(
        st.integers(min_value=0, max_value=2**16 - 1).map(  # the /24s of 11.0.0.0/8
            lambda n: str(ipaddress.IPv4Network(((11 << 24) + (n << 8), 24)))
        ),
        min_size=1,
        max_size=MAX_SOURCE_CIDRS - 1,
        unique=True,
    ),
    data=st.data(),
)
def test_source_cidrs_refuse_duplicates_and_take_distinct_ones(
    key: str, cidrs: list[str], data: st.DataObject
) -> None:
    check_stack(edited(key, cidrs))
    twice = data.draw(st.sampled_from(cidrs))
    at = data.draw(st.integers(min_value=0, max_value=len(cidrs)))
    doubled = [*cidrs[:at], twice, *cidrs[at:]]
    message = refused(edited(key, doubled), key)
    assert "listed twice" in message, message


def _spread(count: int) -> list[str]:
    """``count`` distinct /24s (public, outside every range the stacks use)."""
    return [str(ipaddress.IPv4Network(((11 << 24) + (i << 8), 24))) for i in range(count)]


def test_many_admin_cidrs_are_refused_or_checked_in_linear_time() -> None:
    """Today's cost is linear: 10,000 ranges are refused at once, the most accepted are
    checked in well under a second, and neither is far off parsing the list with ipaddress."""
    many = _spread(10_000)
    start = time.perf_counter()
    for text in many:
        ipaddress.ip_network(text)
    floor = time.perf_counter() - start

    # base(): the deployer's default sources are adminCidrs, so the preflight checks each
    start = time.perf_counter()
    message = refused(edited("adminCidrs", many, base()), "adminCidrs")
    refuse = time.perf_counter() - start
    assert f"at most {MAX_SOURCE_CIDRS}" in message

    timings = {}
    for count in (10, MAX_SOURCE_CIDRS):
        start = time.perf_counter()
        check_stack(edited("adminCidrs", _spread(count), base()))
        timings[count] = time.perf_counter() - start
    print(
        f"\n10,000 adminCidrs refused in {refuse * 1000:.1f} ms; parsing them with ipaddress "
        f"alone: {floor * 1000:.1f} ms; {MAX_SOURCE_CIDRS} accepted in "
        f"{timings[MAX_SOURCE_CIDRS] * 1000:.1f} ms, 10 in {timings[10] * 1000:.1f} ms"
    )
    assert refuse < 0.5 and refuse < 5 * floor + 0.05
    assert timings[MAX_SOURCE_CIDRS] < 0.5


# --- text --------------------------------------------------------------------------------

INVISIBLE = st.characters(categories=["Cc", "Cf", "Zl", "Zp"])


@pytest.mark.parametrize("path", string_keys())
@BATTERY
@given(char=INVISIBLE, where=st.floats(min_value=0, max_value=1))
def test_text_refuses_control_and_invisible_characters(path: str, char: str, where: float) -> None:
    raw = raw_for(path)
    value = value_at(path, raw)
    at = 1 + int(where * (len(value) - 2))  # inside the value
    refused(edited(path, value[:at] + char + value[at:], raw), path)


NAME_KEYS = [
    "sites.ramnode.cloud",
    "sites.ramnode.region",
    "sites.ramnode.image",
    "sites.ramnode.flavor",
    "sites.ramnode.network",
    "sites.ramnode.floatingIpPool",
    "sites.digitalocean.region",
    "sites.digitalocean.size",
    "sites.digitalocean.image",
    "rke.etcd.s3.bucket",
    "rke.etcd.s3.endpoint",
    "rke.etcd.s3.region",
]


@pytest.mark.parametrize("path", NAME_KEYS)
@BATTERY
@given(
    value=st.sampled_from(["", " ", " x", "x ", "a\nb", "u:p@host", "a/b", "https://x/y"])
    | st.text(INVISIBLE, min_size=1, max_size=3)
)
def test_cloud_names_refuse_empty_padded_and_url_parts(path: str, value: str) -> None:
    if value in ("a/b", "u:p@host", "https://x/y") and path.startswith("sites.ramnode"):
        return  # an OpenStack name is any printable text, looked up by the API as given
    refused(edited(path, value), path)


@pytest.mark.parametrize("pool", ["", " ", "\t"])
def test_an_empty_floating_ip_pool_is_no_public_address(pool: str) -> None:
    """It counted as one and the program stopped in an AssertionError (ssh_address)."""
    raw = edited("sites.ramnode.networkIsPublic", False)
    refused(edited("sites.ramnode.floatingIpPool", pool, raw), "sites.ramnode.floatingIpPool")


# --- DNS resolvers -----------------------------------------------------------------------

UNUSABLE_RESOLVERS = st.one_of(
    st.ip_addresses(network="127.0.0.0/8"),
    st.ip_addresses(network="0.0.0.0/8"),
    st.ip_addresses(network="169.254.0.0/16"),
    st.ip_addresses(network="224.0.0.0/4"),
    st.ip_addresses(network="240.0.0.0/4"),
    st.ip_addresses(network="100.64.0.0/10"),
    st.ip_addresses(network="172.16.0.0/12"),
    st.ip_addresses(network="fe80::/10"),
    st.ip_addresses(network="ff00::/8"),
    st.ip_addresses(network="fc00::/7"),
    st.sampled_from([ipaddress.ip_address("::"), ipaddress.ip_address("::1")]),
)


@BATTERY
@given(address=UNUSABLE_RESOLVERS, at=st.integers(min_value=0, max_value=1))
def test_dns_upstreams_refuse_addresses_no_node_can_use(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, at: int
) -> None:
    upstreams = ["1.1.1.1", "9.9.9.9"]
    upstreams[at] = str(address)
    refused(edited("rke.dnsUpstreams", upstreams), f"rke.dnsUpstreams[{at}]")


@BATTERY
@given(
    text=st.sampled_from(["001.1.1.1", "1.1.1.01", "2606:4700:4700:0:0:0:0:1111", "::FFFF:1.1.1.1"])
)
def test_dns_upstreams_refuse_non_canonical_addresses(text: str) -> None:
    refused(edited("rke.dnsUpstreams", [text]), "rke.dnsUpstreams")


def test_dns_upstreams_take_public_resolvers() -> None:
    upstreams = ["1.1.1.1", "9.9.9.9", "8.8.8.8", "2606:4700:4700::1111"]
    assert check_stack(edited("rke.dnsUpstreams", upstreams))[0].settings.rke.dns_upstreams == (
        tuple(upstreams)
    )


# --- names of things ---------------------------------------------------------------------


@BATTERY
@given(
    name=st.sampled_from(sorted(SYSTEM_ACCOUNTS))
    | st.from_regex(r"_[a-z]{1,8}|systemd-[a-z]{1,8}", fullmatch=True)
    | st.from_regex(r"[A-Z0-9.][a-z]{0,5}|[a-z]{33,40}|[a-z]{1,5}[$.@ :][a-z]{0,3}", fullmatch=True)
)
def test_ssh_user_refuses_system_accounts_and_invalid_names(name: str) -> None:
    refused(edited("sshUser", name), "sshUser")


@BATTERY
@given(name=st.from_regex(r"[a-z][a-z0-9_-]{0,31}", fullmatch=True))
def test_ssh_user_takes_user_names(name: str) -> None:
    if name in SYSTEM_ACCOUNTS or name.startswith("systemd-"):
        return
    assert check_stack(edited("sshUser", name))[0].settings.ssh_user == name


LABEL = st.from_regex(r"[a-z][a-z0-9]{0,61}[a-z0-9]", fullmatch=True)


@st.composite
def long_domains(draw: st.DrawFn) -> str:
    """A syntactically valid name over DNS's limits: a 64+ character label, or 254+ in all."""
    if draw(st.booleans()):
        return "a" * draw(st.integers(min_value=64, max_value=80)) + ".example.com"
    labels: list[str] = []
    while len(".".join(labels)) <= 253 - len(".example.com"):
        labels.append(draw(LABEL))
    return ".".join(labels) + ".example.com"


@pytest.mark.parametrize(
    "path",
    ["rke.clusterDomain", "entrypoint.cloudflare.zone", "entrypoint.app.host"],
)
@BATTERY
@given(name=long_domains())
def test_dns_names_refuse_overlong_names(path: str, name: str) -> None:
    raw = full()
    if path == "entrypoint.cloudflare.zone":
        raw = edited("entrypoint.cloudflare.recordName", name, raw)
    if path == "entrypoint.app.host":
        raw = edited("entrypoint.cloudflare.recordName", "*.k8s.example.com", raw)
    refused(edited(path, name, raw), path)


# --- SSH keys ----------------------------------------------------------------------------


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


@BATTERY
@given(
    key_type=st.sampled_from(["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256"]),
    rest=st.binary(max_size=80),
)
def test_ssh_key_bodies_that_are_no_key_are_refused(key_type: str, rest: bytes) -> None:
    body = base64.b64encode(_string(key_type.encode()) + rest).decode()
    refused(edited("sshPublicKey", f"{key_type} {body} me@host"), "sshPublicKey")


@BATTERY
@given(
    seed=st.binary(min_size=32, max_size=32),
    comment=st.text(st.characters(categories=["L", "N", "P", "S"]), max_size=20),
)
def test_valid_ssh_keys_pass(seed: bytes, comment: str) -> None:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    text = f"{line.decode()} {comment}".strip()
    assert check_stack(edited("sshPublicKey", text))[0].settings.ssh_public_key == text


# --- URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["zerotierCentralUrl", "sites.home.auth.authUrl"])
@BATTERY
@given(
    url=st.sampled_from(
        [
            "http://{host}/v3",
            "ftp://{host}/v3",
            "{host}/v3",
            "https://user:secret@{host}/v3",
            "https://{host}/v3?x=1",
            "https://{host}/v3#f",
            "https://{host}\n.evil.example/v3",
        ]
    ),
    host=st.from_regex(r"[a-z]{1,10}(\.[a-z]{1,10}){1,3}", fullmatch=True),
)
def test_api_urls_must_be_plain_https(path: str, url: str, host: str) -> None:
    refused(edited(path, url.format(host=host), raw_for(path)), path)


@BATTERY
@given(
    cidr=st.sampled_from(
        ["127.0.0.1/32", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "::1/128", "fe80::/10"]
    )
    | st.from_regex(r"127\.[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{1,2}/32", fullmatch=True)
)
def test_admin_sources_must_be_addresses_packets_come_from(cidr: str) -> None:
    # The review found 127.0.0.1/32 accepted as an admin range: it admits nobody.
    refused(edited("adminCidrs", [cidr]), "adminCidrs")


@pytest.mark.parametrize("path", ["zerotierCentralUrl", "sites.home.auth.authUrl"])
@BATTERY
@given(
    host=st.from_regex(r"[a-z]{1,8}[;_!$&'()*+,=][a-z]{1,8}\.com", fullmatch=True)
    | st.from_regex(r"-[a-z]{1,8}\.com|[a-z]{1,8}-\.com|xn--[a-z]{1,2}\.com", fullmatch=True)
)
def test_api_hosts_must_be_host_names(path: str, host: str) -> None:
    # The token goes to this host: one a resolver would look up, letters, digits and
    # inner hyphens per label, valid punycode (the review found `a.com;evil.com` accepted).
    refused(edited(path, f"https://{host}/v1", raw_for(path)), path)


@pytest.mark.parametrize("path", ["zerotierCentralUrl", "sites.home.auth.authUrl"])
@BATTERY
@given(label=st.text(st.characters(categories=["Ll"], min_codepoint=0xC0), min_size=1, max_size=8))
def test_api_hosts_must_be_ascii_and_are_named_in_idna(path: str, label: str) -> None:
    message = refused(edited(path, f"https://{label}.example.com/v1", raw_for(path)), path)
    try:
        idna = f"{label}.example.com".encode("idna").decode()
    except UnicodeError:
        return  # no IDNA form to name
    assert idna in message, message


# --- engine --------------------------------------------------------------------------------

# The RKE2 path never reads these (the network plugin: rke2/config_yaml.py always
# writes `cni: canal`), plus whatever the program lists as RKE-only.
RKE_ONLY = sorted(
    {"rke.networkPlugin", "rke.dnsUpstreams", "rke.sshAgentAuth", "rke.restore"}
    | {f"rke.{key}" for key, _ in RKE_ONLY_KEYS.values()}
    | {f"rke.upgrade.{key}" for key in RKE_ONLY_UPGRADE_KEYS.values()}
)
RKE_ONLY_VALUES = {
    "rke.networkPlugin": "canal",
    "rke.dnsUpstreams": ["1.1.1.1"],
    "rke.sshAgentAuth": True,
    "rke.restore": {"snapshot": "x"},
    "rke.upgrade.maxUnavailableWorker": 1,
    "rke.upgrade.maxUnavailableControlplane": 1,
}


@pytest.mark.parametrize("path", RKE_ONLY)
def test_rke_only_keys_are_refused_with_rke2(path: str) -> None:
    raw = edited("engine", "rke2", base())
    message = refused(edited(path, RKE_ONLY_VALUES[path], raw), path)
    assert "remove it" in message
    check_stack(edited(path, RKE_ONLY_VALUES[path], base()))[0]  # the rke engine reads it


@BATTERY
@given(hours=st.integers(min_value=1, max_value=168))
def test_rke2_snapshot_intervals_must_divide_a_day(hours: int) -> None:
    raw = edited("rke.etcd.snapshotIntervalHours", hours, edited("engine", "rke2", base()))
    if 24 % hours == 0:
        check_stack(raw)
    else:
        refused(raw, "rke.etcd.snapshotIntervalHours")
    check_stack(edited("rke.etcd.snapshotIntervalHours", hours, base()))[0]  # rke: any


# --- anything else: a ConfigError, never a traceback -----------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)


def _all_paths(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else key
            yield path
            yield from _all_paths(value, path)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield f"{prefix}[{i}]"
            yield from _all_paths(value, f"{prefix}[{i}]")


PATHS = sorted(set(_all_paths(full())) | set(_all_paths(with_auth())))


@settings(BATTERY, max_examples=300)
@given(edits=st.lists(st.tuples(st.sampled_from(PATHS), JSON), min_size=1, max_size=3))
def test_any_value_anywhere_is_accepted_or_a_config_error(edits: list[tuple[str, Any]]) -> None:
    raw = full()
    for path, value in edits:
        with contextlib.suppress(KeyError, IndexError, TypeError, AttributeError):
            raw = edited(path, value, raw)  # fails when an earlier edit replaced a parent
    with contextlib.suppress(ConfigError):
        check_stack(raw)


def _cli_config(raw: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """``raw`` as the Pulumi CLI hands it to the program, with placeholder secrets."""
    config = {
        f"multicloud:{key}": json.dumps(value)
        if isinstance(value, dict | list)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
        for key, value in raw.items()
    }
    secrets = [f"multicloud:{key}" for key in (*DECLARED_SECRETS, *CONDITIONAL_SECRETS)]
    config |= {key: "placeholder" for key in secrets}
    return config, secrets


# Inputs that ended in a traceback of the running program (AssertionError in the OpenStack
# auth and in ssh_address, OverflowError serializing the volume size).
PROGRAM_TRACEBACKS = {
    "empty clouds.yaml entry": ("sites.ramnode.cloud", ""),
    "empty floating IP pool as the only public address": (
        "sites.ramnode.floatingIpPool",
        "",
    ),
    "a volume size no double holds": ("sites.ramnode.bootVolumeGb", 10**400),
}


@pytest.mark.parametrize(("path", "value"), PROGRAM_TRACEBACKS.values(), ids=PROGRAM_TRACEBACKS)
def test_the_program_stops_with_the_key_before_registering_anything(path: str, value: Any) -> None:
    raw = edited(path, value, edited("sites.ramnode.networkIsPublic", False))
    config, secrets = _cli_config(raw)
    run = run_program(config, secret_keys=secrets)
    assert isinstance(run.error, pulumi.RunError), repr(run.error)
    assert f"multicloud:{path}:" in str(run.error)
    assert run.registrations == []


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,  # nesting deeper than Python's recursion limit
        '{"a": ' + "1" * 5000 + "}",  # a number longer than int() reads (4300 digits)
    ],
    ids=["deep nesting", "5000-digit number"],
)
def test_structured_values_python_cannot_read_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="multicloud:sites: "):
        raw_values({"multicloud:sites": text})


def _proxied(raw: dict[str, Any]) -> dict[str, Any]:
    cloudflare = raw["entrypoint"]["cloudflare"]
    cloudflare["proxied"] = True
    cloudflare.pop("ttl", None)  # a proxied record's TTL is Cloudflare's
    return raw


def test_a_security_group_rule_quota_the_plan_exceeds_is_refused() -> None:
    """A proxied record opens 80/443 on ramnode to Cloudflare's 15 ranges: 30 rules in the
    ingress group, 44 security-group rules with the others and Neutron's own (2 per group,
    4 in the project's default group). A declared quota below that is refused with the key
    and both fixes; address groups take one rule per port (16 in all)."""
    key = "sites.ramnode.securityGroupRuleQuota"
    message = refused(edited(key, 40, _proxied(full())), key)
    assert "needs 44 security-group rules" in message and "quota is 40" in message
    assert "sites.ramnode.addressGroups: true" in message and "--secgroup-rules" in message
    check_stack(edited(key, 44, _proxied(full())))[0]  # exactly enough passes
    grouped = edited("sites.ramnode.addressGroups", True, _proxied(full()))
    check_stack(edited(key, 16, grouped))
    refused(edited(key, 15, grouped), key)


def test_the_battery_covers_every_key_class() -> None:
    """A generated key list that came out empty would test nothing."""
    assert len(numeric_keys()) >= 24 and len(boolean_keys()) >= 10
    assert len(string_keys()) >= 30 and len(cidr_keys()) >= 7
    json.dumps(full())  # the stacks are plain JSON, as the CLI passes them

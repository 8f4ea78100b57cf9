"""Base pieces every typed section of the stack config shares.

Stack files use camelCase keys (``bootVolumeGb``); Python code uses snake_case.
Unknown keys are errors (RKE-style silent typos are exactly what we refuse),
models are frozen so nothing downstream mutates validated config. ``ConfigError``
and ``fail`` live here, at the bottom, so every check (the config's own, the engines'
rules, the preflight) can raise them.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
import urllib.parse
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

NAMESPACE = "multicloud"


class ConfigError(ValueError):
    """A stack config problem, already phrased for the person editing the stack file."""


def fail(path: str, message: str) -> ConfigError:
    """A ``ConfigError`` for one key: ``path`` as typed with ``--path`` (``sites.home.x``)."""
    return ConfigError(f"invalid stack config:\n  {NAMESPACE}:{path}: {message}")


# --- numbers and booleans ------------------------------------------------------------
#
# Pydantic's lax mode reads YAML `true` as the count 1, `2.0` or "2" as 2 and "yes" or 1
# as true. These types take only the JSON type the key documents. (The Pulumi CLI passes
# top-level keys as text: ``stack.raw_values`` reads the numbers and booleans among them.)


def _whole_number(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got the boolean {str(value).lower()}")
    if not isinstance(value, int):
        raise ValueError(f"expected a whole number, got {_shown(value)}")
    return value


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {_shown(value)}")
    return value


def _boolean(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    """A value as an error message names it: its JSON type, and the value if short."""
    if isinstance(value, list | dict) or value is None:
        return "a list" if isinstance(value, list) else "an object" if value is not None else "null"
    kind = {bool: "boolean", int: "number", float: "number"}.get(type(value), "string")
    text = repr(value) if kind == "string" else str(value).lower()
    return f"the {kind} {text}" if len(text) <= 40 else f"a {kind}"


Int = Annotated[int, BeforeValidator(_whole_number)]
"""A whole number (JSON integer); never a boolean or a fraction."""
Number = Annotated[float, BeforeValidator(_number)]
"""A number (JSON integer or fraction); never a boolean or a string."""
Bool = Annotated[bool, BeforeValidator(_boolean)]
"""true or false; never a number or a word such as "yes"."""


# --- text that reaches a cloud API, a file or a command line -------------------------


def printable(value: str, limit: int = 80) -> str:
    """``value`` shortened for an error message (``!r`` then escapes what is invisible)."""
    return value if len(value) <= limit else value[: limit - 3] + "..."


# Unicode categories of characters a reviewer cannot see or that break a line: controls
# (newline, escape), format (zero-width, bidi overrides), line/paragraph separators,
# surrogates, private use and unassigned.
_INVISIBLE = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"))


def invisible_character(value: str) -> str | None:
    """What the first invisible or control character of ``value`` is and where, or None."""
    for i, char in enumerate(value):
        if unicodedata.category(char) in _INVISIBLE:
            return f"character {i} is the control or invisible character U+{ord(char):04X}"
    return None


def _no_control(value: str) -> str:
    """Refuse control and format characters (newlines, escapes, zero-width or bidi marks)
    and surrounding whitespace: the value is sent to an API or written to a file, and
    must be the text a reviewer reads."""
    if not value:
        raise ValueError("empty: give the name, or remove the key")
    problem = invisible_character(value)
    if problem:
        raise ValueError(f"{problem}: remove it (names must be printable text)")
    if value != value.strip():
        raise ValueError(f"{printable(value)!r} has leading or trailing whitespace: remove it")
    return value


Name = Annotated[str, Field(max_length=255), AfterValidator(_no_control)]
"""The name of a cloud object (a clouds.yaml entry, image, flavor, network, pool...):
printable text of 1 to 255 characters (OpenStack's name columns are 255 long)."""


_LDH_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?")


def dns_name_problem(name: str) -> str | None:
    """Why ``name`` is too long for DNS, or None: RFC 1035 2.3.4 allows 63 octets per
    label and 255 per name on the wire, which is 253 characters written out."""
    if len(name) > 253:
        return f"{len(name)} characters; a DNS name has at most 253"
    for label in name.split("."):
        if len(label) > 63:
            return f"the label {label[:20]!r}... has {len(label)} characters; at most 63"
    return None


def host_name_problem(host: str) -> str | None:
    """Why ``host`` is no host name a resolver would look up, or None: an IP address, or
    labels of letters, digits and inner hyphens (RFC 1123 2.1, RFC 952's LDH rule), each
    ``xn--`` label valid IDNA (RFC 5891), within DNS's lengths."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    problem = dns_name_problem(host)
    if problem:
        return problem
    for label in host.rstrip(".").split("."):
        if not _LDH_LABEL.fullmatch(label):
            return f"the label {printable(label)!r} is not letters, digits and inner hyphens"
        if label.lower().startswith("xn--"):
            try:
                label.encode("ascii").decode("idna")
            except UnicodeError:
                return f"the label {label!r} is not valid IDNA (punycode)"
    return None


def idna_host(host: str) -> str | None:
    """``host`` in its ASCII (IDNA) form, or None when it has none."""
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def check_https_url(value: str, example: str, why: str, *, port: bool = True) -> str:
    """A plain https URL: printable ASCII (a non-ASCII host is named in its IDNA form),
    a DNS host, no user info, query or fragment, and a port only when ``port``.
    ``why`` says what travels to the host, e.g. "the API token goes to"."""
    plain = "no user info, query or fragment" if port else "no user info, port, query or fragment"
    expected = (
        f"expected a plain https://<host>/<path> URL such as {example} ({plain}), so the "
        f"host {why} is the one a reviewer reads"
    )
    bad = next((c for c in value if not " " < c < "\x7f"), None)
    if bad is not None:
        hint = ""
        if bad.isprintable():  # non-ASCII letters: say what the host is in DNS
            host = urllib.parse.urlsplit(value).hostname or ""
            ascii_host = idna_host(host)
            hint = f"; the host {host!r} is {ascii_host!r} in DNS (IDNA)" if ascii_host else ""
        raise ValueError(
            f"{printable(value)!r} holds U+{ord(bad):04X}, which is not printable ASCII: "
            f"{expected}{hint}"
        )
    try:
        url = urllib.parse.urlsplit(value)
        url_port = url.port
    except ValueError as err:
        raise ValueError(f"{printable(value)!r} is not a URL ({err}): {expected}") from None
    if url.scheme != "https" or not url.hostname:
        raise ValueError(
            f"expected an https:// URL such as {example}, got {printable(value)!r}: the host "
            f"{why} must not receive it in clear"
        )
    problem = host_name_problem(url.hostname)
    if problem:
        raise ValueError(f"the host of {printable(value)!r}: {problem}: {expected}")
    if (
        url.username is not None
        or url.password is not None
        or url.query
        or url.fragment
        or value.endswith(("?", "#"))
        or (not port and url_port not in (None, 443))
    ):
        raise ValueError(f"{expected}, got {printable(value)!r}")
    return value


# --- addresses and ranges ------------------------------------------------------------

_DOTTED = re.compile(r"(\d+)\.(\d+)\.(\d+)\.(\d+)(?:/(\d+))?")


def _leading_zeros_fix(value: str) -> str | None:
    """``010.001.0.0/08`` -> ``10.1.0.0/8``: the decimal reading of a dotted quad with
    leading zeros, offered as the fix (inet_aton would read 010 as octal 8)."""
    match = _DOTTED.fullmatch(value)
    if not match:
        return None
    octets = ".".join(str(int(o)) for o in match.groups()[:4])
    return octets + (f"/{int(match[5])}" if match[5] is not None else "")


def _canonical_network(value: str) -> str:
    """Refuse anything but the canonical CIDR text of a network, naming the canonical one.

    Python's ipaddress also reads netmasks (10.0.0.0/255.255.0.0), hostmasks
    (10.0.0.0/0.0.255.255), a prefix with leading zeros (/016), upper-case or
    uncompressed IPv6, and a bare address; other tools (ZeroTier Central, Calico,
    the clouds' firewall APIs) read some of these differently or not at all, and two
    spellings of one range would give two cloud rules.
    """
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        fix = _leading_zeros_fix(value)
        hint = f": leading zeros read as octal in some tools; write {fix}" if fix else ""
        raise ValueError(
            f"{printable(value)!r} is not a network in CIDR notation such as 10.147.0.0/16{hint}"
        ) from None
    canonical = str(network)
    if network.network_address != ipaddress.ip_address(value.split("/")[0]):
        address = value.split("/")[0]
        raise ValueError(
            f"{value!r} has host bits set: the network is {canonical}; write that, or "
            f"{address}/{network.max_prefixlen} for the one address"
        )
    if value != canonical:
        raise ValueError(f"{value!r} is not in canonical CIDR form: write {canonical}")
    return value


def _canonical_address(value: str) -> str:
    """Refuse anything but the canonical text of an IP address (as for ranges)."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        fix = _leading_zeros_fix(value)
        hint = f": leading zeros read as octal in some tools; write {fix}" if fix else ""
        raise ValueError(
            f"{printable(value)!r} is not an IP address such as 1.1.1.1{hint}"
        ) from None
    if value != str(address):
        raise ValueError(f"{value!r} is not in canonical form: write {address}")
    return value


def unique(values: Sequence[Any]) -> Sequence[Any]:
    """Refuse a list that names one value twice (in linear time)."""
    first: dict[Any, int] = {}
    for i, value in enumerate(values):
        if value in first:
            raise ValueError(
                f"[{i}]: {value} is listed twice (also at [{first[value]}]): each entry "
                "becomes its own rule; remove one"
            )
        first[value] = i
    return values


Cidr = Annotated[str, AfterValidator(_canonical_network)]
"""A network in canonical CIDR notation, without host bits (IPv4 or IPv6)."""
# Each source range becomes its own firewall rule per port (22 and 6443) on every site. A
# hard ceiling keeps plans (and validation time) bounded; whether a site's rules fit its
# quota (Neutron's default is 100 per project, neutron/conf/quota.py) is the preflight's
# `openstack-quota` check, against `sites.<name>.securityGroupRuleQuota` when declared.
MAX_SOURCE_CIDRS = 100


def _few_enough(values: Any) -> Any:
    if isinstance(values, list) and len(values) > MAX_SOURCE_CIDRS:
        raise ValueError(
            f"{len(values)} ranges; at most {MAX_SOURCE_CIDRS}: each becomes a firewall rule "
            "per port on every site (an OpenStack project allows 100 rules by default); "
            "merge neighbouring ranges into wider ones, or reach the nodes through one bastion"
        )
    return values


def _reachable_source(value: str) -> str:
    """A firewall source a packet from the deployer or an admin can come from: not
    loopback, link-local, multicast or the unspecified address (RFC 6890's special
    ranges a router never forwards), which as a rule source would admit nobody."""
    network = ipaddress.ip_network(value)
    for what, flag in (
        ("loopback", network.is_loopback),
        ("link-local", network.is_link_local),
        ("multicast", network.is_multicast),
        ("unspecified", network.num_addresses == 1 and network.network_address.is_unspecified),
    ):
        if flag:
            raise ValueError(
                f"{value} is {what}: no packet from an admin or the deployer comes from it; "
                "give the public (or VPN) range they connect from"
            )
    return value


CidrList = Annotated[
    list[Annotated[Cidr, AfterValidator(_reachable_source)]],
    BeforeValidator(_few_enough),
    Field(max_length=MAX_SOURCE_CIDRS),
    AfterValidator(unique),
]
"""Source ranges for firewall rules: canonical CIDRs, none twice, at most 100."""
IpAddress = Annotated[str, AfterValidator(_canonical_address)]
"""An IP address in canonical form (IPv4 or IPv6)."""


class ConfigModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        strict=False,
    )

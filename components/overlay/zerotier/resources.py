"""Pulumi dynamic resources for ZeroTier: an identity, a network and its members.

The providers are stateless and pickled by reference to this module (Pulumi pickles
dynamic providers with dill): the provider process imports this module, not the
program, so nothing here may depend on program state. The Central token is never
captured by a provider: it is a secret input on every call and kept in the secret
outputs, because ``delete`` only sees outputs.
"""

import contextlib
import ipaddress
import time
from collections.abc import Callable
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)
from pulumi.output import contains_unknowns

from .central import (
    DEFAULT_BASE_URL,
    CentralClient,
    CentralError,
    CentralNotFoundError,
    CentralServerError,
    CentralUnreachableError,
    NetworkNotFoundError,
)
from .naming import is_network_id, is_node_id

DEFAULT_MTU = 2800  # ZeroTier's default network MTU (ZT_DEFAULT_MTU); a created network gets it
_IDENTITY_OUTS = ("address", "public", "secret")
_NETWORK_INPUTS = (
    "token", "base_url", "adopt_network_id", "network_name", "description", "cidr", "mtu",
    "private", "rules_source",
)  # fmt: skip
_MEMBER_INPUTS = ("token", "base_url", "network_id", "node_id", "ip", "member_name", "description")


def _client(props: dict[str, Any]) -> CentralClient:
    return CentralClient(props["token"], props["base_url"])


def _pick(props: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: props.get(key) for key in keys}


def _unknown(value: Any) -> bool:
    """Not known yet. In a preview the engine sends the unknown sentinel for an input computed
    from an output it does not know yet (a node id, a network id), and the SDK's provider
    server hands check() and diff() a ``pulumi.output.Unknown`` for it, never the sentinel
    string: pulumi/dynamic/__main__.py ``Check``/``Diff`` deserialize with
    ``keep_unknowns=True``, and pulumi/runtime/rpc.py ``deserialize_property`` maps UNKNOWN
    to ``Unknown()``. Create, update and delete only ever see known values."""
    return contains_unknowns(value)


def _changed(olds: dict[str, Any], news: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    """Keys whose new value differs from the old one, or may: an unknown one counts as changed
    (Pulumi's convention: a preview shows what may happen, the update decides on known values)."""
    return [key for key in keys if _unknown(news.get(key)) or olds.get(key) != news.get(key)]


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_cidr(value: str) -> bool:
    try:
        ipaddress.ip_network(value)
    except ValueError:
        return False
    return True


_Rules = dict[str, tuple[Callable[[Any], bool], str]]
_NETWORK_RULES: _Rules = {
    "adopt_network_id": (is_network_id, "expected a network id: 16 lower-case hex digits"),
    "cidr": (_is_cidr, "expected a network like 10.147.0.0/16"),
    "mtu": (lambda mtu: 1280 <= mtu <= 10000, "expected an MTU within ZeroTier's 1280..10000"),
}
_MEMBER_RULES: _Rules = {
    "network_id": (is_network_id, "expected a network id: 16 lower-case hex digits"),
    "node_id": (is_node_id, "expected a node id: 10 lower-case hex digits"),
    "ip": (_is_ip, "expected an IP address"),
}


def _failures(news: dict[str, Any], rules: _Rules) -> list[CheckFailure]:
    """Check failures for the known inputs. An unknown one is not checked now: the engine
    calls check() again in the update, once it is known, before create or update."""
    return [
        CheckFailure(key, f"{message}, got {news[key]!r}")
        for key, (valid, message) in rules.items()
        if news.get(key) is not None and not _unknown(news[key]) and not valid(news[key])
    ]


def _secret_outputs(opts: pulumi.ResourceOptions | None, *names: str) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions.merge(
        opts, pulumi.ResourceOptions(additional_secret_outputs=list(names))
    )


class IdentityProvider(ResourceProvider):
    """Generates an identity once; it lives only in state, so nothing here calls out."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        # Imported here: numpy and cryptography cost about a second to import, and only
        # the provider process that creates an identity needs them (not previews).
        from .identity import generate_identity

        identity = generate_identity()
        outs = {"address": identity.address, "public": identity.public, "secret": identity.secret}
        return CreateResult(identity.address, outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, _pick(props, _IDENTITY_OUTS))

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> DiffResult:
        # There are no inputs: a node keeps its identity (and so its overlay address)
        # for as long as the resource exists.
        return DiffResult(changes=False, replaces=[], stables=list(_IDENTITY_OUTS))

    def update(self, _id: str, olds: dict[str, Any], _news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(_pick(olds, _IDENTITY_OUTS))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to delete outside Pulumi's state."""


def _network_settings(props: dict[str, Any], *, created: bool = False) -> dict[str, Any]:
    """What this resource owns of a network: the overlay route, no auto-assignment, and the
    MTU when one is given (a created network without one gets ``DEFAULT_MTU``; an adopted
    one keeps its own: Central merges the posted config field by field)."""
    config: dict[str, Any] = {
        "name": props["network_name"],
        "private": props["private"],
        "routes": [{"target": props["cidr"], "via": None}],
        "ipAssignmentPools": [],
        "v4AssignMode": {"zt": False},
    }
    mtu = props.get("mtu")
    if mtu is not None or created:
        config["mtu"] = int(mtu if mtu is not None else DEFAULT_MTU)
    settings: dict[str, Any] = {"description": props["description"], "config": config}
    if props.get("rules_source"):
        # Central compiles rulesSource into config.rules (see components/overlay/zerotier/rules.py)
        settings["rulesSource"] = props["rules_source"]
    return settings


# How far Central's clock may lag this machine's: a network Central stamped (config.creationTime,
# in ms) up to this long before a create was sent can still be that create's. (Central API v1:
# `GET /network` lists them, NetworkConfig.creationTime "Time the network was created";
# zerotier/go-ztcentral spec.json and network.go GetNetworks.)
_CLOCK_SLACK_MS = 300_000


def _create_network(client: CentralClient, settings: dict[str, Any]) -> str:
    """Create a network; returns its id. Central picks the id, and a create whose answer was
    lost (a timeout, a dropped connection, a 5xx; CentralClient does not retry it) may still
    have made the network. Then the networks Central lists with this name and description,
    stamped since the request was sent, are that create's: exactly one is taken as created,
    so the next `pulumi up` does not make a second beside an orphan; none: the create failed."""
    since = time.time() * 1000 - _CLOCK_SLACK_MS
    try:
        return str(client.create_network(settings)["id"])
    except (CentralUnreachableError, CentralServerError) as failure:
        name = settings["config"]["name"]
        try:
            listed = client.list_networks()
        except CentralError:
            raise CentralError(
                f"{failure}; it may have been created: before the next `pulumi up`, delete a "
                f"network named {name!r} made now in ZeroTier Central, if there is one"
            ) from None
        made = [
            str(network["id"])
            for network in listed
            if (network.get("config") or {}).get("name") == name
            and network.get("description") == settings["description"]
            and ((network.get("config") or {}).get("creationTime") or 0) >= since
        ]
        if len(made) == 1:
            return made[0]
        if made:
            raise CentralError(
                f"{failure}; ZeroTier Central now lists {len(made)} networks named {name!r} "
                f"made since ({', '.join(made)}): delete them there (new and empty), then run "
                "`pulumi up` again"
            ) from None
        raise


def _network_changes(olds: dict[str, Any], news: dict[str, Any]) -> list[str]:
    """Inputs that changed; an MTU no longer given is not a change (it is left as it is)."""
    return [
        key
        for key in _changed(olds, news, _NETWORK_INPUTS)
        if not (key == "mtu" and news.get("mtu") is None)
    ]


def _managed_cidr(config: dict[str, Any]) -> str | None:
    """The overlay CIDR if routing is exactly as this resource sets it, else None (drift)."""
    routes = config.get("routes") or []
    if (
        len(routes) == 1
        and not routes[0].get("via")
        and not config.get("ipAssignmentPools")
        and not (config.get("v4AssignMode") or {}).get("zt")
    ):
        return str(routes[0]["target"])
    return None


class NetworkProvider(ResourceProvider):
    """A ZeroTier network, created or adopted.

    An adopted network (``adopt_network_id`` set) is taken over: its name, description,
    privacy and routing are set like a created one's, its MTU only when ``mtu`` is given.
    It is never deleted; a created network is deleted with the resource. Changing the
    adoption target replaces.
    """

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, _failures(news, _NETWORK_RULES))

    def create(self, props: dict[str, Any]) -> CreateResult:
        client = _client(props)
        adopt = props.get("adopt_network_id")
        if adopt:
            client.update_network(adopt, _network_settings(props))
            network_id = adopt
        else:
            network_id = _create_network(client, _network_settings(props, created=True))
        return CreateResult(network_id, {**_pick(props, _NETWORK_INPUTS), "network_id": network_id})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        try:
            network = _client(props).get_network(id_)
        except NetworkNotFoundError:
            return ReadResult("", {})  # gone: a refresh drops it, the next update recreates it
        config = network.get("config", {})
        live = {
            "network_name": config.get("name", ""),
            "description": network.get("description", ""),
            # an MTU this resource does not set is not ours to report as drift
            "mtu": config.get("mtu") if props.get("mtu") is not None else None,
            "private": config.get("private"),
            "cidr": _managed_cidr(config),
            "rules_source": network.get("rulesSource") if props.get("rules_source") else None,
        }
        return ReadResult(id_, {**_pick(props, _NETWORK_INPUTS), **live, "network_id": id_})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = _changed(olds, news, ("adopt_network_id",))
        adopt = news.get("adopt_network_id")
        if adopt is not None and adopt == olds.get("network_id"):
            # Adopting the very network this resource manages is an update: it stays, and is
            # kept on delete from now on. Replaced (create first), the old state's delete
            # would delete the network the new state just adopted.
            replaces = []
        changed = _network_changes(olds, news)
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=False)

    def update(self, id_: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        _client(news).update_network(id_, _network_settings(news))
        return UpdateResult({**_pick(news, _NETWORK_INPUTS), "network_id": id_})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        if props.get("adopt_network_id"):
            return
        with contextlib.suppress(NetworkNotFoundError):
            _client(props).delete_network(id_)


class MemberProvider(ResourceProvider):
    """A node pre-authorized on a network with one fixed overlay IP.

    A member deleted or de-authorized behind Pulumi's back reads as gone, so
    ``pulumi up --refresh`` authorizes it again.
    """

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, _failures(news, _MEMBER_RULES))

    def _authorize(self, props: dict[str, Any]) -> dict[str, Any]:
        _client(props).upsert_member(
            props["network_id"],
            props["node_id"],
            authorized=True,
            ip=props["ip"],
            name=props["member_name"],
            description=props["description"],
        )
        return _pick(props, _MEMBER_INPUTS)

    def create(self, props: dict[str, Any]) -> CreateResult:
        outs = self._authorize(props)
        return CreateResult(f"{props['network_id']}-{props['node_id']}", outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        member = _client(props).get_member(props["network_id"], props["node_id"])
        config = (member or {}).get("config", {})
        if member is None or not config.get("authorized"):
            return ReadResult("", {})
        ips = config.get("ipAssignments") or []
        live = {
            "ip": ips[0] if len(ips) == 1 else ",".join(ips),
            "member_name": member.get("name", ""),
            "description": member.get("description", ""),
        }
        return ReadResult(id_, {**_pick(props, _MEMBER_INPUTS), **live})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = _changed(olds, news, ("network_id", "node_id"))
        changed = _changed(olds, news, _MEMBER_INPUTS)
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self._authorize(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        client = _client(props)
        network_id, node_id = props["network_id"], props["node_id"]
        with contextlib.suppress(CentralNotFoundError):
            # De-authorize first: if the delete fails, the node is at least cut off.
            client.upsert_member(network_id, node_id, authorized=False)
            client.delete_member(network_id, node_id)


class ZeroTierIdentity(Resource, module="zerotier", name="Identity"):
    """A ZeroTier identity, generated once and kept in state (``secret`` is secret)."""

    address: pulumi.Output[str]
    public: pulumi.Output[str]
    secret: pulumi.Output[str]

    def __init__(self, resource_name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        props = dict.fromkeys(_IDENTITY_OUTS)
        super().__init__(IdentityProvider(), resource_name, props, _secret_outputs(opts, "secret"))


class ZeroTierNetwork(Resource, module="zerotier", name="Network"):
    """A ZeroTier network routing ``cidr``, addresses assigned only by members' fixed IPs,
    and, with ``rules_source``, those flow rules (``components/overlay/zerotier/rules.py``).

    With ``network_id`` the existing network is adopted and never deleted. ``mtu`` None:
    ZeroTier's default for a created network, the network's own for an adopted one.
    """

    network_id: pulumi.Output[str]
    network_name: pulumi.Output[str]
    cidr: pulumi.Output[str]
    mtu: pulumi.Output[int | None]

    def __init__(
        self,
        resource_name: str,
        *,
        token: pulumi.Input[str],
        cidr: pulumi.Input[str],
        network_name: pulumi.Input[str] | None = None,
        description: pulumi.Input[str] = "",
        network_id: pulumi.Input[str] | None = None,
        mtu: pulumi.Input[int] | None = None,
        private: pulumi.Input[bool] = True,
        rules_source: pulumi.Input[str] | None = None,
        base_url: pulumi.Input[str] = DEFAULT_BASE_URL,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "token": pulumi.Output.secret(token),
            "base_url": base_url,
            "adopt_network_id": network_id,
            "network_name": resource_name if network_name is None else network_name,
            "description": description,
            "cidr": cidr,
            "mtu": mtu,
            "private": private,
            "rules_source": rules_source,
            "network_id": None,
        }
        super().__init__(NetworkProvider(), resource_name, props, _secret_outputs(opts, "token"))


class ZeroTierMember(Resource, module="zerotier", name="Member"):
    """Node ``node_id`` authorized on ``network_id`` with the fixed overlay IP ``ip``."""

    network_id: pulumi.Output[str]
    node_id: pulumi.Output[str]
    ip: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        token: pulumi.Input[str],
        network_id: pulumi.Input[str],
        node_id: pulumi.Input[str],
        ip: pulumi.Input[str],
        member_name: pulumi.Input[str] | None = None,
        description: pulumi.Input[str] = "",
        base_url: pulumi.Input[str] = DEFAULT_BASE_URL,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "token": pulumi.Output.secret(token),
            "base_url": base_url,
            "network_id": network_id,
            "node_id": node_id,
            "ip": ip,
            "member_name": resource_name if member_name is None else member_name,
            "description": description,
        }
        super().__init__(MemberProvider(), resource_name, props, _secret_outputs(opts, "token"))

"""ZeroTier dynamic providers against the fake Central, and how the resources register."""

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest
from google.protobuf import json_format
from pulumi.dynamic import CreateResult, ReadResult, UpdateResult
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.output import Unknown

from components.overlay.zerotier import identity as identity_module
from components.overlay.zerotier.central import CentralRateLimitError, NetworkNotFoundError
from components.overlay.zerotier.identity import Identity
from components.overlay.zerotier.resources import (
    IdentityProvider,
    MemberProvider,
    NetworkProvider,
    ZeroTierIdentity,
    ZeroTierMember,
    ZeroTierNetwork,
)
from tests.support.fake_central import TOKEN, FakeCentral, central_fixture  # noqa: F401
from tests.support.mocking import Recorder

ROOT = Path(__file__).resolve().parents[3]
SIG_KEY, SECRET_SIG = "4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"
NODE = "8e4df28b72"
KNOWN_GOOD = (
    "8e4df28b72:0:ac3d46abe0c21f3cfe7a6c8d6a85cfcffcb82fbd55af6a4d6350657c68200843fa2e16f9418bbd"
    "9702cae365f2af5fb4c420908b803a681d4daef6114d78a2d7:bd8dd6e4ce7022d2f812797a80c6ee8ad180dc4e"
    "bf301dec8b06d1be08832bddd63a2f1cfa7b2c504474c75bdc8898ba476ef92e8e2d0509f8441985171ff16e"
)


def network_props(central: FakeCentral, **overrides: Any) -> dict[str, Any]:
    props = {
        "token": TOKEN,
        "base_url": central.url,
        "adopt_network_id": None,
        "network_name": "mc-overlay",
        "description": "cluster overlay",
        "cidr": "10.147.0.0/16",
        "mtu": 2800.0,  # numbers reach providers as floats
        "private": True,
        "network_id": None,
        "__provider": "serialized",
    }
    return props | overrides


def member_props(central: FakeCentral, network_id: str, **overrides: Any) -> dict[str, Any]:
    props = {
        "token": TOKEN,
        "base_url": central.url,
        "network_id": network_id,
        "node_id": NODE,
        "ip": "10.147.0.10",
        "member_name": "mc-home-master-0",
        "description": "",
        "__provider": "serialized",
    }
    return props | overrides


def outs(result: CreateResult | ReadResult | UpdateResult) -> dict[str, Any]:
    assert result.outs is not None
    return result.outs


# --- identity ---------------------------------------------------------------------------


def test_identity_is_generated_once_and_never_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    known = Identity(KNOWN_GOOD[:10], KNOWN_GOOD.rsplit(":", 1)[0], KNOWN_GOOD)
    monkeypatch.setattr(identity_module, "generate_identity", lambda: known)
    provider = IdentityProvider()
    created = provider.create({"address": None, "public": None, "secret": None})
    assert created.id == known.address
    assert outs(created) == {"address": known.address, "public": known.public, "secret": KNOWN_GOOD}
    state = {**outs(created), "__provider": "old"}
    diff = provider.diff(known.address, state, {"__provider": "new", "address": None})
    assert diff.changes is False and not diff.replaces
    assert provider.update(known.address, state, {}).outs == outs(created)
    read = provider.read(known.address, state)
    assert (read.id, outs(read)) == (known.address, outs(created))
    provider.delete(known.address, state)


# --- network ----------------------------------------------------------------------------


def test_network_create_read_update_delete(central: FakeCentral) -> None:
    provider = NetworkProvider()
    props = network_props(central)
    created = provider.create(props)
    network_id = created.id
    assert outs(created)["network_id"] == network_id
    config = central.networks[network_id]["config"]
    assert config["routes"] == [{"target": "10.147.0.0/16", "via": None}]
    assert (config["ipAssignmentPools"], config["v4AssignMode"]) == ([], {"zt": False})
    assert (config["name"], config["mtu"], config["private"]) == ("mc-overlay", 2800, True)
    assert central.networks[network_id]["description"] == "cluster overlay"

    read = provider.read(network_id, outs(created))
    assert read.id == network_id
    assert provider.diff(network_id, outs(read), props).changes is False

    news = network_props(central, network_name="renamed", mtu=1400.0)
    diff = provider.diff(network_id, outs(created), news)
    assert diff.changes and not diff.replaces
    updated = provider.update(network_id, outs(created), news)
    assert outs(updated)["network_id"] == network_id
    assert central.networks[network_id]["config"]["name"] == "renamed"
    assert central.networks[network_id]["config"]["mtu"] == 1400

    provider.delete(network_id, outs(updated))
    assert network_id not in central.networks
    provider.delete(network_id, outs(updated))  # already gone: fine
    assert provider.read(network_id, outs(updated)).id == ""


def test_network_routing_drift_is_seen_and_repaired(central: FakeCentral) -> None:
    provider = NetworkProvider()
    props = network_props(central)
    created = provider.create(props)
    central.networks[created.id]["config"]["v4AssignMode"] = {"zt": True}
    read = provider.read(created.id, outs(created))
    assert outs(read)["cidr"] is None
    assert provider.diff(created.id, outs(read), props).changes
    provider.update(created.id, outs(read), props)
    assert outs(provider.read(created.id, outs(created)))["cidr"] == "10.147.0.0/16"


def test_adopted_network_is_configured_but_never_created_or_deleted(central: FakeCentral) -> None:
    existing = central.add_network("8056c2e21c000001", name="theirs")
    provider = NetworkProvider()
    props = network_props(central, adopt_network_id=existing)
    created = provider.create(props)
    assert created.id == existing and list(central.networks) == [existing]
    assert central.networks[existing]["config"]["routes"][0]["target"] == "10.147.0.0/16"
    provider.delete(existing, outs(created))
    assert existing in central.networks
    assert not any(method == "DELETE" for method, _ in central.requests)


def test_created_network_without_an_mtu_gets_zerotiers_default(central: FakeCentral) -> None:
    created = NetworkProvider().create(network_props(central, mtu=None))
    assert central.networks[created.id]["config"]["mtu"] == 2800


def test_adopted_network_keeps_its_mtu_unless_one_is_given(central: FakeCentral) -> None:
    # a network whose MTU was lowered by hand (the usual fix for stalled large transfers)
    existing = central.add_network("8056c2e21c000001", name="theirs", mtu=1400)
    provider = NetworkProvider()
    props = network_props(central, adopt_network_id=existing, mtu=None)
    created = provider.create(props)
    assert central.networks[existing]["config"]["mtu"] == 1400
    # an update (another input changed) leaves it too, and nothing reads as drift
    renamed = network_props(central, adopt_network_id=existing, mtu=None, network_name="mc-2")
    assert provider.diff(existing, outs(created), renamed).changes
    updated = provider.update(existing, outs(created), renamed)
    assert central.networks[existing]["config"]["mtu"] == 1400
    read = provider.read(existing, outs(updated))
    assert outs(read)["mtu"] is None
    assert provider.diff(existing, outs(read), renamed).changes is False
    # state written before the setting existed held mtu 2800: dropping it is no change
    legacy = {**outs(updated), "mtu": 2800.0}
    assert provider.diff(existing, legacy, renamed).changes is False
    # given explicitly, it is applied and then kept in step with Central
    lowered = network_props(central, adopt_network_id=existing, mtu=1200.0, network_name="mc-2")
    assert provider.diff(existing, outs(read), lowered).changes
    provider.update(existing, outs(read), lowered)
    assert central.networks[existing]["config"]["mtu"] == 1200
    central.networks[existing]["config"]["mtu"] = 2800  # changed behind our back
    drifted = provider.read(existing, lowered)
    assert outs(drifted)["mtu"] == 2800
    assert provider.diff(existing, outs(drifted), lowered).changes


def test_adopting_a_missing_network_fails_clearly(central: FakeCentral) -> None:
    props = network_props(central, adopt_network_id="0123456789abcdef")
    with pytest.raises(NetworkNotFoundError, match="0123456789abcdef"):
        NetworkProvider().create(props)


def test_only_the_adoption_target_replaces_a_network(central: FakeCentral) -> None:
    # check() and diff() get an Unknown for a value not known yet in a preview
    # (tests/components/overlay/test_dynamic_provider_grpc.py drives them through the SDK's server)
    provider = NetworkProvider()
    olds = network_props(central, network_id="8056c2e21c000001")
    adopt = network_props(central, adopt_network_id="8056c2e21c000002")
    assert provider.diff("x", olds, adopt).replaces == ["adopt_network_id"]
    unknown = network_props(central, adopt_network_id=Unknown())
    assert provider.diff("x", olds, unknown).replaces == ["adopt_network_id"]
    # adopting the network it manages already: an update, never a replacement
    itself = provider.diff("x", olds, network_props(central, adopt_network_id=olds["network_id"]))
    assert itself.changes and itself.replaces == []
    cidr = network_props(central, cidr="10.148.0.0/16")
    assert provider.diff("x", olds, cidr).replaces == []
    computed = provider.diff("x", olds, network_props(central, cidr=Unknown(), mtu=Unknown()))
    assert computed.changes and computed.replaces == []


def test_network_check(central: FakeCentral) -> None:
    bad = network_props(central, adopt_network_id="XYZ", cidr="10.147.0.0/33", mtu=100.0)
    failures = NetworkProvider().check({}, bad).failures
    assert {f.property for f in failures} == {"adopt_network_id", "cidr", "mtu"}
    unknown = network_props(central, cidr=Unknown(), adopt_network_id=Unknown(), mtu=Unknown())
    assert NetworkProvider().check({}, unknown).failures == []


# --- member -----------------------------------------------------------------------------


def test_member_create_read_update_delete(central: FakeCentral) -> None:
    network_id = central.add_network()
    provider = MemberProvider()
    props = member_props(central, network_id)
    created = provider.create(props)
    assert created.id == f"{network_id}-{NODE}"
    member = central.members[(network_id, NODE)]
    assert member["config"] == {
        "authorized": True,
        "ipAssignments": ["10.147.0.10"],
        "noAutoAssignIps": True,
    }
    assert member["name"] == "mc-home-master-0"
    assert "__provider" not in outs(created)

    read = provider.read(created.id, outs(created))
    assert read.id == created.id
    assert provider.diff(created.id, outs(read), props).changes is False

    news = member_props(central, network_id, ip="10.147.0.11", description="moved")
    diff = provider.diff(created.id, outs(created), news)
    assert diff.changes and diff.replaces == []
    updated = provider.update(created.id, outs(created), news)
    assert central.members[(network_id, NODE)]["config"]["ipAssignments"] == ["10.147.0.11"]
    assert outs(updated)["ip"] == "10.147.0.11"

    central.requests.clear()
    provider.delete(created.id, outs(updated))
    assert (network_id, NODE) not in central.members
    assert [method for method, _ in central.requests] == ["POST", "DELETE"]


def test_member_deleted_or_deauthorized_behind_our_back_reads_as_gone(
    central: FakeCentral,
) -> None:
    network_id = central.add_network()
    provider = MemberProvider()
    created = provider.create(member_props(central, network_id))
    central.members[(network_id, NODE)]["config"]["authorized"] = False
    assert provider.read(created.id, outs(created)).id == ""
    del central.members[(network_id, NODE)]
    assert provider.read(created.id, outs(created)).id == ""
    provider.create(member_props(central, network_id))  # what `up --refresh` then does
    assert central.members[(network_id, NODE)]["config"]["authorized"] is True
    provider.delete(created.id, outs(created))
    provider.delete(created.id, outs(created))  # already gone: fine
    central.networks.clear()
    provider.delete(created.id, outs(created))  # network gone too: fine


def test_member_ip_drift_shows_as_a_change(central: FakeCentral) -> None:
    network_id = central.add_network()
    provider = MemberProvider()
    props = member_props(central, network_id)
    created = provider.create(props)
    central.members[(network_id, NODE)]["config"]["ipAssignments"].append("10.147.9.9")
    read = provider.read(created.id, props)
    assert outs(read)["ip"] == "10.147.0.10,10.147.9.9"
    assert provider.diff(created.id, outs(read), props).changes


def test_member_identity_changes_replace(central: FakeCentral) -> None:
    olds = member_props(central, "8056c2e21c000001")
    provider = MemberProvider()
    node = member_props(central, "8056c2e21c000001", node_id="1c41190849")
    assert provider.diff("x", olds, node).replaces == ["node_id"]
    network = member_props(central, Unknown())
    assert provider.diff("x", olds, network).replaces == ["network_id"]
    both = member_props(central, Unknown(), node_id=Unknown())
    assert provider.diff("x", olds, both).replaces == ["network_id", "node_id"]
    ip = provider.diff("x", olds, member_props(central, "8056c2e21c000001", ip=Unknown()))
    assert ip.changes and ip.replaces == []


def test_rate_limited_burst_during_member_create(central: FakeCentral) -> None:
    network_id = central.add_network()
    central.fail_next(429, 3)
    created = MemberProvider().create(member_props(central, network_id))
    assert created.id == f"{network_id}-{NODE}"
    central.fail_next(429, 20)
    with pytest.raises(CentralRateLimitError) as caught:
        MemberProvider().create(member_props(central, network_id))
    assert TOKEN not in str(caught.value)


def test_member_check(central: FakeCentral) -> None:
    bad = member_props(central, "8056c2e21c00000", node_id="zz", ip="10.147.0.300")
    failures = MemberProvider().check({}, bad).failures
    assert {f.property for f in failures} == {"network_id", "node_id", "ip"}
    unknown = member_props(central, Unknown(), node_id=Unknown(), ip=Unknown())
    assert MemberProvider().check({}, unknown).failures == []
    partly = member_props(central, Unknown(), node_id=Unknown(), ip="10.147.0.300")
    assert [f.property for f in MemberProvider().check({}, partly).failures] == ["ip"]


# --- pickling and registration ----------------------------------------------------------


@pytest.mark.parametrize("provider", [IdentityProvider(), NetworkProvider(), MemberProvider()])
def test_providers_pickle_by_reference_and_load_in_a_fresh_process(provider: Any) -> None:
    serialized = serialize_provider(provider)
    assert b"components.overlay.zerotier.resources" in base64.b64decode(serialized)
    code = (
        "import base64, dill, sys\n"
        "provider = dill.loads(base64.b64decode(sys.stdin.read()))\n"
        "sys.stdout.write(type(provider).__module__ + '.' + type(provider).__qualname__)\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code],
        input=serialized,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout == f"components.overlay.zerotier.resources.{type(provider).__name__}"


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        return {}, []


def test_resources_register_with_secrets_and_no_token_in_the_provider() -> None:
    pulumi.runtime.reset_options()
    mocks = Mocks()
    recorder = Recorder(mocks)
    pulumi.runtime.set_mocks(mocks, preview=False, monitor=recorder)
    seen: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        identity = ZeroTierIdentity(
            "node", opts=pulumi.ResourceOptions(additional_secret_outputs=["public"])
        )
        network = ZeroTierNetwork("overlay", token=TOKEN, cidr="10.147.0.0/16")
        member = ZeroTierMember(
            "node",
            token=TOKEN,
            network_id=network.network_id,
            node_id=identity.address,
            ip="10.147.0.10",
        )
        return pulumi.Output.all(member.ip, network.cidr).apply(lambda v: seen.update(outs=v))

    program()
    by_type = {request.type: request for request in recorder.requests}
    identity = by_type["pulumi-python:dynamic/zerotier:Identity"]
    network = by_type["pulumi-python:dynamic/zerotier:Network"]
    member = by_type["pulumi-python:dynamic/zerotier:Member"]
    assert sorted(identity.additionalSecretOutputs) == ["public", "secret"]
    assert list(network.additionalSecretOutputs) == ["token"]
    assert list(member.additionalSecretOutputs) == ["token"]
    assert seen["outs"] == ["10.147.0.10", "10.147.0.0/16"]
    for request in (network, member):
        inputs = json_format.MessageToDict(request.object)
        assert inputs["token"] == {SIG_KEY: SECRET_SIG, "value": TOKEN}
        assert inputs["__provider"][SIG_KEY] == SECRET_SIG
        assert TOKEN.encode() not in base64.b64decode(inputs["__provider"]["value"])
    assert json_format.MessageToDict(network.object)["network_name"] == "overlay"
    assert json_format.MessageToDict(member.object)["member_name"] == "node"

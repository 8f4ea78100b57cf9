"""The ZeroTier providers driven as the Pulumi engine drives them, against the fake Central.

The program (``Overlay``) registers its resources under mocks that answer as the engine
does; what it registers is sent, as the engine sends it, to the SDK's own dynamic-provider
server (``python -m pulumi.dynamic``, the process the engine starts for Python dynamic
providers) over gRPC: Configure, then Check, Diff, Create, Update and Delete, with
``__provider`` holding the provider the SDK serialized (pulumi/dynamic/dynamic.py
``serialize_provider``). How the engine calls a provider follows pulumi
sdk/go/common/resource/plugin/provider_plugin.go (``Check``, ``Diff``, ``Create``,
``Update``, ``Delete``): in a preview unknown inputs are the UNKNOWN sentinel string, and a
provider that answers Configure with ``acceptSecrets: false`` gets secrets unwrapped.
"""

from __future__ import annotations

import select
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pulumi
import pytest
from google.protobuf import json_format, struct_pb2
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc
from pulumi.runtime.rpc import UNKNOWN

from components.nodes import NodeSpec
from components.overlay.network import Overlay
from tests.support.fake_central import TOKEN, FakeCentral, central_fixture  # noqa: F401
from tests.support.mocking import Recorder

ROOT = Path(__file__).resolve().parents[3]
SIG_KEY, SECRET_SIG = "4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"
NODES = {"mc-home-master-0": "8e4df28b72", "mc-do-worker-0": "1c41190849"}
NETWORK, MEMBERS = "overlay-network", [f"{name}-zt-member" for name in NODES]
Props = dict[str, Any]


@dataclass
class State:
    """A resource as the engine keeps it: id, checked inputs and outputs."""

    id: str
    inputs: Props
    outputs: Props


@dataclass
class Engine:
    """The provider calls of the engine (provider_plugin.go), over the SDK's gRPC stubs."""

    stub: provider_pb2_grpc.ResourceProviderStub
    accept_secrets: bool
    types: dict[str, str] = field(default_factory=dict)

    def _struct(self, props: Props) -> struct_pb2.Struct:
        struct = struct_pb2.Struct()
        struct.update(props if self.accept_secrets else _unwrap_secrets(props))
        return struct

    def _urn(self, name: str) -> str:
        return f"urn:pulumi:test::multicloud::{self.types[name]}::{name}"

    def check(self, name: str, olds: Props, news: Props) -> tuple[Props, dict[str, str]]:
        response = self.stub.Check(
            provider_pb2.CheckRequest(
                urn=self._urn(name), olds=self._struct(olds), news=self._struct(news)
            )
        )
        failures = {failure.property: failure.reason for failure in response.failures}
        return json_format.MessageToDict(response.inputs), failures

    def diff(self, name: str, old: State, news: Props) -> provider_pb2.DiffResponse:
        request = provider_pb2.DiffRequest(
            id=old.id,
            urn=self._urn(name),
            olds=self._struct(old.outputs),
            old_inputs=self._struct(old.inputs),
            news=self._struct(news),
        )
        response: provider_pb2.DiffResponse = self.stub.Diff(request)
        return response

    def create(self, name: str, inputs: Props) -> State:
        request = provider_pb2.CreateRequest(urn=self._urn(name), properties=self._struct(inputs))
        response = self.stub.Create(request)
        assert response.id
        return State(response.id, inputs, json_format.MessageToDict(response.properties))

    def update(self, name: str, old: State, inputs: Props) -> State:
        request = provider_pb2.UpdateRequest(
            id=old.id,
            urn=self._urn(name),
            olds=self._struct(old.outputs),
            old_inputs=self._struct(old.inputs),
            news=self._struct(inputs),
        )
        response = self.stub.Update(request)
        return State(old.id, inputs, json_format.MessageToDict(response.properties))

    def delete(self, name: str, old: State) -> None:
        self.stub.Delete(
            provider_pb2.DeleteRequest(
                id=old.id,
                urn=self._urn(name),
                properties=self._struct(old.outputs),
                old_inputs=self._struct(old.inputs),
            )
        )

    def step(
        self, name: str, news: Props, old: State | None, *, preview: bool
    ) -> tuple[str, State | None]:
        """One resource through the step generator: check, diff, and (not in a preview) the
        create or update; a replacement is create-first and leaves the delete of ``old`` to
        the caller, as the engine deletes replaced resources after their dependents."""
        inputs, failures = self.check(name, old.inputs if old else {}, news)
        assert failures == {}, failures
        if old is None:
            op = "create"
        else:
            diff = self.diff(name, old, inputs)
            if diff.replaces:
                op = "replace"
            elif diff.changes == provider_pb2.DiffResponse.DIFF_SOME:
                op = "update"
            else:
                assert diff.changes == provider_pb2.DiffResponse.DIFF_NONE, diff
                op = "same"
        if preview:  # no preview support: the engine calls neither Create nor Update
            return op, None
        if op in ("create", "replace"):
            return op, self.create(name, inputs)
        if op == "update":
            assert old is not None
            return op, self.update(name, old, inputs)
        return op, old


def _unwrap_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return _unwrap_secrets(value["value"])
        return {key: _unwrap_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unwrap_secrets(item) for item in value]
    return value


@pytest.fixture(name="engine", scope="module")
def engine_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The SDK's dynamic-provider server, started as the Pulumi CLI's
    ``pulumi-resource-pulumi-python`` shim starts it: ``python -u -m pulumi.dynamic`` in the
    program's directory (unbuffered: it prints its port and keeps running)."""
    log = tmp_path_factory.mktemp("dynamic") / "stderr"
    with log.open("wb") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-u", "-m", "pulumi.dynamic"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], 60)
        port = server.stdout.readline().decode().strip() if ready else ""
        assert port.isdigit(), f"no port from pulumi.dynamic: {log.read_text()}"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = provider_pb2_grpc.ResourceProviderStub(channel)
            configured = stub.Configure(
                provider_pb2.ConfigureRequest(
                    acceptSecrets=True, acceptResources=True, args=struct_pb2.Struct()
                )
            )
            yield Engine(stub, configured.acceptSecrets)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


class Answers(pulumi.runtime.Mocks):
    """What the engine hands the program back for each registration.

    ``network``: the network resource's id, "" while unknown (created or replaced in a
    preview). In a preview a dynamic resource's outputs are its inputs (provider_plugin.go
    ``Create``/``Update`` without preview support), so ``network_id`` is unknown there.
    ``known_nodes``: identities that exist already (a same step keeps their outputs).
    """

    def __init__(self, *, preview: bool, network: str, known_nodes: bool) -> None:
        self.preview, self.network, self.known_nodes = preview, network, known_nodes

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, Props]:
        inputs = {k: v for k, v in args.inputs.items() if k != "__provider"}
        if args.typ.endswith(":Network"):
            outputs = inputs if self.preview else inputs | {"network_id": self.network}
            return self.network, outputs
        if args.typ.endswith(":Identity"):
            if not self.known_nodes:
                return "", {}
            node = NODES[args.name.removesuffix("-zt-identity")]
            return node, {"address": node, "public": f"{node}:0:ab", "secret": f"{node}:0:ab:cd"}
        return ("" if self.preview else f"{args.name}-id"), inputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[Props, list[Any]]:
        return {}, []


def registered(
    engine: Engine, central: FakeCentral, answers: Answers, **overlay: Any
) -> dict[str, Props]:
    """The inputs ``Overlay`` registers (as the engine receives them), by resource name."""
    pulumi.runtime.reset_options()
    recorder = Recorder(answers)
    pulumi.runtime.set_mocks(answers, preview=answers.preview, monitor=recorder)
    nodes = [
        NodeSpec(name, "home", "master", 0, ("etcd",), "m1", f"10.147.0.{10 + i}", "none")
        for i, name in enumerate(NODES)
    ]

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        built = Overlay(
            "overlay",
            cluster_name="mc",
            nodes=nodes,
            overlay_cidr="10.147.0.0/16",
            token=pulumi.Output.secret(TOKEN),
            network_id=overlay.get("adopt"),
            central_url=central.url,
            mtu=overlay.get("mtu"),
        )
        return built.network_id

    program()
    inputs = {}
    for request in recorder.requests:
        if request.custom:
            engine.types[request.name] = request.type
            inputs[request.name] = json_format.MessageToDict(request.object)
    return inputs


def deployed(engine: Engine, central: FakeCentral) -> dict[str, State]:
    """A first `pulumi up` of the overlay (the identities exist: their provider is not under
    test), through the provider server against the fake Central."""
    # the network's inputs depend on nothing: read them from the preview's registration
    inputs = registered(engine, central, Answers(preview=True, network="", known_nodes=True))
    op, network = engine.step(NETWORK, inputs[NETWORK], None, preview=False)
    assert op == "create" and network is not None
    answers = Answers(preview=False, network=network.id, known_nodes=True)
    inputs = registered(engine, central, answers)
    states = {NETWORK: network}
    for member in MEMBERS:
        op, state = engine.step(member, inputs[member], None, preview=False)
        assert op == "create" and state is not None
        states[member] = state
    return states


def test_first_deploy_preview_checks_with_unknown_ids(engine: Engine, central: FakeCentral) -> None:
    answers = Answers(preview=True, network="", known_nodes=False)
    inputs = registered(engine, central, answers)
    assert engine.step(NETWORK, inputs[NETWORK], None, preview=True)[0] == "create"
    for member in MEMBERS:
        assert (inputs[member]["network_id"], inputs[member]["node_id"]) == (UNKNOWN, UNKNOWN)
        checked, failures = engine.check(member, {}, inputs[member])
        assert failures == {}
        assert (checked["network_id"], checked["node_id"]) == (UNKNOWN, UNKNOWN)
        # known inputs are still checked beside unknown ones
        bad = inputs[member] | {"ip": "10.147.0.300"}
        assert set(engine.check(member, {}, bad)[1]) == {"ip"}
    network_bad = inputs[NETWORK] | {"cidr": UNKNOWN, "mtu": 100}
    assert set(engine.check(NETWORK, {}, network_bad)[1]) == {"mtu"}
    assert central.requests == []  # a preview changes nothing


def test_deploy_change_and_replace_the_network(engine: Engine, central: FakeCentral) -> None:
    states = deployed(engine, central)
    first = states[NETWORK].id
    assert {(nw, node) for nw, node in central.members} == {(first, n) for n in NODES.values()}
    assert all(m["config"]["authorized"] for m in central.members.values())

    # An in-place change of the network (its MTU): the network updates, members stay.
    preview = Answers(preview=True, network=first, known_nodes=True)
    inputs = registered(engine, central, preview, mtu=1400)
    assert engine.step(NETWORK, inputs[NETWORK], states[NETWORK], preview=True)[0] == "update"
    for member in MEMBERS:
        assert engine.step(member, inputs[member], states[member], preview=True)[0] == "same"
    op, network = engine.step(NETWORK, inputs[NETWORK], states[NETWORK], preview=False)
    assert op == "update" and network is not None and network.id == first
    states[NETWORK] = network
    assert central.networks[first]["config"]["mtu"] == 1400
    inputs = registered(engine, central, Answers(preview=False, network=first, known_nodes=True))
    for member in MEMBERS:
        assert engine.step(member, inputs[member], states[member], preview=False)[0] == "same"

    # Adopting another network replaces the network, and with it every member.
    other = central.add_network("8056c2e21c000001", name="theirs")
    preview = Answers(preview=True, network="", known_nodes=True)
    inputs = registered(engine, central, preview, adopt=other, mtu=1400)
    assert engine.step(NETWORK, inputs[NETWORK], states[NETWORK], preview=True)[0] == "replace"
    for member in MEMBERS:
        assert inputs[member]["network_id"] == UNKNOWN
        assert engine.step(member, inputs[member], states[member], preview=True)[0] == "replace"
    op, network = engine.step(NETWORK, inputs[NETWORK], states[NETWORK], preview=False)
    assert op == "replace" and network is not None and network.id == other
    inputs = registered(engine, central, Answers(preview=False, network=other, known_nodes=True))
    replaced = {}
    for member in MEMBERS:
        op, state = engine.step(member, inputs[member], states[member], preview=False)
        assert op == "replace" and state is not None
        replaced[member] = state
    for member in MEMBERS:  # the engine deletes the replaced: dependents first
        engine.delete(member, states[member])
    engine.delete(NETWORK, states[NETWORK])
    assert list(central.networks) == [other]  # the created network is gone, the adopted stays
    assert set(central.members) == {(other, node) for node in NODES.values()}
    assert central.networks[other]["config"]["routes"] == [{"target": "10.147.0.0/16", "via": None}]

    # `pulumi destroy`: members go, the adopted network stays.
    for member in MEMBERS:
        engine.delete(member, replaced[member])
    engine.delete(NETWORK, network)
    assert list(central.networks) == [other] and central.members == {}


def test_adopting_the_network_it_manages_keeps_it(engine: Engine, central: FakeCentral) -> None:
    # The stack pins zerotierNetworkId to the network it created: no replacement, whose
    # delete of the old state would delete that very network.
    states = deployed(engine, central)
    network_id = states[NETWORK].id
    answers = Answers(preview=True, network=network_id, known_nodes=True)
    inputs = registered(engine, central, answers, adopt=network_id)
    assert engine.step(NETWORK, inputs[NETWORK], states[NETWORK], preview=True)[0] == "update"
    for member in MEMBERS:
        assert engine.step(member, inputs[member], states[member], preview=True)[0] == "same"
    op, network = engine.step(NETWORK, inputs[NETWORK], states[NETWORK], preview=False)
    assert op == "update" and network is not None
    for member in MEMBERS:
        engine.delete(member, states[member])
    engine.delete(NETWORK, network)  # now adopted: kept
    assert list(central.networks) == [network_id] and central.members == {}

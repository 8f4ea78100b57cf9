"""The stand-in cloud providers (tests/engine/providers/), called over gRPC as the engine
calls them: resource lifecycles, replacement from reference/force-new.json, secrets and
unknowns on the wire, the shared fake cloud's checks, faults and event log, and the plugins
installed with the real CLI."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from google.protobuf import empty_pb2
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from scripts.offline import SECRET_SIG, SIG_KEY, UNKNOWN, is_secret, reveal
from tests.engine.plugins import install_fake_plugins
from tests.engine.providers.cloud import FakeCloud
from tests.engine.providers.server import (
    FORCE_NEW,
    PACKAGES,
    FakeProvider,
    from_struct,
    kubernetes_config_replaces,
    plugin_version,
    to_struct,
)

INSTANCE = "openstack:compute/instance:Instance"
DROPLET = "digitalocean:index/droplet:Droplet"
PASSWORD = "random:index/randomPassword:RandomPassword"
KEY = "tls:index/privateKey:PrivateKey"
RECORD = "cloudflare:index/dnsRecord:DnsRecord"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"
IDENTITY = "89e92ceee5:0:" + "ab" * 64 + ":" + "cd" * 64  # the shape of an identity.secret

Stub = provider_pb2_grpc.ResourceProviderStub


def secret(value: Any) -> dict[str, Any]:
    return {SIG_KEY: SECRET_SIG, "value": value}


def urn(type_: str, name: str) -> str:
    return f"urn:pulumi:test::multicloud::{type_}::{name}"


@pytest.fixture
def cloud(tmp_path: Path) -> FakeCloud:
    return FakeCloud(tmp_path / "cloud")


@pytest.fixture
def providers(cloud: FakeCloud) -> Iterator[Callable[[str], Stub]]:
    """A client per package, each served in-process on a loopback port like the plugin."""
    servers: list[grpc.Server] = []
    channels: list[grpc.Channel] = []

    def connect(package: str) -> Stub:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        provider_pb2_grpc.add_ResourceProviderServicer_to_server(
            FakeProvider(package, cloud), server
        )
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        channels.append(grpc.insecure_channel(f"127.0.0.1:{port}"))
        return Stub(channels[-1])

    yield connect
    for channel in channels:
        channel.close()
    for server in servers:
        server.stop(None)


def create(
    stub: Stub, type_: str, name: str, inputs: dict[str, Any], preview: bool = False
) -> tuple[str, dict[str, Any]]:
    checked = stub.Check(
        provider_pb2.CheckRequest(
            urn=urn(type_, name), name=name, type=type_, news=to_struct(inputs)
        )
    )
    done = stub.Create(
        provider_pb2.CreateRequest(
            urn=urn(type_, name), name=name, type=type_, properties=checked.inputs, preview=preview
        )
    )
    return done.id, from_struct(done.properties)


def diff(
    stub: Stub,
    type_: str,
    name: str,
    olds: dict[str, Any],
    news: dict[str, Any],
    ignore: list[str] | None = None,
) -> provider_pb2.DiffResponse:
    return stub.Diff(
        provider_pb2.DiffRequest(
            id=f"{name}-1",
            urn=urn(type_, name),
            name=name,
            type=type_,
            olds=to_struct(olds),
            old_inputs=to_struct(olds),
            news=to_struct(news),
            ignoreChanges=ignore or [],
        )
    )


def vm_inputs(**changes: Any) -> dict[str, Any]:
    return {
        "name": "prod-worker-1",
        "flavorName": "m1.small",
        "imageName": "debian-12",
        "keyPair": "deployer",
        "userData": secret(f"#cloud-config\nwrite_files: [{{content: '{IDENTITY}'}}]\n"),
        "networks": [{"port": "port-1"}],
    } | changes


def test_a_vm_is_created_updated_and_deleted_in_the_fake_cloud(
    providers: Callable[[str], Stub], cloud: FakeCloud
) -> None:
    stub = providers("openstack")
    id_, outputs = create(stub, INSTANCE, "worker", vm_inputs())
    assert id_ == "worker-1"
    assert outputs["flavorName"] == "m1.small"
    assert cloud.resources()[id_]["type"] == INSTANCE

    updated = stub.Update(
        provider_pb2.UpdateRequest(
            id=id_,
            urn=urn(INSTANCE, "worker"),
            name="worker",
            type=INSTANCE,
            olds=to_struct(outputs),
            news=to_struct(vm_inputs(flavorName="m1.large")),
        )
    )
    assert from_struct(updated.properties)["flavorName"] == "m1.large"
    assert cloud.resources()[id_]["outputs"]["flavorName"] == "m1.large"

    stub.Delete(
        provider_pb2.DeleteRequest(
            id=id_, urn=urn(INSTANCE, "worker"), name="worker", type=INSTANCE
        )
    )
    assert cloud.resources() == {}
    assert [(e.method, e.name, e.id) for e in cloud.events()] == [
        ("Create", "worker", "worker-1"),
        ("Update", "worker", "worker-1"),
        ("Delete", "worker", "worker-1"),
    ]
    again, _ = create(stub, INSTANCE, "worker", vm_inputs())
    assert again == "worker-2", "a replacement gets a new id"


def test_a_force_new_property_change_is_a_replacement(providers: Callable[[str], Stub]) -> None:
    stub = providers("openstack")
    new_data = vm_inputs(userData=secret("#cloud-config\n"))
    replaced = diff(stub, INSTANCE, "worker", vm_inputs(), new_data)
    assert replaced.changes == provider_pb2.DiffResponse.DIFF_SOME
    assert list(replaced.replaces) == ["userData"]
    assert replaced.detailedDiff["userData"].kind == provider_pb2.PropertyDiff.UPDATE_REPLACE

    resized = diff(stub, INSTANCE, "worker", vm_inputs(), vm_inputs(flavorName="m1.large"))
    assert list(resized.diffs) == ["flavorName"] and not resized.replaces  # resized in place

    ignored = diff(stub, INSTANCE, "worker", vm_inputs(), new_data, ignore=["userData"])
    assert ignored.changes == provider_pb2.DiffResponse.DIFF_NONE

    unchanged = diff(stub, INSTANCE, "worker", vm_inputs(), vm_inputs())
    assert unchanged.changes == provider_pb2.DiffResponse.DIFF_NONE
    unknown = diff(stub, INSTANCE, "worker", vm_inputs(), vm_inputs(keyPair=UNKNOWN))
    assert list(unknown.replaces) == ["keyPair"], "an unknown force-new input may change: replace"


def test_secrets_and_unknowns_round_trip(
    providers: Callable[[str], Stub], cloud: FakeCloud
) -> None:
    stub = providers("digitalocean")
    inputs = {
        "name": "w",
        "image": "debian-12",
        "region": "fra1",
        "size": "s-1",
        "userData": secret("#cloud-config\n"),
        "sshKeys": [UNKNOWN],
    }
    _, planned = create(stub, DROPLET, "w", inputs, preview=True)
    assert planned["userData"] == secret("#cloud-config\n")
    assert planned["sshKeys"] == [UNKNOWN]
    assert planned["ipv4Address"] == UNKNOWN, "what the cloud computes is unknown in a preview"
    assert cloud.resources() == {}, "a preview creates nothing"

    _, outputs = create(stub, DROPLET, "w", inputs | {"sshKeys": ["fp"]})
    assert is_secret(outputs["userData"]) and reveal(outputs["userData"]) == "#cloud-config\n"
    assert outputs["ipv4Address"].startswith("198.51.100.")


def test_tls_keys_are_real_and_secret(providers: Callable[[str], Stub]) -> None:
    stub = providers("tls")
    _, key = create(stub, KEY, "host-key", {"algorithm": "ED25519"})
    private = serialization.load_ssh_private_key(reveal(key["privateKeyOpenssh"]).encode(), None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert key["publicKeyOpenssh"] == public.decode() + "\n"
    assert all(
        is_secret(key[k]) for k in ("privateKeyOpenssh", "privateKeyPem", "privateKeyPemPkcs8")
    )
    assert not is_secret(key["publicKeyOpenssh"])
    _, other = create(stub, KEY, "host-key-2", {"algorithm": "ED25519"})
    assert other["publicKeyOpenssh"] != key["publicKeyOpenssh"]

    _, rsa_key = create(stub, KEY, "rsa", {"algorithm": "RSA", "rsaBits": 2048})
    assert reveal(rsa_key["privateKeyPem"]).startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert list(
        diff(stub, KEY, "rsa", {"algorithm": "RSA"}, {"algorithm": "ED25519"}).replaces
    ) == ["algorithm"]


def test_random_passwords_are_random_secret_and_follow_their_inputs(
    providers: Callable[[str], Stub],
) -> None:
    stub = providers("random")
    _, first = create(stub, PASSWORD, "token", {"length": 24, "special": False})
    _, second = create(stub, PASSWORD, "token2", {"length": 24, "special": False})
    value = reveal(first["result"])
    assert is_secret(first["result"]) and len(value) == 24 and value.isalnum()
    assert value != reveal(second["result"])
    kept = stub.Update(
        provider_pb2.UpdateRequest(
            id="token-1",
            urn=urn(PASSWORD, "token"),
            name="token",
            type=PASSWORD,
            olds=to_struct(first),
            news=to_struct({"length": 24, "special": False}),
        )
    )
    assert from_struct(kept.properties)["result"] == first["result"], "an update keeps the value"
    grown = diff(stub, PASSWORD, "token", {"length": 24}, {"length": 32})
    assert list(grown.replaces) == ["length"]


def test_a_cloudflare_record_is_created_read_and_replaced_on_a_new_zone(
    providers: Callable[[str], Stub], cloud: FakeCloud
) -> None:
    stub = providers("cloudflare")
    inputs = {
        "zoneId": "z1",
        "name": "k8s.example.com",
        "type": "A",
        "content": "198.51.100.7",
        "ttl": 60,
        "proxied": False,
    }
    id_, record = create(stub, RECORD, "record", inputs)
    assert record["proxiable"] is True and record["content"] == "198.51.100.7"
    read = stub.Read(
        provider_pb2.ReadRequest(
            id=id_,
            urn=urn(RECORD, "record"),
            name="record",
            type=RECORD,
            properties=to_struct(record),
            inputs=to_struct(inputs),
        )
    )
    assert from_struct(read.properties) == record, "a refresh finds what was written"
    moved = diff(stub, RECORD, "record", inputs, inputs | {"content": "198.51.100.8"})
    assert list(moved.diffs) == ["content"] and not moved.replaces
    assert list(diff(stub, RECORD, "record", inputs, inputs | {"zoneId": "z2"}).replaces) == [
        "zoneId"
    ]

    stub.Delete(
        provider_pb2.DeleteRequest(id=id_, urn=urn(RECORD, "record"), name="record", type=RECORD)
    )
    # A refresh of a record that no longer exists answers no id: the engine drops it.
    gone = stub.Read(
        provider_pb2.ReadRequest(id=id_, urn=urn(RECORD, "record"), name="record", type=RECORD)
    )
    assert gone.id == ""


def test_kubernetes_objects_named_by_the_program_are_replaced_delete_first(
    providers: Callable[[str], Stub],
) -> None:
    stub = providers("kubernetes")
    named = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": "kube-system"},
        "data": {"a": "1"},
    }
    changed = json.loads(json.dumps(named)) | {"data": {"a": "2"}}
    answer = diff(stub, CONFIGMAP, "cfg", named, changed)
    assert list(answer.replaces) == ["data"] and answer.deleteBeforeReplace
    unnamed = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}, "data": {"a": "1"}}
    checked = from_struct(
        stub.Check(
            provider_pb2.CheckRequest(
                urn=urn(CONFIGMAP, "auto"),
                name="auto",
                type=CONFIGMAP,
                news=to_struct(unnamed),
                randomSeed=b"seed",
            )
        ).inputs
    )
    assert checked["metadata"]["name"].startswith("auto-")


def test_two_vms_never_run_one_zerotier_identity(
    providers: Callable[[str], Stub], cloud: FakeCloud
) -> None:
    stub = providers("openstack")
    id_, _ = create(stub, INSTANCE, "worker", vm_inputs())
    with pytest.raises(grpc.RpcError) as refused:
        create(stub, INSTANCE, "worker", vm_inputs())  # create-before-delete replacement
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "89e92ceee5" in str(refused.value.details())
    stub.Delete(
        provider_pb2.DeleteRequest(
            id=id_, urn=urn(INSTANCE, "worker"), name="worker", type=INSTANCE
        )
    )
    assert create(stub, INSTANCE, "worker", vm_inputs())[0] == "worker-2"


def test_an_injected_fault_fails_one_create_once(
    providers: Callable[[str], Stub], cloud: FakeCloud
) -> None:
    cloud.inject([{"method": "Create", "name": "worker", "times": 1}])
    stub = providers("openstack")
    with pytest.raises(grpc.RpcError) as failed:
        create(stub, INSTANCE, "worker", vm_inputs())
    assert failed.value.code() == grpc.StatusCode.UNKNOWN and "500" in str(failed.value.details())
    assert cloud.resources() == {}
    assert create(stub, INSTANCE, "worker", vm_inputs())[0] == "worker-1"


def test_the_invokes_the_program_calls(providers: Callable[[str], Stub]) -> None:
    network = providers("openstack").Invoke(
        provider_pb2.InvokeRequest(
            tok="openstack:networking/getNetwork:getNetwork", args=to_struct({"name": "public"})
        )
    )
    assert from_struct(getattr(network, "return"))["id"] == "net-public"
    groups = providers("cloudflare").Invoke(
        provider_pb2.InvokeRequest(
            tok="cloudflare:index/getApiTokenPermissionGroupsList:getApiTokenPermissionGroupsList",
            args=to_struct({"name": "DNS Write", "scope": "com.cloudflare.api.account.zone"}),
        )
    )
    assert [g["name"] for g in from_struct(getattr(groups, "return"))["results"]] == ["DNS Write"]


def test_every_type_the_program_registers_has_force_new_reference_data() -> None:
    from tests.support.program_runs import committed, committed_rke2

    recorded = json.loads(FORCE_NEW.read_text())["types"]
    served = tuple(f"{p}:" for p in PACKAGES)
    used = {
        r.type
        for run in (committed("prod"), committed("home"), committed_rke2("prod"))
        for r in run.registrations
        if r.custom and r.type.startswith(served)
    }
    assert used and not used - set(recorded), sorted(used - set(recorded))


def test_the_launcher_serves_the_plugin_protocol(tmp_path: Path) -> None:
    """The installed launcher prints its port on stdout and answers at that version."""
    from tests.engine.plugins import launcher_text

    launcher = tmp_path / "pulumi-resource-tls"
    launcher.write_text(launcher_text("tls"))
    launcher.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "MULTICLOUD_FAKE_CLOUD_DIR": str(tmp_path / "cloud")}
    with subprocess.Popen(
        [launcher, "127.0.0.1:1"], stdout=subprocess.PIPE, env=env, text=True
    ) as plugin:
        try:
            assert plugin.stdout is not None
            port = int(plugin.stdout.readline())
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                info = Stub(channel).GetPluginInfo(empty_pb2.Empty(), timeout=10)
            assert info.version == plugin_version("tls")
        finally:
            plugin.kill()


def test_the_real_cli_installs_and_lists_the_stand_ins(tmp_path: Path) -> None:
    from tests.engine.tools import engine_env, pulumi_binary

    pulumi = pulumi_binary()
    env = engine_env(tmp_path / "home", tmp_path / "state")
    install_fake_plugins(pulumi, env, tmp_path / "plugins")
    listed = subprocess.run(
        [str(pulumi), "plugin", "ls", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    found = {(p["name"], p["kind"], p["version"]) for p in json.loads(listed.stdout)}
    assert found == {(p, "resource", plugin_version(p)) for p in PACKAGES}


def test_the_kubernetes_provider_is_replaced_where_pulumi_kubernetes_replaces_it() -> None:
    """provider/pkg/provider/provider.go ``DiffConfig``: the active cluster's change (its
    server) or an unknown kubeconfig replaces, unless ``clusterIdentifier`` is set and
    unchanged; a changed identifier replaces; adding one replaces nothing by itself."""

    def kubeconfig(server: str) -> str:
        return (
            "apiVersion: v1\nclusters:\n- name: c\n  cluster: {server: '" + server + "'}\n"
            "contexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n"
        )

    a, b = kubeconfig("https://192.0.2.1:6443"), kubeconfig("https://192.0.2.2:6443")
    same = {"kubeconfig": a, "clusterIdentifier": "mc-prod"}
    assert kubernetes_config_replaces({"kubeconfig": a}, {"kubeconfig": b}, ["kubeconfig"]) == [
        "kubeconfig"
    ]
    assert kubernetes_config_replaces({"kubeconfig": a}, {"kubeconfig": UNKNOWN}, []) == [
        "kubeconfig"
    ]
    assert kubernetes_config_replaces(same, {**same, "kubeconfig": b}, ["kubeconfig"]) == []
    assert kubernetes_config_replaces(same, {**same, "kubeconfig": UNKNOWN}, ["kubeconfig"]) == []
    assert kubernetes_config_replaces(
        same, {**same, "clusterIdentifier": "other"}, ["clusterIdentifier"]
    ) == ["clusterIdentifier"]
    assert kubernetes_config_replaces({"kubeconfig": a}, same, ["clusterIdentifier"]) == []

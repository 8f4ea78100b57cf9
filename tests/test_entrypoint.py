"""Entrypoint + ClusterServices under Pulumi mocks: ordering, secrets, scoping, toggles."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pulumi
import pytest
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi_cloudflare.outputs import GetApiTokenPermissionGroupsListResultResult as GroupResult

from components.cluster_node import ClusterNode
from components.config.entrypoint import EntrypointSettings
from components.nodes import PUBLIC_INGRESS_LABEL, NodeSpec
from components.services.cloudflare import (
    UPDATER_PERMISSION_GROUPS,
    ZONE_SCOPE,
    Entrypoint,
    permission_group_id,
    zone_resource,
)
from components.services.cluster_services import ClusterServices
from tests.test_workloads import ZONE_ID, settings

PERMISSION_GROUPS_TOKEN = (
    "cloudflare:index/getApiTokenPermissionGroupsList:getApiTokenPermissionGroupsList"
)
GROUP_IDS = {
    "DNS Write": "4755a26eedb94da69e1066d98aa820be",
    "Zone Read": "c8fed203ed3043cba015a93ad1616f1f",
}
SECRET_KEY = "4dabf18193072939515e22adb298388d"  # Pulumi's special-value signature key
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
KUBECONFIG = "apiVersion: v1\nkind: Config\n"
ENTRY_IP = "203.0.113.10"


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    parent: str
    provider: str
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    additional_secret_outputs: list[str]
    ignore_changes: list[str]
    inputs: dict[str, Any]  # raw wire form: secrets and unknowns stay visible


@dataclass
class World:
    registrations: list[Registration] = field(default_factory=list)
    calls: list[pulumi_mocks.MockCallArgs] = field(default_factory=list)
    preview: bool = False

    def by_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == typ]

    def one(self, typ: str, name: str | None = None) -> Registration:
        found = [r for r in self.by_type(typ) if name is None or r.name == name]
        assert len(found) == 1, (typ, name, [r.name for r in self.by_type(typ)])
        return found[0]

    @property
    def urns(self) -> set[str]:
        return {r.urn for r in self.registrations}


class Mocks(pulumi.runtime.Mocks):
    def __init__(self, world: World) -> None:
        self.world = world

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ == "cloudflare:index/apiToken:ApiToken":
            state["value"] = "scoped-updater-token"
        if args.typ == "test:index:Rke" and not self.world.preview:
            state["kubeconfig"] = KUBECONFIG  # left unknown in a first preview
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        self.world.calls.append(args)
        if args.token == PERMISSION_GROUPS_TOKEN:
            name = unquote(args.args["name"])
            result = {
                "id": GROUP_IDS[name],
                "name": name,
                "scopes": [args.args["scope"]],
                "category": "dns_and_zones",
                "isSelectable": True,
            }
            decoy = {**result, "id": "0" * 32, "name": f"{name} Extra"}  # substring match
            return {"results": [decoy, result]}, []
        raise AssertionError(f"unexpected invoke {args.token}")


class Recorder(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: Mocks) -> None:
        super().__init__(mocks)
        self.world = mocks.world

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        self.world.registrations.append(
            Registration(
                urn=response.urn,
                type=request.type,
                name=request.name,
                parent=request.parent,
                provider=request.provider,
                dependencies=list(request.dependencies),
                property_dependencies={
                    k: list(v.urns) for k, v in request.propertyDependencies.items()
                },
                additional_secret_outputs=list(request.additionalSecretOutputs),
                ignore_changes=list(request.ignoreChanges),
                inputs=json_format.MessageToDict(request.object),
            )
        )
        return response


class FakeRke(pulumi.CustomResource):
    """Stands in for the RKE command: its kubeconfig is unknown until it has run."""

    kubeconfig: pulumi.Output[str]

    def __init__(self, name: str) -> None:
        super().__init__("test:index:Rke", name, {"kubeconfig": None})


class FakeVm(pulumi.CustomResource):
    def __init__(self, name: str) -> None:
        super().__init__("test:index:Vm", name, {})


def node(site: str, index: int, *, ingress: bool, public: str | None) -> ClusterNode:
    spec = NodeSpec(
        name=f"mc-{site}-worker-{index}",
        site=site,
        kind="worker",
        index=index,
        roles=("worker",),
        size="small",
        zerotier_ip=f"10.147.{index}.{len(site)}",
        ingress="public" if ingress else "none",
    )
    return ClusterNode(
        spec=spec,
        ssh_address=pulumi.Output.from_input(public or "192.168.1.10"),
        public_address=pulumi.Output.from_input(public) if public else None,
        vm=FakeVm(spec.name),
    )


def default_nodes() -> list[ClusterNode]:
    return [
        node("home", 0, ingress=False, public=None),  # behind NAT
        node("home", 1, ingress=True, public=None),  # ingress-labelled but unreachable
        node("ramnode", 0, ingress=True, public=ENTRY_IP),
        node("digitalocean", 0, ingress=True, public="198.51.100.7"),
    ]


def run(
    s: EntrypointSettings,
    *,
    preview: bool = False,
    nodes: Callable[[], list[ClusterNode]] = default_nodes,
) -> tuple[World, dict[str, Any]]:
    """Build Entrypoint + ClusterServices in a fresh mocked stack; return what was registered."""
    world = World(preview=preview)
    mocks = Mocks(world)
    pulumi.runtime.reset_options()
    pulumi.runtime.set_mocks(mocks, preview=preview, monitor=Recorder(mocks))
    built: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        rke = FakeRke("rke")
        entry = Entrypoint("entry", s, nodes(), api_token=pulumi.Output.secret("operator-token"))
        services = ClusterServices(
            "svc",
            s,
            kubeconfig=rke.kubeconfig,
            cluster=rke,
            zones=["home", "ramnode", "digitalocean"],
            updater_token=entry.updater_token,
        )
        built.update(rke=rke, entry=entry, services=services)
        return pulumi.Output.all(entry.urn, services.urn)

    program()
    return world, built


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_KEY) == SECRET_SIG


def unwrap(value: Any) -> Any:
    return value["value"] if is_secret(value) else value


def output_value(output: pulumi.Output[Any]) -> Any:
    """Resolve an Output after the program ran (None while unknown)."""
    return pulumi.runtime.sync_await._sync_await(output.future())


def output_is_secret(output: pulumi.Output[Any]) -> bool:
    return bool(pulumi.runtime.sync_await._sync_await(output.is_secret()))


@pytest.fixture(scope="module")
def full() -> tuple[World, dict[str, Any]]:
    return run(settings())


# --- ordering ---------------------------------------------------------------------------------


def test_everything_in_cluster_waits_for_rke(full: tuple[World, dict[str, Any]]) -> None:
    world, _ = full
    rke = world.one("test:index:Rke").urn
    provider = world.one("pulumi:providers:kubernetes")
    assert rke in provider.dependencies
    assert rke in provider.property_dependencies["kubeconfig"]
    in_cluster = [r for r in world.registrations if r.type.startswith("kubernetes:")]
    # 4 namespaces, secret, updater, 2 releases, 2 issuers, 3 app objects
    assert len(in_cluster) == 4 + 1 + 1 + 2 + 2 + 3
    for reg in in_cluster:
        assert rke in reg.dependencies, reg.name
        assert reg.provider.startswith(provider.urn + "::"), reg.name


def test_cluster_issuers_wait_for_the_cert_manager_release(
    full: tuple[World, dict[str, Any]],
) -> None:
    world, _ = full
    release = world.one("kubernetes:helm.sh/v3:Release", "svc-cert-manager")
    issuers = world.by_type("kubernetes:cert-manager.io/v1:ClusterIssuer")
    assert {i.name for i in issuers} == {"svc-letsencrypt-staging", "svc-letsencrypt-production"}
    for issuer in issuers:
        assert release.urn in issuer.dependencies
        assert issuer.inputs["spec"]["acme"]["email"] == "ops@example.com"
    ingress = world.one("kubernetes:networking.k8s.io/v1:Ingress")
    assert {i.urn for i in issuers} <= set(ingress.dependencies)


def test_charts_are_pinned(full: tuple[World, dict[str, Any]]) -> None:
    world, _ = full
    cm = world.one("kubernetes:helm.sh/v3:Release", "svc-cert-manager").inputs
    assert (cm["chart"], cm["version"], cm["repositoryOpts"]["repo"]) == (
        "cert-manager",
        "v1.16.3",
        "https://charts.jetstack.io",
    )
    assert cm["values"]["crds"]["enabled"] is True
    lh = world.one("kubernetes:helm.sh/v3:Release", "svc-longhorn").inputs
    assert (lh["chart"], lh["version"], lh["repositoryOpts"]["repo"], lh["namespace"]) == (
        "longhorn",
        "1.8.1",
        "https://charts.longhorn.io",
        "longhorn-system",
    )
    assert lh["values"]["defaultSettings"]["defaultReplicaCount"] == 3


def test_first_preview_with_unknown_kubeconfig() -> None:
    world, built = run(settings(), preview=True)
    provider = world.one("pulumi:providers:kubernetes")
    kubeconfig = provider.inputs["kubeconfig"]
    assert is_secret(kubeconfig) and unwrap(kubeconfig) == UNKNOWN
    full_world, _ = run(settings())
    kubeconfig = full_world.one("pulumi:providers:kubernetes").inputs["kubeconfig"]
    assert is_secret(kubeconfig) and unwrap(kubeconfig) == KUBECONFIG
    assert {(r.type, r.name) for r in world.registrations} == {
        (r.type, r.name) for r in full_world.registrations
    }
    assert output_value(built["services"].app_url) == "https://app.k8s.example.com/"


# --- Cloudflare: record, token scope, secrecy --------------------------------------------------


def test_record_points_at_first_public_ingress_node(full: tuple[World, dict[str, Any]]) -> None:
    world, built = full
    record = world.one("cloudflare:index/dnsRecord:DnsRecord")
    cf_provider = world.one("pulumi:providers:cloudflare")
    assert record.ignore_changes == ["content"]
    assert record.provider.startswith(cf_provider.urn + "::")
    assert is_secret(cf_provider.inputs["apiToken"])
    inputs = record.inputs
    assert (inputs["type"], inputs["name"], inputs["zoneId"]) == ("A", "*.k8s.example.com", ZONE_ID)
    assert (inputs["content"], inputs["ttl"], inputs["proxied"]) == (ENTRY_IP, 60, False)
    assert built["entry"].record_name == built["services"].record_name == "*.k8s.example.com"


def test_updater_token_is_scoped_to_the_zone(full: tuple[World, dict[str, Any]]) -> None:
    world, _ = full
    token = world.one("cloudflare:index/apiToken:ApiToken")
    cf_provider = world.one("pulumi:providers:cloudflare")
    (policy,) = token.inputs["policies"]
    assert policy["effect"] == "allow"
    assert json.loads(policy["resources"]) == {zone_resource(ZONE_ID): "*"}
    assert zone_resource(ZONE_ID) == f"com.cloudflare.api.account.zone.{ZONE_ID}"
    assert [g["id"] for g in policy["permissionGroups"]] == [
        GROUP_IDS[n] for n in UPDATER_PERMISSION_GROUPS
    ]
    lookups = [c for c in world.calls if c.token == PERMISSION_GROUPS_TOKEN]
    assert sorted(unquote(c.args["name"]) for c in lookups) == sorted(UPDATER_PERMISSION_GROUPS)
    assert all(c.provider.startswith(cf_provider.urn + "::") for c in lookups)
    assert all(c.args["scope"] == "com.cloudflare.api.account.zone" for c in lookups)


def test_updater_token_is_secret_everywhere(full: tuple[World, dict[str, Any]]) -> None:
    world, built = full
    token = world.one("cloudflare:index/apiToken:ApiToken")
    assert "value" in token.additional_secret_outputs
    secret = world.one("kubernetes:core/v1:Secret")
    assert is_secret(secret.inputs["stringData"])
    assert unwrap(secret.inputs["stringData"]) == {"token": "scoped-updater-token"}
    assert {"data", "stringData"} <= set(secret.additional_secret_outputs)
    assert token.urn in secret.dependencies
    assert output_is_secret(built["entry"].updater_token)
    assert output_value(built["entry"].updater_token) == "scoped-updater-token"


def test_updater_deployment_on_ingress_nodes(full: tuple[World, dict[str, Any]]) -> None:
    world, _ = full
    deployment = world.one("kubernetes:apps/v1:Deployment", "svc-updater-deployment")
    secret = world.one("kubernetes:core/v1:Secret")
    assert secret.urn in deployment.dependencies
    pod = deployment.inputs["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {PUBLIC_INGRESS_LABEL: "true"}
    assert {(t["key"], t["tolerationSeconds"]) for t in pod["tolerations"]} == {
        ("node.kubernetes.io/not-ready", 30),
        ("node.kubernetes.io/unreachable", 30),
    }
    image = pod["containers"][0]["image"]
    assert image == "favonia/cloudflare-ddns:1.15.1"


def test_no_public_ingress_node_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no ingress-capable node with a public address"):
        run(settings(), nodes=lambda: [node("home", 0, ingress=True, public=None)])


def test_permission_group_is_matched_by_exact_name() -> None:
    def group(gid: str, name: str) -> Any:
        return GroupResult(
            category="dns_and_zones", id=gid, is_selectable=True, name=name, scopes=[ZONE_SCOPE]
        )

    groups = [group("1", "DNS Write Extra"), group("2", "DNS Write")]
    assert permission_group_id(groups, "DNS Write") == "2"
    with pytest.raises(ValueError, match="no API token permission group named 'Zone Read'"):
        permission_group_id(groups, "Zone Read")


def test_components_are_parents(full: tuple[World, dict[str, Any]]) -> None:
    world, _ = full
    entry = world.one("multicloud:entrypoint:Entrypoint").urn
    services = world.one("multicloud:cluster:ClusterServices").urn
    for reg in world.registrations:
        if reg.type.startswith("cloudflare:") or reg.type == "pulumi:providers:cloudflare":
            assert reg.parent == entry, reg.name
        if reg.type.startswith("kubernetes:") or reg.type == "pulumi:providers:kubernetes":
            assert reg.parent == services, reg.name


# --- toggles ----------------------------------------------------------------------------------

PARTS = {
    "updater": {
        "entry-updater-token",
        "svc-updater-ns",
        "svc-updater-secret",
        "svc-updater-deployment",
    },
    "certManager": {
        "svc-cert-manager-ns",
        "svc-cert-manager",
        "svc-letsencrypt-staging",
        "svc-letsencrypt-production",
    },
    "longhorn": {"svc-longhorn-ns", "svc-longhorn"},
    "app": {"svc-app-ns", "svc-app-deployment", "svc-app-service", "svc-app-ingress"},
}


@pytest.mark.parametrize("part", sorted(PARTS))
def test_turning_a_part_off_removes_only_its_resources(
    part: str, full: tuple[World, dict[str, Any]]
) -> None:
    world, _ = full
    reduced, built = run(settings(**{part: {"enabled": False}}))
    assert reduced.urns <= world.urns
    removed = {urn.rsplit("::", 1)[-1] for urn in world.urns - reduced.urns}
    assert removed == PARTS[part]
    if part == "app":
        assert built["services"].app_url is None
    if part == "updater":
        assert built["entry"].updater_token is None

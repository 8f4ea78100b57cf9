"""cluster.yml: schema-valid, deterministic, secret-free; settings validation."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from components.config.cluster import RkeSettings
from components.nodes import (
    INGRESS_CONTROLLER_LABEL,
    PUBLIC_INGRESS_LABEL,
    ZONE_LABEL,
    NodeSpec,
)
from rke.cluster_yml import ClusterYmlSettings, RkeNode, cluster_config, render_cluster_yml
from tests.support import reference
from tests.support.tools import load_yaml

SCHEMA = reference.load("rke-cluster.schema.json")
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
S3 = {
    "bucket": "etcd-snapshots",
    "endpoint": "s3.eu-central-1.wasabisys.com",
    "region": "eu-central-1",
}


def base(rke: RkeSettings | None = None, **kw: Any) -> ClusterYmlSettings:
    return ClusterYmlSettings(
        cluster_name=kw.get("cluster_name", "mc"),
        ssh_user="debian",
        kubernetes_version="v1.30.14-rancher1-1",
        flannel_iface="ztks575eoa",
        overlay_cidr="10.147.0.0/16",
        rke=rke or RkeSettings(),
    )


def three_sites() -> list[RkeNode]:
    nodes: list[RkeNode] = []
    for i, site in enumerate(("home", "ramnode", "digitalocean")):
        for kind, roles, count in (
            ("master", ("controlplane", "etcd"), 1),
            ("worker", ("worker",), 2),
        ):
            for n in range(count):
                spec = NodeSpec(
                    name=f"mc-{site}-{kind}-{n}", site=site, kind=kind, index=n, roles=roles,  # type: ignore[arg-type]
                    size="s", zerotier_ip=f"10.147.{i}.{10 + n if kind == 'master' else 100 + n}",
                    ingress="public" if kind == "worker" and site != "home" else "none",
                )  # fmt: skip
                nodes.append(RkeNode.from_spec(spec, f"203.0.113.{len(nodes) + 1}"))
    return nodes


def valid(text: str) -> dict[str, Any]:
    doc: dict[str, Any] = load_yaml(text)  # libyaml: the property test parses 60 documents
    errors = sorted(VALIDATOR.iter_errors(doc), key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    return doc


def test_three_site_example_validates_and_has_the_expected_content() -> None:
    rke = RkeSettings.model_validate({"etcd": {"s3": S3}, "dnsUpstreams": ["8.8.8.8"]})
    doc = valid(render_cluster_yml(three_sites(), base(rke)))
    assert [n["hostname_override"] for n in doc["nodes"]] == sorted(n.name for n in three_sites())
    node = next(n for n in doc["nodes"] if n["hostname_override"] == "mc-ramnode-worker-1")
    assert node["internal_address"] == "10.147.1.101" and node["user"] == "debian"
    assert node["labels"] == {
        INGRESS_CONTROLLER_LABEL: "true", PUBLIC_INGRESS_LABEL: "true", ZONE_LABEL: "ramnode",
    }  # fmt: skip
    assert doc["network"] == {
        "plugin": "canal", "options": {"canal_iface": "ztks575eoa"}, "mtu": 1280 - 50,
    }  # fmt: skip
    with_mtu = valid(render_cluster_yml(three_sites(), replace(base(rke), overlay_mtu=1400)))
    assert with_mtu["network"]["mtu"] == 1400 - 50
    assert doc["services"]["kube-api"]["secrets_encryption_config"] == {"enabled": True}
    etcd = doc["services"]["etcd"]
    assert etcd["extra_args"] == {"heartbeat-interval": "500", "election-timeout": "5000"}
    assert etcd["backup_config"]["s3backupconfig"] == {
        "bucket_name": S3["bucket"], "endpoint": S3["endpoint"], "region": S3["region"],
    }  # fmt: skip
    assert doc["services"]["kubelet"]["cluster_dns_server"] == "10.43.0.10"
    assert doc["services"]["kube-controller"]["cluster_cidr"] == "10.42.0.0/16"
    assert doc["ingress"]["node_selector"] == {INGRESS_CONTROLLER_LABEL: "true"}
    assert doc["dns"]["upstreamnameservers"] == ["8.8.8.8"]
    assert doc["ssh_agent_auth"] is True


def test_no_mtu_no_secrets_no_nulls() -> None:
    rke = RkeSettings.model_validate({"etcd": {"s3": S3}, "networkPlugin": "flannel"})
    text = render_cluster_yml(three_sites(), base(rke))
    assert "mtu" not in text  # RKE refuses network.mtu with flannel
    assert "access_key" not in text and "secret_key" not in text and "ssh_key" not in text
    assert "null" not in text and "~" not in text


def test_key_path_instead_of_agent() -> None:
    rke = RkeSettings.model_validate({"sshAgentAuth": False, "ingress": {"enabled": False}})
    doc = valid(render_cluster_yml(three_sites(), base(rke)))
    assert doc["ssh_agent_auth"] is False and doc["ssh_key_path"] == "~/.ssh/id_rsa"
    assert doc["ingress"] == {"provider": "none"}


def test_deterministic_regardless_of_input_order() -> None:
    nodes = three_sites()
    assert render_cluster_yml(nodes, base()) == render_cluster_yml(nodes[::-1], base())


@pytest.mark.parametrize(
    ("nodes", "match"),
    [
        ([], "no nodes"),
        ([RkeNode("a", "1.1.1.1", "10.147.0.1", ("worker",))], "at least one controlplane"),
        ([RkeNode("a", "1.1.1.1", "10.9.0.1", ("etcd", "controlplane", "worker"))], "outside"),
        (
            [RkeNode("a", "1.1.1.1", "10.147.0.1", ("etcd", "controlplane", "worker"))] * 2,
            "duplicate",
        ),
        # RKE would start kubelet without --node-ip (rke/engine.py)
        (
            [RkeNode("a", "10.147.0.1", "10.147.0.1", ("etcd", "controlplane", "worker"))],
            "address equals internal_address",
        ),
    ],
)
def test_bad_node_sets_are_refused(nodes: list[RkeNode], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cluster_config(nodes, base())


_name = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
_label_key = st.from_regex(r"[a-z]{1,5}(\.[a-z]{1,5})?/[a-z]{1,8}", fullmatch=True)


@st.composite
def node_sets(draw: st.DrawFn) -> list[RkeNode]:
    names = draw(st.lists(_name, min_size=1, max_size=7, unique=True))
    roles = st.sets(st.sampled_from(("controlplane", "etcd", "worker")), min_size=1).map(tuple)
    nodes = [
        RkeNode(
            name=f"mc-{name}",
            address=draw(st.sampled_from(["203.0.113.9", "node.example.org", "2001:db8::1"])),
            internal_address=f"10.147.{i // 200}.{i % 200 + 1}",
            roles=draw(roles),
            labels=draw(
                st.dictionaries(_label_key, st.sampled_from(["true", "a", "1", "no"]), max_size=3)
            ),
        )
        for i, name in enumerate(names)
    ]
    all_roles = RkeNode("mc-all", "203.0.113.1", "10.147.9.9", ("controlplane", "etcd", "worker"))
    return [*nodes, all_roles]


rke_settings = st.builds(
    lambda hb, mult, s3, upstreams, worker, ingress, agent, plugin: RkeSettings.model_validate(
        {
            "networkPlugin": plugin,
            "etcd": {"heartbeatIntervalMs": hb, "electionTimeoutMs": min(hb * mult, 50000), **s3},
            "dnsUpstreams": upstreams,
            "upgrade": {"maxUnavailableWorker": worker},
            "ingress": {"enabled": ingress},
            "sshAgentAuth": agent,
            "serviceCidr": "10.96.0.0/12",
            "podCidr": "10.244.0.0/16",
        }
    ),
    st.integers(10, 5000),
    st.integers(5, 20),
    st.sampled_from(
        [{}, {"s3": S3}, {"s3": {"bucket": "bkt", "endpoint": "e:9000", "folder": "f"}}]
    ),
    st.lists(
        st.sampled_from(["1.1.1.1", "9.9.9.9", "2606:4700:4700::1111"]), min_size=1, max_size=3
    ),
    st.one_of(st.integers(1, 10), st.sampled_from(["10%", "1", "25%"])),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["canal", "flannel"]),
)


# 60 examples (~1.5 s, most of it hypothesis's own generation: ~17 ms an example) cover
# every sampled option many times over; deadline=None because one example's time (two
# renders, a parse and a schema check) swings with the load on a shared 2-core runner,
# and a deadline would fail on that rather than on cluster.yml.
@settings(max_examples=60, deadline=None)
@given(nodes=node_sets(), rke=rke_settings, name=_name)
def test_property_any_valid_input_gives_schema_valid_yaml(
    nodes: list[RkeNode], rke: RkeSettings, name: str
) -> None:
    text = render_cluster_yml(nodes, base(rke, cluster_name=name))
    doc = valid(text)
    assert text == render_cluster_yml(list(reversed(nodes)), base(rke, cluster_name=name))
    if rke.network_plugin == "flannel":
        assert doc["network"]["options"] == {"flannel_iface": "ztks575eoa"}
        assert "mtu" not in doc["network"]
    else:
        assert doc["network"]["options"] == {"canal_iface": "ztks575eoa"}
        assert doc["network"]["mtu"] == 1280 - 50  # the overlay MTU unknown: ZeroTier's minimum
    assert doc["services"]["kubelet"]["cluster_dns_server"] == "10.96.0.10"


# -- settings --------------------------------------------------------------------------------


def test_settings_defaults_and_camel_case() -> None:
    s = RkeSettings.model_validate({"etcd": {"snapshotIntervalHours": 12}})
    assert s.etcd.snapshot_interval_hours == 12 and s.etcd.retention == 28
    assert s.service_cidr == "10.43.0.0/16" and s.dns_upstreams == ("1.1.1.1", "9.9.9.9")
    assert s.upgrade.max_unavailable_worker == "10%"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"etcd": {"heartbeatIntervalMs": 1000, "electionTimeoutMs": 4000}}, "electionTimeoutMs"),
        ({"serviceCidr": "10.43.0.0/33"}, "serviceCidr"),
        ({"podCidr": "10.43.0.0/16"}, "podCidr"),
        ({"dnsUpstreams": ["dns.google"]}, "dnsUpstreams"),
        ({"upgrade": {"maxUnavailableWorker": "ten"}}, "maxUnavailableWorker"),
        ({"etcd": {"s3": {"bucket": "b", "endpoint": "https://s3"}}}, "endpoint"),
        ({"etcd": {"s3": {"bucket": "b", "endpoint": "e", "accessKey": "x"}}}, "accessKey"),
    ],
)
def test_settings_errors_name_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        RkeSettings.model_validate(raw)

"""Config keys of the hardening: zerotierCentralUrl is https only, rke.networkPlugin is
canal or flannel (canal by default), and what each gives cluster.yml."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from components.config import ConfigError
from components.config.cluster import RkeSettings
from engines import check_stack
from rke.cluster_yml import RkeNode, cluster_config
from rke.engine import cluster_settings
from tests.components.config.test_config import base, with_


@pytest.mark.parametrize(
    "url",
    [
        "http://api.zerotier.com/api/v1",
        "HTTP://api.zerotier.com/api/v1",
        "api.zerotier.com/api/v1",
        "ftp://api.zerotier.com/",
        "https:///api/v1",
    ],
)
def test_central_url_must_be_https(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_stack(with_("zerotierCentralUrl", url))
    message = str(err.value)
    assert "multicloud:zerotierCentralUrl: expected an https:// URL" in message
    assert "token" in message  # says why


def test_central_url_https_is_accepted() -> None:
    url = "https://central.example.org/api/v1"
    assert check_stack(with_("zerotierCentralUrl", url))[0].settings.zerotier_central_url == url


@pytest.mark.parametrize("plugin", ["calico", "weave", ""])
def test_network_plugin_is_canal_or_flannel(plugin: str) -> None:
    with pytest.raises(ConfigError, match=r"multicloud:rke\.networkPlugin: Input should be"):
        check_stack(with_("rke", {"networkPlugin": plugin}))


def _network(raw: dict[str, Any]) -> dict[str, Any]:
    settings = check_stack(raw)[0].settings
    rke = cluster_settings(settings)
    node = RkeNode("n", "203.0.113.1", "10.147.1.10", ("controlplane", "etcd", "worker"))
    return cluster_config([node], replace(rke, flannel_iface="ztabc"))["network"]


def test_canal_is_the_default_with_the_overlay_mtu_less_vxlan() -> None:
    assert _network(base()) == {"plugin": "canal", "options": {"canal_iface": "ztabc"}, "mtu": 2750}


def test_flannel_stays_possible_for_an_existing_cluster() -> None:
    network = _network(with_("rke", {"networkPlugin": "flannel"}))
    assert network == {"plugin": "flannel", "options": {"flannel_iface": "ztabc"}}


def test_the_network_plugin_key_says_why_it_must_not_change() -> None:
    description = RkeSettings.model_fields["network_plugin"].description or ""
    assert "cannot change the plugin of a running cluster" in description

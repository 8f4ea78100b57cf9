"""A network create whose answer is lost (components/overlay/zerotier/resources.py
``_create_network``): the network Central made anyway is taken, never left behind for the
next `pulumi up` to make a second one. The engine scenario is
tests/engine/test_program_faults.py; this is the same against the fake Central in-process,
with a client timeout of a fraction of a second."""

from __future__ import annotations

import pytest

from components.overlay.zerotier.central import CentralClient, CentralError
from components.overlay.zerotier.resources import _create_network, _network_settings
from tests.support.fake_central import TOKEN, FakeCentral, central_fixture  # noqa: F401

TIMEOUT = 0.3
PROPS = {
    "network_name": "mc-test",
    "description": "multicloud overlay",
    "private": True,
    "cidr": "10.147.0.0/16",
    "mtu": None,
    "rules_source": None,
}


def _create(central: FakeCentral) -> str:
    client = CentralClient(TOKEN, central.url, timeout=TIMEOUT)
    return _create_network(client, _network_settings(PROPS, created=True))


def test_a_lost_answer_takes_the_network_central_made(central: FakeCentral) -> None:
    central.stall_next("POST", "/api/v1/network", TIMEOUT * 3, applied=True)
    network_id = _create(central)
    assert list(central.networks) == [network_id]
    assert central.networks[network_id]["config"]["name"] == "mc-test"


def test_a_create_central_never_acted_on_fails(central: FakeCentral) -> None:
    central.stall_next("POST", "/api/v1/network", TIMEOUT * 3, applied=False)
    with pytest.raises(CentralError, match="cannot create a network: no answer"):
        _create(central)
    assert central.networks == {}


def test_another_network_of_that_name_is_not_taken(central: FakeCentral) -> None:
    older = central.add_network(name="mc-test")
    central.networks[older]["description"] = "multicloud overlay"
    central.networks[older]["config"]["creationTime"] -= 3_600_000  # an hour old
    central.add_network(name="other")
    central.stall_next("POST", "/api/v1/network", TIMEOUT * 3, applied=True)
    network_id = _create(central)
    assert network_id != older and len(central.networks) == 3


def test_two_candidates_are_refused_naming_the_network(central: FakeCentral) -> None:
    twin = central.add_network(name="mc-test")
    central.networks[twin]["description"] = "multicloud overlay"
    central.stall_next("POST", "/api/v1/network", TIMEOUT * 3, applied=True)
    with pytest.raises(CentralError, match="lists 2 networks named 'mc-test'"):
        _create(central)

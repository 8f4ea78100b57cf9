"""ZeroTier flow rules: compiled by ZeroTier's own rule compiler (npm zerotier-rule-compiler,
the compiler of Central's rules editor), then evaluated packet by packet with a model of the
agent's filter (ZeroTierOne node/Network.cpp ``_doZtFilter``), inbound at the receiver."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest

from components.overlay.zerotier.central import CentralClient
from components.overlay.zerotier.resources import NetworkProvider
from components.overlay.zerotier.rules import admin_block, flow_rules
from tests.support.fake_central import TOKEN, FakeCentral, central_fixture  # noqa: F401
from tests.support.tools import node_package

# Network.cpp / rule-compiler.js CHARACTERISTIC_BITS
INBOUND, IPAUTH = 1 << 63, 1 << 60
TCP_SYN, TCP_ACK = 1 << 1, 1 << 4
ETHERTYPES = {"ipv4": 0x0800, "arp": 0x0806, "ipv6": 0x86DD}
PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1}


@cache
def compiled(overlay_cidr: str) -> list[dict[str, Any]]:
    """``config.rules`` as ZeroTier's compiler makes them from our ``rulesSource``."""
    compiler = node_package("zerotier-rule-compiler") / "cli.js"
    node = shutil.which("node")
    assert node is not None  # node_package checked
    with tempfile.NamedTemporaryFile("w", suffix=".ztrules") as source:
        source.write(flow_rules(overlay_cidr))
        source.flush()
        done = subprocess.run(
            [node, str(compiler), source.name], capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["config"]["rules"]


@dataclass(frozen=True)
class Frame:
    """An Ethernet frame on the overlay, as the filter sees it."""

    src: str | None = None
    dst: str | None = None
    ethertype: str = "ipv4"
    protocol: str = "tcp"
    sport: int | None = 40000
    dport: int | None = None
    syn: bool = False
    ack: bool = False
    ipauth: bool = True  # the sender holds a certificate of ownership for ``src``


def allows(rules: list[dict[str, Any]], frame: Frame, inbound: bool = True) -> bool:
    """Accept or drop, as ``_doZtFilter`` decides (only the rule types our rules use)."""
    ip = frame.ethertype == "ipv4"
    matches = 1
    for rule in rules:
        kind = rule["type"]
        if kind.startswith("ACTION_"):
            if matches:
                if kind == "ACTION_ACCEPT":
                    return True
                if kind in ("ACTION_DROP", "ACTION_BREAK"):
                    return False
                raise AssertionError(f"unmodelled action {kind}")
            matches = 1
            continue
        negate = int(rule["not"])
        hard_no = negate  # a match that does not apply is false whether negated or not
        if kind == "MATCH_ETHERTYPE":
            hit = int(ETHERTYPES[frame.ethertype] == rule["etherType"])
        elif kind in ("MATCH_IPV4_SOURCE", "MATCH_IPV4_DEST"):
            address = frame.src if kind == "MATCH_IPV4_SOURCE" else frame.dst
            net = ipaddress.IPv4Network(rule["ip"])
            hit = int(ipaddress.IPv4Address(address) in net) if ip else hard_no
        elif kind == "MATCH_IP_PROTOCOL":
            hit = int(PROTOCOLS[frame.protocol] == rule["ipProtocol"]) if ip else hard_no
        elif kind in ("MATCH_IP_SOURCE_PORT_RANGE", "MATCH_IP_DEST_PORT_RANGE"):
            port = frame.sport if kind == "MATCH_IP_SOURCE_PORT_RANGE" else frame.dport
            if not ip:
                hit = hard_no
            elif frame.protocol not in ("tcp", "udp") or port is None:
                hit = 0
            else:
                hit = int(rule["start"] <= port <= rule["end"])
        elif kind == "MATCH_CHARACTERISTICS":
            flags = INBOUND if inbound else 0
            if frame.ipauth:
                flags |= IPAUTH
            if ip and frame.protocol == "tcp":
                flags |= (TCP_SYN if frame.syn else 0) | (TCP_ACK if frame.ack else 0)
            hit = int(flags & int(rule["mask"], 16) != 0)
        else:
            raise AssertionError(f"unmodelled match {kind}")
        if rule["or"]:
            matches |= hit ^ negate
        else:
            matches &= hit ^ negate
    return False  # DOZTFILTER_NO_MATCH: dropped


NODE_A, NODE_B, NODE_C = "10.147.1.10", "10.147.2.50", "10.147.3.11"
ADMIN, ADMIN_2 = "10.147.0.5", "10.147.0.6"

# (what, frame, allowed): every frame is judged inbound at its receiver, as the receiving
# agent does (the sender's own outbound check is not to be relied on).
TABLE = [
    ("node to node, etcd", Frame(NODE_A, NODE_B, dport=2379, syn=True), True),
    ("node to node, VXLAN", Frame(NODE_B, NODE_C, protocol="udp", dport=8472), True),
    ("node to node, ICMP", Frame(NODE_C, NODE_A, protocol="icmp", sport=None), True),
    ("node to node, kubelet", Frame(NODE_A, NODE_C, dport=10250, syn=True), True),
    ("admin SSH to a node, SYN", Frame(ADMIN, NODE_A, dport=22, syn=True), True),
    ("admin SSH to a node, data", Frame(ADMIN, NODE_A, dport=22, ack=True), True),
    ("admin Kubernetes API", Frame(ADMIN, NODE_B, dport=6443, syn=True), True),
    ("SSH reply to admin", Frame(NODE_A, ADMIN, sport=22, dport=40000, syn=True, ack=True), True),
    ("API reply to admin", Frame(NODE_B, ADMIN, sport=6443, dport=40000, ack=True), True),
    ("ARP", Frame(ADMIN, NODE_A, ethertype="arp"), True),
    ("admin to kubelet", Frame(ADMIN, NODE_A, dport=10250, syn=True), False),
    ("admin to etcd", Frame(ADMIN, NODE_A, dport=2379, syn=True), False),
    ("admin to a NodePort", Frame(ADMIN, NODE_C, dport=30080, syn=True), False),
    ("admin VXLAN into the pod network", Frame(ADMIN, NODE_A, protocol="udp", dport=8472), False),
    ("admin UDP to port 22", Frame(ADMIN, NODE_A, protocol="udp", dport=22), False),
    ("admin ICMP to a node", Frame(ADMIN, NODE_A, protocol="icmp", sport=None), False),
    ("admin to admin", Frame(ADMIN, ADMIN_2, dport=22, syn=True), False),
    ("node opens SSH to admin", Frame(NODE_A, ADMIN, sport=22, dport=22, syn=True), False),
    ("node to admin, other port", Frame(NODE_A, ADMIN, sport=40000, dport=8080, ack=True), False),
    ("admin spoofing a node's address", Frame(NODE_B, NODE_A, dport=2379, ipauth=False), False),
    ("spoofed ARP", Frame(NODE_B, NODE_A, ethertype="arp", ipauth=False), False),
    ("IPv6", Frame(ethertype="ipv6", protocol="tcp", dport=22), False),
    ("node to outside the overlay", Frame(NODE_A, "192.168.50.1", dport=80, syn=True), False),
]


@pytest.mark.parametrize(("frame", "allowed"), [t[1:] for t in TABLE], ids=[t[0] for t in TABLE])
def test_flows_inbound_at_the_receiver(frame: Frame, allowed: bool) -> None:
    assert allows(compiled("10.147.0.0/16"), frame) is allowed


def test_the_senders_own_check_agrees() -> None:
    rules = compiled("10.147.0.0/16")
    for what, frame, allowed in TABLE:
        assert allows(rules, frame, inbound=False) is allowed, what


@pytest.mark.parametrize("cidr", ["10.148.0.0/16", "172.20.0.0/20", "10.0.0.0/23"])
def test_block_zero_follows_the_overlay(cidr: str) -> None:
    overlay = ipaddress.IPv4Network(cidr)
    admin = str(overlay.network_address + 5)
    node = str(overlay.network_address + 256 + 10)
    rules = compiled(cidr)
    assert admin_block(cidr) == ipaddress.IPv4Network((overlay.network_address, 24))
    assert allows(rules, Frame(admin, node, dport=22, syn=True))
    assert not allows(rules, Frame(admin, node, dport=10250, syn=True))
    assert allows(rules, Frame(node, node, dport=10250, syn=True))


def test_an_overlay_without_node_blocks_is_refused() -> None:
    with pytest.raises(ValueError, match="no node block"):
        flow_rules("10.147.0.0/24")


def test_the_network_resource_sends_the_rules_to_central(central: FakeCentral) -> None:
    props = {
        "token": TOKEN, "base_url": central.url, "adopt_network_id": None,
        "network_name": "mc", "description": "", "cidr": "10.147.0.0/16", "mtu": 2800,
        "private": True, "rules_source": flow_rules("10.147.0.0/16"),
    }  # fmt: skip
    provider = NetworkProvider()
    created = provider.create(props)
    network = CentralClient(TOKEN, central.url).get_network(created.id)
    assert network["rulesSource"] == flow_rules("10.147.0.0/16")
    assert provider.read(created.id, created.outs).outs["rules_source"] == props["rules_source"]
    # edited by hand in Central: a refresh shows the drift, the next update puts them back
    central.networks[created.id]["rulesSource"] = "accept;"
    assert provider.read(created.id, created.outs).outs["rules_source"] == "accept;"

"""The booted fake VMs (tests/engine/providers/nodes.py): the fake clouds' addresses on
loopback when asked (scripts/offline.py ``MULTICLOUD_FAKE_ADDRESS_BASE``), and a VM's sshd
in a network namespace answering with its user-data's host key, for its user only, the node
emulator behind it."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from scripts.offline import ADDRESS_BASE_ENV, fake_outputs
from tests.engine.harness import NetworkNamespace
from tests.engine.providers import nodes
from tests.support.tools import IN_CI, debian_tool, ed25519_openssh

PORT = "openstack:networking/port:Port"
DROPLET = "digitalocean:index/droplet:Droplet"


def test_addresses_are_documentation_ranges_unless_a_loopback_base_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ADDRESS_BASE_ENV, raising=False)
    assert fake_outputs(PORT, "n-port", {})["allFixedIps"][0].startswith("192.0.2.")
    monkeypatch.setenv(ADDRESS_BASE_ENV, "127.10")
    found = []
    for name in [f"mc-site-worker-{i}" for i in range(20)]:
        found += fake_outputs(PORT, name, {})["allFixedIps"]
        droplet = fake_outputs(DROPLET, name, {})
        found += [droplet["ipv4Address"], droplet["ipv4AddressPrivate"]]
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network("127.10.0.0/16") for a in found)
    assert len(set(found)) == len(found)  # 60 VMs' addresses, no two alike


@pytest.fixture
def netns() -> Iterator[NetworkNamespace]:
    if debian_tool("sshd", "openssh-server", nodes.SSHD) is None:
        pytest.skip("sshd is not installed (apt-get install openssh-server)")
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("the fake VMs' sshd needs root")
        pytest.skip("the fake VMs' sshd needs root")
    ns = NetworkNamespace()
    yield ns
    ns.close()


def test_a_booted_vm_answers_over_ssh_with_its_host_key_as_a_booted_node(
    netns: NetworkNamespace, tmp_path: Path
) -> None:
    host_private, host_public = ed25519_openssh()
    user_private, user_public = ed25519_openssh()
    user_data = "#cloud-config\n" + yaml.safe_dump(
        {
            "users": [{"name": "rke", "ssh_authorized_keys": [user_public]}],
            "ssh_keys": {"ed25519_private": host_private, "ed25519_public": host_public},
        }
    )
    outputs = {
        "ipv4Address": "127.10.3.7",
        "ipv4AddressPrivate": "10.116.0.7",
        "userData": user_data,
    }
    settings = {"central": "", "overlay_prefix": 16}
    boot = """
import json, sys
from pathlib import Path
from tests.engine.providers import nodes
nodes.boot(Path(sys.argv[1]), "vm-1", json.loads(sys.argv[2]), {}, json.loads(sys.argv[3]))
"""
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [*netns.run_prefix, str(root / "venv/bin/python"), "-c", boot, str(tmp_path / "nodes"),
         json.dumps(outputs), json.dumps(settings)],
        cwd=root, check=True, timeout=60, capture_output=True,
    )  # fmt: skip
    try:
        key = tmp_path / "id"
        key.touch(mode=0o600)
        key.write_text(user_private)
        (tmp_path / "known_hosts").write_text(f"127.10.3.7 {host_public}\n")

        def ssh(user: str, command: str) -> subprocess.CompletedProcess[str]:
            options = [
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", str(key),
                "-o", "StrictHostKeyChecking=yes", "-o", "HostKeyAlgorithms=ssh-ed25519",
                "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
            ]  # fmt: skip
            return subprocess.run(
                [*netns.run_prefix, "ssh", *options, f"{user}@127.10.3.7", command],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip

        # the host key pinned from the user-data is the one presented (else ssh refuses)
        done = ssh(
            "rke", "cloud-init status --wait && docker info >/dev/null && cat /etc/machine-id"
        )
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[0] == "status: done"
        machine_id = (tmp_path / "nodes" / "vm-1" / "machine-id").read_text().strip()
        assert lines[-1] == machine_id != Path("/etc/machine-id").read_text().strip()
        # only the user-data's user logs in; the private address is not on loopback
        assert ssh("root", "true").returncode == 255
        assert nodes.vm_addresses(outputs, {}) == ["127.10.3.7"]
        # the overlay interface has no address while there is no controller to ask
        assert ssh("rke", "ip -4 -o addr show dev zt0").returncode != 0
    finally:
        nodes.halt_all(tmp_path / "nodes")

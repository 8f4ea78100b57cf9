"""SSH host keys across the whole program: generated per node, installed by its user-data,
kept secret in state (the cached committed() runs; no extra program run)."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization

from scripts.offline import UNKNOWN, _ed25519_openssh, is_secret, reveal
from tests.support.program_runs import committed, vms
from tests.support.tools import load_yaml

HOST_KEY_TYPE = "tls:index/privateKey:PrivateKey"


def _public_of(private_openssh: str) -> str:
    key = serialization.load_ssh_private_key(private_openssh.encode(), None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def test_every_node_gets_its_own_generated_ed25519_host_key() -> None:
    run = committed("prod")
    keys = {r.name: r for r in run.of_type(HOST_KEY_TYPE)}
    machines = vms(run)
    assert machines and set(keys) == {f"{vm.name}-ssh-host-key" for vm in machines}
    for key in keys.values():
        assert reveal(key.inputs) == {"algorithm": "ED25519"}
        # The private halves never reach state in plaintext.
        assert {"privateKeyOpenssh", "privateKeyPem"} <= set(key.additional_secret_outputs)


def test_user_data_installs_exactly_that_key_and_stays_secret() -> None:
    run = committed("prod")
    publics = set()
    for vm in vms(run):
        assert is_secret(vm.inputs["userData"]), vm.name
        doc = load_yaml(reveal(vm.inputs["userData"]))
        installed = doc["ssh_keys"]
        expected = _ed25519_openssh(f"{vm.name}-ssh-host-key")  # what the mock generated
        assert installed["ed25519_private"] == expected["privateKeyOpenssh"]
        assert installed["ed25519_public"] == expected["publicKeyOpenssh"].strip()
        assert _public_of(installed["ed25519_private"]) == installed["ed25519_public"]
        publics.add(installed["ed25519_public"])
    assert len(publics) == len(vms(run))  # no two nodes share a key


def test_a_preview_knows_no_key_yet() -> None:
    # First preview: the keys do not exist, so the user-data is unknown, not a placeholder.
    run = committed("prod", preview=True)
    for vm in vms(run):
        assert is_secret(vm.inputs["userData"]) and reveal(vm.inputs["userData"]) == UNKNOWN


def test_every_readiness_gate_pins_its_nodes_host_key() -> None:
    run = committed("prod")
    user_data = {vm.name: load_yaml(reveal(vm.inputs["userData"])) for vm in vms(run)}
    gates = [r for r in run.of_type("command:remote:Command") if r.name.endswith("-ready")]
    assert {g.name.removesuffix("-ready") for g in gates} == set(user_data)
    for gate in gates:
        node = gate.name.removesuffix("-ready")
        assert is_secret(gate.inputs["connection"])  # the private key rides in it
        connection = reveal(gate.inputs["connection"])
        installed = user_data[node]["ssh_keys"]
        assert connection["hostKey"].strip() == installed["ed25519_public"]
        assert _public_of(installed["ed25519_private"]) == connection["hostKey"].strip()
        # taken when the gate is created (with its VM), never updated on a running VM
        assert gate.ignore_changes == ["connection.hostKey"]


def test_rke2_nodes_get_their_key_and_every_rke2_command_pins_its_hosts_key() -> None:
    from tests.support.program_runs import committed_rke2

    run = committed_rke2("prod")
    public_by_node = {
        vm.name: load_yaml(reveal(vm.inputs["userData"]))["ssh_keys"]["ed25519_public"]
        for vm in vms(run)
    }
    addresses = {n["name"]: n["sshAddress"] for n in run.outputs["nodes"]}
    node_at = {address: name for name, address in addresses.items()}
    commands = run.of_type("command:remote:Command")
    assert commands
    for command in commands:
        connection = reveal(command.inputs["connection"])
        target = node_at[connection["host"]]
        assert connection["hostKey"].strip() == public_by_node[target], command.name


def test_the_nodes_output_names_each_nodes_host_key_for_make_roll_to_pin() -> None:
    from tests.support.program_runs import committed_rke2

    for run in (committed("prod"), committed_rke2("prod")):
        installed = {
            vm.name: load_yaml(reveal(vm.inputs["userData"]))["ssh_keys"]["ed25519_public"]
            for vm in vms(run)
        }
        rows = {row["name"]: row for row in run.outputs["nodes"]}
        assert rows.keys() == installed.keys()
        for name, row in rows.items():
            assert row["hostKey"] == installed[name].strip(), name


def test_the_rke_command_hands_the_runner_the_pins_for_its_own_ssh() -> None:
    import json

    run = committed("prod")
    [command] = run.of_type("command:local:Command")
    environment = command.inputs["environment"]
    assert is_secret(environment["RKE_HOST_KEYS"])  # it comes from the gates' connections
    pins = json.loads(reveal(environment)["RKE_HOST_KEYS"])
    gates = [r for r in run.of_type("command:remote:Command") if r.name.endswith("-ready")]
    expected = {
        reveal(g.inputs["connection"])["host"]: reveal(g.inputs["connection"])["hostKey"].strip()
        for g in gates
    }
    assert pins == expected and len(pins) == len(gates)

"""Scenarios 2 and 3 (issue 19) for the home (3 nodes) and prod (7 nodes) stacks, with RKE and
with RKE2: `pulumi up` of a new stack
converges through the real engine, the stand-in providers and booted fake VMs
(``Workspace(..., nodes=True)``: a real sshd per VM with the host key its user-data
installs, a node emulator behind it, tests/engine/providers/nodes.py; the real
``rke.runner`` against tests/support/fake_rke.py's rke and kubectl; the ZeroTier dynamic providers
against the fake Central over HTTPS); the state holds no secret in plaintext; the outputs
are the documented ones (docs/architecture.md, ``__main__.py``); then `pulumi preview
--expect-no-changes` and a no-op `pulumi up --expect-no-changes` pass. Wall times are printed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.offline import PROJECT, SIG_KEY, reveal
from tests.engine.harness import Workspace
from tests.engine.providers.cloud import VM_TYPES, FakeCloud
from tests.engine.providers.nodes import SSHD
from tests.support.program_runs import CANARIES, plaintext
from tests.support.tools import IN_CI, debian_tool

# docs/architecture.md: __main__.py exports kubeconfig, nodes, overlayNetworkId, and appUrl
# with an entrypoint (recordName only with a public record: home has none); ClusterServices
# adds chartVersions; with RKE2, `rke2`, the join record the next update reads back
# (docs/rke2.md); the boot record `boot` and the nodes behind their code `bootDrift`
# (components/boot_outputs.py).
OUTPUTS = {"kubeconfig", "nodes", "overlayNetworkId", "appUrl", "chartVersions"}
OUTPUTS |= {"boot", "bootDrift"}
RKE2 = {f"{PROJECT}:engine": "rke2", f"{PROJECT}:kubernetesVersion": ""}
# case -> (stack, extra config, outputs, appUrl)
CASES: dict[str, tuple[str, dict[str, str], set[str], str | None]] = {
    "home": ("home", {}, OUTPUTS, "http://app.home.lan/"),
    "prod": ("prod", {}, OUTPUTS | {"recordName"}, None),
    "home-rke2": ("home", RKE2, OUTPUTS | {"rke2"}, "http://app.home.lan/"),
    "prod-rke2": ("prod", RKE2, OUTPUTS | {"recordName", "rke2"}, None),
}


# what the random and tls stand-ins generate as secrets (tests/engine/providers/server.py)
GENERATED_SECRETS = {
    "random:index/randomPassword:RandomPassword": ("result",),
    "tls:index/privateKey:PrivateKey": ("privateKeyOpenssh", "privateKeyPem"),
}


def _shown(value: Any) -> Any:
    """A value of `pulumi stack export --show-secrets`: a secret is ``{sig, "plaintext": JSON}``."""
    if isinstance(value, dict) and SIG_KEY in value:
        return json.loads(value["plaintext"])
    return value


def _resources(export: dict[str, Any]) -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = export["deployment"]["resources"]
    return resources


def _needs_sshd() -> None:
    """The fake VMs run Debian's sshd as root (tests/engine/providers/nodes.py)."""
    if debian_tool("sshd", "openssh-server", SSHD) is None:
        pytest.skip("sshd is not installed (apt-get install openssh-server)")
    if os.geteuid() != 0:
        message = "the fake VMs' sshd needs root (tests/engine/providers/nodes.py)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.mark.parametrize("case", sorted(CASES))
def test_up_converges_and_a_second_preview_has_no_changes(tmp_path: Path, case: str) -> None:
    _needs_sshd()
    stack, config, expected_outputs, app_url = CASES[case]
    with Workspace(tmp_path, stack, config=config, nodes=True) as ws:
        up = ws.up()
        export = ws.export()
        shown = ws.run("stack", "export", "--show-secrets").json()  # to read the gates
        preview = ws.run("preview", "--expect-no-changes", "--diff")
        noop = ws.up("--expect-no-changes")
        cloud = FakeCloud(ws.folder / "cloud")
        assert ws.central is not None and ws.rke is not None
        members = dict(ws.central.members)
        rke_calls = [c for c in ws.rke.calls() if c["tool"] == "rke"]
        outputs = ws.run("stack", "output", "--json").json()
    print(
        f"\n{case}: up {up.seconds:.1f} s, preview --expect-no-changes {preview.seconds:.1f} s, "
        f"no-op up {noop.seconds:.1f} s"
    )

    # no secret in plaintext anywhere in the state: the canaries, and the real SSH key
    text = plaintext(export)
    for key, value in CANARIES.items():
        if key != "sshPrivateKey":
            assert value not in text, f"{key} in plaintext in the state"
    assert ws.ssh_private_key.splitlines()[1] not in text
    # nor any secret the stack generates (RKE2's tokens, the nodes' SSH host keys)
    generated = [
        line
        for r in _resources(shown)
        for key in GENERATED_SECRETS.get(r["type"], ())
        if key in r.get("outputs", {})
        for line in str(_shown(r["outputs"][key])).splitlines()
        if len(line) >= 16 and "PRIVATE KEY" not in line
    ]
    assert generated and not [line for line in generated if line in text]

    vms = {r["name"]: id_ for id_, r in cloud.resources().items() if r["type"] in VM_TYPES}
    assert len(vms) == (3 if stack == "home" else 7)
    # the ZeroTier providers made the network and one authorized member per node
    assert len(members) == len(vms) and all(m["config"]["authorized"] for m in members.values())
    assert {network for network, _ in members} == {outputs["overlayNetworkId"]}
    # the documented outputs; the kubeconfig is a secret
    assert set(outputs) == expected_outputs
    assert outputs["kubeconfig"] == "[secret]"
    root = next(r for r in _resources(export) if r["type"] == "pulumi:pulumi:Stack")
    assert plaintext(root["outputs"]["kubeconfig"]) == ""
    if app_url:
        assert outputs["appUrl"] == app_url
    assert [row["name"] for row in outputs["nodes"]] == sorted(vms)

    if config.get(f"{PROJECT}:engine") == "rke2":
        _check_rke2(ws.folder / "cloud" / "nodes", shown, text, outputs)
        assert rke_calls == []
        return

    # every VM booted and its readiness gate ran on it, through its sshd: the gate prints
    # the node's /etc/machine-id, the one the fake VM got (nodes.py: sha256 of the VM id)
    gates = {
        r["urn"].rsplit("::", 1)[1].removesuffix("-ready"): r
        for r in _resources(shown)
        if r["type"] == "command:remote:Command" and r["urn"].endswith("-ready")
    }
    assert sorted(gates) == sorted(vms)
    for name, id_ in vms.items():
        machine_id = hashlib.sha256(id_.encode()).hexdigest()[:32]
        assert _shown(gates[name]["outputs"]["stdout"]).strip() == machine_id
        # pinned to the host key the VM's user-data installs
        user_data = yaml.safe_load(reveal(cloud.resources()[id_]["outputs"]["userData"]))
        pinned = _shown(gates[name]["outputs"]["connection"])["hostKey"]
        assert pinned.strip() == user_data["ssh_keys"]["ed25519_public"]

    # `rke up` ran once (the no-op up re-ran nothing), on the nodes' SSH addresses
    assert [c["args"][0] for c in rke_calls] == ["up"]
    addresses = sorted(n["address"] for n in rke_calls[0]["config"]["nodes"])
    assert addresses == sorted(row["sshAddress"] for row in outputs["nodes"])


def _check_rke2(nodes: Path, shown: dict[str, Any], text: str, outputs: dict[str, Any]) -> None:
    """The cluster-ready command ran on a server through its sshd and printed that server's
    admin kubeconfig (nodes.py writes one per server, with its own client key): kept secret
    in the state, and the same document (RKE2's ``rewrite_kubeconfig`` points it at the
    server's address)."""
    (ready,) = [
        r
        for r in _resources(shown)
        if r["type"] == "command:remote:Command" and r["urn"].endswith("-nodes-ready")
    ]
    host = _shown(ready["outputs"]["connection"])["host"]
    assert host in [row["sshAddress"] for row in outputs["nodes"]]
    (anchor,) = [
        info.parent
        for info in nodes.glob("*/node.json")
        if host in json.loads(info.read_text())["addresses"]
    ]
    written = yaml.safe_load((anchor / "root/etc/rancher/rke2/rke2.yaml").read_text())
    printed = yaml.safe_load(_shown(ready["outputs"]["stdout"]))
    assert printed == written
    key = written["users"][0]["user"]["client-key-data"]
    assert key not in text, "RKE2's admin client key in plaintext in the state"

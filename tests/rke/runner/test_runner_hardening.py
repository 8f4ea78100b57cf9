"""The runner, end to end with the fake rke: a leaky ``rke`` prints the S3 secret encoded
and a key of the state it just wrote (which the runner was never given), and none of it
reaches stderr; a cluster.yml that would change a running cluster's network plugin is
refused before ``rke up``; the runner's own ``ssh`` checks the host keys the gates pinned
(the fake ``ssh`` compares them with the key each node presents, as OpenSSH does)."""

from __future__ import annotations

import base64
import json
import urllib.parse
from dataclasses import replace

from rke.cluster_yml import render_cluster_yml
from rke.runner.documents import load_yaml
from rke.state import check_rkestate, parse_previous
from tests.rke.runner.test_rke_runner import (  # noqa: F401
    CLUSTER,
    MASTERS,
    S3_SECRET,
    SETTINGS,
    WORKERS,
    Box,
    box,
)

ADDRESSES = [n["address"] for n in load_yaml(CLUSTER)["nodes"]]


def pieces(text: str, size: int = 12) -> set[str]:
    return {text[i : i + size] for i in range(len(text) - size + 1)}


def leaky_run(box: Box, **mode: bool) -> tuple[str, str]:  # noqa: F811
    """A successful run with a leaky fake rke in ``mode``: (the runner's stderr, kube-admin's
    key from the state the runner stored); the key did reach the runner's output."""
    box.sb.set(**mode)
    result = box.run()
    assert result.returncode == 0, result.stderr
    stored = parse_previous(result.stdout)
    assert stored is not None
    admin_key = check_rkestate(stored.rkestate)["desiredState"]["certificatesBundle"]["kube-admin"][
        "keyPEM"
    ]
    assert "DEBU[0003] [state] kube-admin client-key-data" in result.stderr  # it did leak
    return result.stderr, admin_key


def test_encoded_and_untold_secrets_never_reach_stderr(box: Box) -> None:  # noqa: F811
    stderr, admin_key = leaky_run(box, leak=True)
    forms = {
        "the S3 secret": S3_SECRET,
        "the S3 secret in base64": base64.b64encode(S3_SECRET.encode()).decode(),
        "the S3 secret URL-encoded": urllib.parse.quote(S3_SECRET, safe=""),
        "kube-admin's key": admin_key,
        "kube-admin's key in base64": base64.b64encode(admin_key.encode()).decode(),
        "kube-admin's key JSON-escaped": json.dumps(admin_key),
    }
    for what, form in forms.items():
        assert not pieces(form) & pieces(stderr), what


def test_a_state_rewritten_with_the_same_size_and_timestamp_is_learnt(box: Box) -> None:  # noqa: F811
    """RKE rewrites the state within one coarse timestamp tick at the same size: the
    runner still reads the new one on RKE's "written" line, before redacting what follows."""
    stderr, admin_key = leaky_run(box, leak=True, restamp=True)
    assert not pieces(base64.b64encode(admin_key.encode()).decode()) & pieces(stderr)
    assert not pieces(admin_key) & pieces(stderr)


def test_a_state_being_rewritten_at_rkes_written_line_is_waited_for(box: Box) -> None:  # noqa: F811
    """The runner gets to RKE's "written" line while the file is being rewritten (empty):
    it waits for the complete state before redacting the lines that follow."""
    stderr, admin_key = leaky_run(box, midwrite=True)
    assert not pieces(base64.b64encode(admin_key.encode()).decode()) & pieces(stderr)
    assert not pieces(admin_key) & pieces(stderr)


def test_a_network_plugin_change_on_a_running_cluster_is_refused(box: Box) -> None:  # noqa: F811
    flannel = replace(SETTINGS, rke=SETTINGS.rke.model_copy(update={"network_plugin": "flannel"}))
    old = render_cluster_yml(MASTERS + WORKERS, flannel)
    previous = box.deployed(old)
    refused = box.run(previous=previous)  # the stack's default: canal
    assert refused.returncode == 1
    assert "runs the flannel network plugin and cluster.yml asks for canal" in refused.stderr
    assert "rke.networkPlugin flannel" in refused.stderr
    assert not [c for c in box.sb.calls() if c["tool"] == "rke" and c["args"][:1] == ["up"]]
    kept = box.run(old, previous=previous)  # the stack set to the cluster's plugin
    assert kept.returncode == 0, kept.stderr


def _host_keys(sandbox: Box, impostor: str | None = None) -> dict[str, str]:
    """Pins for ``addresses``; each node's sshd presents its own key, except ``impostor``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    def key() -> str:
        public = ed25519.Ed25519PrivateKey.generate().public_key()
        return public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ).decode()

    pins = {address: key() for address in ADDRESSES}
    presented = sandbox.sb.world / "hostkeys"
    presented.mkdir(exist_ok=True)
    for address, pin in pins.items():
        (presented / address).write_text(key() if address == impostor else pin)
    return pins


def test_the_runners_own_ssh_checks_the_pinned_host_keys(box: Box) -> None:  # noqa: F811
    pins = _host_keys(box)
    result = box.run(RKE_HOST_KEYS=json.dumps(pins))  # a first run: every node is probed
    assert result.returncode == 0, result.stderr
    calls = box.sb.calls("ssh")
    assert calls and all("StrictHostKeyChecking=yes" in c["args"][0] for c in calls)


def test_an_impostor_node_stops_a_stateless_run(box: Box) -> None:  # noqa: F811
    pins = _host_keys(box, impostor="203.0.113.2")
    result = box.run(RKE_HOST_KEYS=json.dumps(pins))
    assert result.returncode == 1 and "could not be asked" in result.stderr
    assert "Host key verification failed" in result.stderr
    assert box.sb.ups() == []  # no rke up against a node that is not the one pinned


def test_nodes_without_a_pin_are_asked_as_before(box: Box) -> None:  # noqa: F811
    result = box.run()  # no RKE_HOST_KEYS: nodes created before host keys were generated
    assert result.returncode == 0, result.stderr
    assert all("StrictHostKeyChecking=no" in c["args"][0] for c in box.sb.calls("ssh"))

"""The runner, end to end with the fake rke: a leaky ``rke`` prints the S3 secret encoded
and a key of the state it just wrote (which the runner was never given), and none of it
reaches stderr; a cluster.yml that would change a running cluster's network plugin is
refused before ``rke up``."""

from __future__ import annotations

import base64
import json
import urllib.parse
from dataclasses import replace

from rke.cluster_yml import render_cluster_yml
from rke.state import check_rkestate, parse_previous
from tests.test_rke_runner import MASTERS, S3_SECRET, SETTINGS, WORKERS, Box, box  # noqa: F401


def pieces(text: str, size: int = 12) -> set[str]:
    return {text[i : i + size] for i in range(len(text) - size + 1)}


def test_encoded_and_untold_secrets_never_reach_stderr(box: Box) -> None:  # noqa: F811
    box.sb.set(leak=True)
    result = box.run()
    assert result.returncode == 0, result.stderr
    stored = parse_previous(result.stdout)
    assert stored is not None
    admin_key = check_rkestate(stored.rkestate)["desiredState"]["certificatesBundle"]["kube-admin"][
        "keyPEM"
    ]
    forms = {
        "the S3 secret": S3_SECRET,
        "the S3 secret in base64": base64.b64encode(S3_SECRET.encode()).decode(),
        "the S3 secret URL-encoded": urllib.parse.quote(S3_SECRET, safe=""),
        "kube-admin's key": admin_key,
        "kube-admin's key in base64": base64.b64encode(admin_key.encode()).decode(),
        "kube-admin's key JSON-escaped": json.dumps(admin_key),
    }
    assert "DEBU[0003] [state] kube-admin client-key-data" in result.stderr  # it did leak
    for what, form in forms.items():
        assert not pieces(form) & pieces(result.stderr), what


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

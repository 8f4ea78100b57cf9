"""User-data: validated by Debian's `cloud-init schema`, and in the order the node needs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.cloud_init import (
    DOCKER_VERSION,
    INTERFACE_BLACKLIST,
    ZEROTIER_KEY_FINGERPRINT,
    OverlayFiles,
    render_user_data,
)
from components.nodes import NodeSpec

NODE = NodeSpec(
    name="mc-home-worker-0",
    site="home",
    kind="worker",
    index=0,
    roles=("worker",),
    size="g1.medium",
    zerotier_ip="10.147.2.50",
    ingress="none",
)
OVERLAY = OverlayFiles("8056c2e21c000001", "1c41190849:0:pub:priv", "1c41190849:0:pub")
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHc8rZrYJr7N0C5mL0nRr7Qy1q2m6hB4xJ1oVwE9Zs3k ops@example"


def cloud_init_schema(paths: list[Path]) -> list[subprocess.CompletedProcess[str]]:
    """Run Debian's validator on every file, in parallel (each call takes ~1.5 s)."""
    binary = shutil.which("cloud-init")
    if binary is None:
        pytest.fail("cloud-init is not installed (`apt-get install cloud-init`; .ci/run does)")
    procs = [
        subprocess.Popen(
            [binary, "schema", "-c", str(p)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for p in paths
    ]
    results = []
    for proc, path in zip(procs, paths, strict=True):
        out, _ = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess([str(path)], proc.returncode, out))
    return results


def document(overlay: OverlayFiles | None = OVERLAY) -> dict:
    text = render_user_data(NODE, ssh_user="rke", ssh_public_key=KEY, overlay=overlay)
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


def test_schema_accepts_user_data_and_rejects_a_broken_one(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(render_user_data(NODE, ssh_user="rke", ssh_public_key=KEY, overlay=OVERLAY))
    plain = tmp_path / "plain.yaml"
    plain.write_text(render_user_data(NODE, ssh_user="rke", ssh_public_key=KEY, overlay=None))
    broken = tmp_path / "broken.yaml"  # proves the validator is really validating
    broken.write_text(
        good.read_text().replace("ssh_authorized_keys:", "ssh_authorized_keys: 7\n  x:")
    )
    results = cloud_init_schema([good, plain, broken])
    assert results[0].returncode == 0, results[0].stdout
    assert results[1].returncode == 0, results[1].stdout
    assert results[2].returncode != 0


def test_node_prerequisites_for_rke_and_longhorn() -> None:
    doc = document()
    user = doc["users"][0]
    assert (
        user["name"] == "rke"
        and "docker" in user["groups"]
        and user["ssh_authorized_keys"] == [KEY]
    )
    assert doc["ssh_pwauth"] is False and doc["disable_root"] is True
    assert {"open-iscsi", "nfs-common"} <= set(doc["packages"])
    files = {f["path"]: f for f in doc["write_files"]}
    assert "br_netfilter" in files["/etc/modules-load.d/kubernetes.conf"]["content"]
    assert "net.ipv4.ip_forward = 1" in files["/etc/sysctl.d/90-kubernetes.conf"]["content"]
    script = files["/usr/local/sbin/multicloud-bootstrap"]["content"]
    assert "swapoff -a" in script
    assert f"docker-ce={DOCKER_VERSION}" in script and "apt-mark hold docker-ce" in script
    assert DOCKER_VERSION.startswith("5:26.1.")  # a Docker line RKE v1.8 accepts for 1.30


def test_overlay_files_are_written_before_zerotier_is_installed() -> None:
    doc = document()
    files = {f["path"]: f for f in doc["write_files"]}
    secret = files["/var/lib/zerotier-one/identity.secret"]
    assert secret["permissions"] == "0600" and secret["content"].strip() == OVERLAY.identity_secret
    assert (
        files["/var/lib/zerotier-one/identity.public"]["content"].strip() == OVERLAY.identity_public
    )
    assert files[f"/var/lib/zerotier-one/networks.d/{OVERLAY.network_id}.conf"]["content"] == ""
    local = json.loads(files["/var/lib/zerotier-one/local.conf"]["content"])
    assert local["settings"]["interfacePrefixBlacklist"] == list(INTERFACE_BLACKLIST)
    # write_files runs in cloud-init's init stage, runcmd in its final stage: the
    # package that starts zerotier-one is only installed by the runcmd script.
    assert "zerotier-one" not in doc["packages"]
    script = files["/usr/local/sbin/multicloud-bootstrap"]["content"]
    assert ZEROTIER_KEY_FINGERPRINT in script
    install = next(line for line in script.splitlines() if "apt-get install" in line)
    assert "zerotier-one" in install
    assert script.index("zerotier.list") < script.index(install)
    assert doc["runcmd"] == [["/usr/local/sbin/multicloud-bootstrap"]]


def test_pods_cannot_reach_the_metadata_service() -> None:
    files = {f["path"]: f for f in document()["write_files"]}
    guard = files["/usr/local/sbin/multicloud-metadata-guard"]["content"]
    assert "-d 169.254.169.254/32 -j DROP" in guard and "FORWARD" in guard
    assert "multicloud-metadata-guard" in files["/usr/local/sbin/multicloud-bootstrap"]["content"]


def test_zerotier_is_held_and_flannel_restarts_when_its_interface_returns() -> None:
    files = {f["path"]: f for f in document()["write_files"]}
    bootstrap = files["/usr/local/sbin/multicloud-bootstrap"]["content"]
    assert "apt-mark hold zerotier-one" in bootstrap
    assert bootstrap.index("apt-mark hold zerotier-one") > bootstrap.index("apt-get install")
    rule = files["/etc/udev/rules.d/90-multicloud-overlay.rules"]["content"]
    assert 'KERNEL=="zt*"' in rule and "multicloud-flannel-restart@%k.service" in rule
    unit = files["/etc/systemd/system/multicloud-flannel-restart@.service"]["content"]
    assert "ExecStart=/usr/local/sbin/multicloud-flannel-restart %i" in unit
    script = files["/usr/local/sbin/multicloud-flannel-restart"]
    assert script["permissions"] == "0755"
    assert "io.kubernetes.container.name=kube-flannel" in script["content"]
    subprocess.run(["sh", "-n"], input=script["content"], text=True, check=True)


def test_no_overlay_means_no_zerotier() -> None:
    doc = document(overlay=None)
    files = {f["path"]: f for f in doc["write_files"]}
    assert not [path for path in files if "zerotier" in path or "flannel" in path]
    assert "/etc/udev/rules.d/90-multicloud-overlay.rules" not in files
    script = files["/usr/local/sbin/multicloud-bootstrap"]["content"]
    assert "zerotier.list" not in script and "enable --now zerotier-one" not in script


def test_zerotier_install_matches_the_reference() -> None:
    from components.cloud_init import ZEROTIER_APT, ZEROTIER_KEY_URL
    from tests import reference

    ref = reference.load("zerotier-install.json")
    assert ref["signing_key_fingerprint"] == ZEROTIER_KEY_FINGERPRINT
    assert ref["signing_key_url"] == ZEROTIER_KEY_URL
    script = {f["path"]: f for f in document()["write_files"]}[
        "/usr/local/sbin/multicloud-bootstrap"
    ]
    assert ref["apt_source"] in script["content"]
    assert ZEROTIER_APT in ref["apt_source"]

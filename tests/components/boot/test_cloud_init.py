"""User-data: valid for cloud-init 22.4.2 (Debian 12), and in the order the node needs.

Every document is checked twice where possible: by ``scripts.cloud_config_schema`` (the
vendored 22.4.2 schema applied as ``cloud-init schema`` applies it) always, and by
Debian's ``cloud-init schema`` binary where it is installed (required under ``CI=true``).
The two must agree, down to the text they print.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from components.boot.document import render_user_data
from components.boot.overlay import INTERFACE_BLACKLIST, ZEROTIER_KEY_FINGERPRINT, OverlayFiles
from components.nodes import NodeSpec
from rke.boot import DOCKER_VERSION, docker_part
from scripts.cloud_config_schema import (
    SchemaResult,
    validate_cloud_config,
    validate_cloud_config_file,
)
from tests.support.tools import debian_tool, load_yaml

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
RKE = docker_part("rke")  # the engine every test here renders, unless it says otherwise
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHc8rZrYJr7N0C5mL0nRr7Qy1q2m6hB4xJ1oVwE9Zs3k ops@example"


@dataclass(frozen=True)
class Verdict:
    """One file's result: the mirror's, and the binary's output when it ran."""

    path: Path
    mirror: SchemaResult
    binary: subprocess.CompletedProcess[str] | None

    @property
    def valid(self) -> bool:
        return self.mirror.valid

    def why(self) -> str:
        return self.mirror.report() if self.binary is None else self.binary.stdout


MIRRORED_RELEASE = "22.4.2"  # the cloud-init release scripts/cloud_config_schema.py mirrors


Started = tuple[subprocess.Popen[str] | None, list[subprocess.Popen[str]]]


def start_binary(paths: list[Path]) -> Started:
    """Start ``cloud-init --version`` and ``cloud-init schema -c`` on every file, in parallel
    (one process per file, ~0.4 s of CPU each); nothing when the binary is not installed."""
    binary = debian_tool("cloud-init", "cloud-init")
    procs = []
    version = None
    if binary:
        version = subprocess.Popen([binary, "--version"], stdout=subprocess.PIPE, text=True)
        for p in paths:
            cmd = [binary, "schema", "-c", str(p)]
            procs.append(
                subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            )
    return version, procs


def validate_user_data(paths: list[Path], started: Started | None = None) -> list[Verdict]:
    """Validate every file with the mirror and, where installed, cloud-init's binary.

    The binary runs on all files in parallel (``start_binary``; ``started`` when the caller
    started it earlier) while the mirror checks them. They must agree on validity; when
    the binary is the mirrored release (Debian 12's 22.4.2) they must also print the same
    text. Another release (Ubuntu's, say) words its messages differently, so only validity
    is compared.
    """
    version, procs = started if started is not None else start_binary(paths)
    mirrors = [validate_cloud_config_file(p) for p in paths]
    same_release = (
        version is not None and version.communicate(timeout=120)[0].split()[-1] == MIRRORED_RELEASE
    )
    verdicts = []
    for i, (path, mirror) in enumerate(zip(paths, mirrors, strict=True)):
        run = None
        if procs:
            out, _ = procs[i].communicate(timeout=120)
            run = subprocess.CompletedProcess([str(path)], procs[i].returncode, out)
            assert (run.returncode == 0) == mirror.valid, (path.name, run.stdout, mirror.report())
            if same_release:
                assert run.stdout.strip() == mirror.report(), (path.name, run.stdout)
        verdicts.append(Verdict(path, mirror, run))
    return verdicts


def document(overlay: OverlayFiles | None = OVERLAY) -> dict:
    text = render_user_data(NODE, ssh_user="rke", ssh_public_key=KEY, engine=RKE, overlay=overlay)
    assert text.startswith("#cloud-config\n")
    return load_yaml(text)


# Documents cloud-init must refuse, each for a different stage of `cloud-init schema`.
_BROKEN = {
    "schema": lambda good: good.replace("ssh_authorized_keys:", "ssh_authorized_keys: 7\n  x:"),
    "header": lambda good: good.removeprefix("#cloud-config\n"),
    "yaml": lambda good: good + "runcmd: [\n",
    "not-a-mapping": lambda good: "#cloud-config\n- a list\n",
}


def _documents() -> dict[str, str]:
    """The documents of the test below, by name: pure functions of this module's constants."""
    good = render_user_data(NODE, ssh_user="rke", ssh_public_key=KEY, engine=RKE, overlay=OVERLAY)
    docs = {
        "good": good,
        "plain": render_user_data(
            NODE, ssh_user="rke", ssh_public_key=KEY, engine=RKE, overlay=None
        ),
        # YAML 1.1 (PyYAML, as cloud-init loads it) reads `yes` as true, so this is valid
        # where a YAML 1.2 loader would see the string "yes"; apt_update is deprecated in
        # 22.4.2, reported without failing.
        "yaml11-deprecated": "#cloud-config\npackage_upgrade: yes\napt_update: true\n",
    }
    return docs | {f"broken-{name}": breaks(good) for name, breaks in _BROKEN.items()}


def _write(directory: Path, docs: dict[str, str]) -> list[Path]:
    paths = []
    for name, text in docs.items():
        (path := directory / f"{name}.yaml").write_text(text)
        paths.append(path)
    return paths


class _Prefetched:
    """The binary's runs on ``_documents()``, started by ``prefetch`` after collection."""

    docs: ClassVar[dict[str, str]] = {}
    paths: ClassVar[list[Path]] = []
    started: ClassVar[Started | None] = None


PREFETCHED = {"test_user_data_is_valid_and_broken_documents_fail_both_ways"}  # run last


def prefetch(selected: set[str]) -> None:
    """Called by conftest.py after collection: start cloud-init on the documents now, so
    its ~3 s of CPU run beside the other tests."""
    if not PREFETCHED & selected:
        return
    with contextlib.suppress(pytest.fail.Exception):  # the test itself reports it
        directory = Path(tempfile.mkdtemp(prefix="cloud-init-schema-"))
        atexit.register(shutil.rmtree, directory, True)
        _Prefetched.docs = _documents()
        _Prefetched.paths = _write(directory, _Prefetched.docs)
        _Prefetched.started = start_binary(_Prefetched.paths)


def test_user_data_is_valid_and_broken_documents_fail_both_ways(tmp_path: Path) -> None:
    docs = _documents()
    if _Prefetched.started is not None and _Prefetched.docs == docs:
        paths, started = _Prefetched.paths, _Prefetched.started
    else:
        paths, started = _write(tmp_path, docs), None
    verdicts = {v.path.stem: v for v in validate_user_data(paths, started)}

    for name in ("good", "plain"):
        assert verdicts[name].valid, verdicts[name].why()
        assert not verdicts[name].mirror.deprecations, verdicts[name].why()
    lenient = verdicts["yaml11-deprecated"]
    assert lenient.valid, lenient.why()
    assert [p for p, _ in lenient.mirror.deprecations] == ["apt_update"]
    for name in _BROKEN:
        assert not verdicts[f"broken-{name}"].valid, name
    assert verdicts["broken-header"].mirror.errors[0][0] == "format-l1.c1"
    assert verdicts["broken-yaml"].mirror.errors[0][0].startswith("format-l")
    assert verdicts["broken-schema"].mirror.errors[0][0] == "users.0"
    assert verdicts["broken-not-a-mapping"].mirror.fatal == "Cloud-config is not a YAML dict."


def test_the_schema_is_applied_as_yaml_1_1_reads_it() -> None:
    # The same key as a YAML 1.2 loader would give it: a string, which 22.4.2 refuses.
    errors, _ = validate_cloud_config({"package_upgrade": "yes"})
    assert errors == [("package_upgrade", "'yes' is not of type 'boolean'")]
    # !!binary content is bytes, which cloud-init's type checker accepts as a string.
    errors, _ = validate_cloud_config({"write_files": [{"path": "/x", "content": b"\x00"}]})
    assert errors == []


def test_libyaml_and_pure_python_emitters_write_the_same_user_data() -> None:
    # render_user_data emits through libyaml where PyYAML has it (10x faster); a machine
    # without libyaml must get the same text, byte for byte (reviewers diff it, and a
    # changed document would show in every preview).
    import yaml

    from components.boot import document as cloud_init

    class Pure(yaml.SafeDumper):
        pass

    Pure.add_representer(str, cloud_init._str)
    text = render_user_data(NODE, ssh_user="rke", ssh_public_key=KEY, engine=RKE, overlay=OVERLAY)
    assert issubclass(cloud_init._Dumper, yaml.CSafeDumper)  # libyaml is what runs here
    doc = load_yaml(text)
    assert "#cloud-config\n" + yaml.dump(doc, Dumper=Pure, sort_keys=False, width=1000) == text


def test_node_prerequisites_for_rke_and_longhorn() -> None:
    doc = document()
    user = doc["users"][0]
    assert (
        user["name"] == "rke"
        and "docker" in user["groups"]
        and user["ssh_authorized_keys"] == [KEY]
    )
    assert doc["ssh_pwauth"] is False and doc["disable_root"] is True
    # No apt in cloud-init's own module (it waits 30 s for apt's locks, then the boot goes
    # on without the packages): the bootstrap installs them, waiting
    # (tests/components/boot/test_apt_lock.py).
    assert "packages" not in doc and "package_update" not in doc
    files = {f["path"]: f for f in doc["write_files"]}
    assert "br_netfilter" in files["/etc/modules-load.d/kubernetes.conf"]["content"]
    assert "net.ipv4.ip_forward = 1" in files["/etc/sysctl.d/90-kubernetes.conf"]["content"]
    script = files["/usr/local/sbin/multicloud-bootstrap"]["content"]
    assert "swapoff -a" in script
    assert {"open-iscsi", "nfs-common"} <= set(script.split())  # Longhorn's
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
    assert "zerotier-one" not in json.dumps(doc.get("packages", []))
    script = files["/usr/local/sbin/multicloud-bootstrap"]["content"]
    assert ZEROTIER_KEY_FINGERPRINT in script
    install = next(line for line in script.splitlines() if "apt-get install" in line)
    assert "zerotier-one" in install
    assert script.index("zerotier.list") < script.index(install)
    assert doc["runcmd"] == [["/usr/local/sbin/multicloud-bootstrap"]]


def test_nothing_on_the_node_reaches_the_metadata_service() -> None:
    # The guard's behaviour is tested in a network namespace:
    # tests/components/boot/test_node_trust.py.
    files = {f["path"]: f for f in document()["write_files"]}
    guard = files["/usr/local/sbin/multicloud-metadata-guard"]["content"]
    assert "ip -4 rule add prohibit to 169.254.169.254/32" in guard
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
    from components.boot.overlay import ZEROTIER_APT, ZEROTIER_KEY_URL
    from tests.support import reference

    ref = reference.load("zerotier-install.json")
    assert ref["signing_key_fingerprint"] == ZEROTIER_KEY_FINGERPRINT
    assert ref["signing_key_url"] == ZEROTIER_KEY_URL
    script = {f["path"]: f for f in document()["write_files"]}[
        "/usr/local/sbin/multicloud-bootstrap"
    ]
    assert ref["apt_source"] in script["content"]
    assert ZEROTIER_APT in ref["apt_source"]


def test_the_vendored_schema_is_the_upstream_file() -> None:
    from scripts.cloud_config_schema import SCHEMA_FILE

    # sha256 of cloudinit/config/schemas/schema-cloud-config-v1.json at cloud-init tag 22.4.2
    # (reference/README.md): an edit here would make the mirror validate something else.
    upstream = "b0c5c64d33e23c617f1d86a7ffb6e01aa1e81082589a3570fe02b265ab72b4f4"
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == upstream

"""What a node trusts, run for real: the apt-key script with gpg, the metadata guard in a
network namespace, and the SSH host key cloud-init installs (validated by Debian's schema)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from components.boot.apt import APT_KEY_SCRIPT
from components.boot.document import render_user_data
from components.boot.host_key import SSHD_HOST_KEY_DROPIN, HostKey
from components.boot.metadata_guard import METADATA_GUARD_SCRIPT
from components.boot.metadata_guard import unit as metadata_guard_unit
from components.boot.overlay import ZEROTIER_APT, ZEROTIER_VERSION
from rke.boot import CONTAINERD_VERSION, DOCKER_VERSION, GUARD_ORDER, HELD_PACKAGES
from tests.components.boot.test_cloud_init import KEY, NODE, OVERLAY, RKE, validate_user_data
from tests.support import reference
from tests.support.tools import ed25519_openssh, namespace_prefix

TIMEOUT = 60


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not installed (Debian: apt-get install gnupg iproute2)")
    return path


# --- the apt-key script, with real gpg ---------------------------------------------------


@dataclass(frozen=True)
class Keys:
    home: Path  # the throwaway GNUPGHOME holding both secret keys
    pinned: str  # fingerprints
    other: str
    both: Path  # an armored file: the pinned key and the other key
    pinned_only: Path
    other_only: Path


def _gpg(home: Path, *args: str, stdin: bytes | None = None) -> bytes:
    env = {**os.environ, "GNUPGHOME": str(home)}
    done = subprocess.run(
        [_tool("gpg"), "--batch", *args],
        env=env, input=stdin, capture_output=True, timeout=TIMEOUT, check=True,
    )  # fmt: skip
    return done.stdout


def _fingerprint(home: Path, uid: str) -> str:
    out = _gpg(home, "--with-colons", "--list-keys", uid).decode()
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    """Two throwaway ED25519 signing keys (each takes well under a second)."""
    base = tmp_path_factory.mktemp("gpg")
    home = base / "h"
    home.mkdir(mode=0o700)
    for uid in ("pinned@example.invalid", "other@example.invalid"):
        _gpg(home, "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
    pinned = _fingerprint(home, "pinned@example.invalid")
    other = _fingerprint(home, "other@example.invalid")
    files = {}
    for name, fprs in {"both": [pinned, other], "pinned": [pinned], "other": [other]}.items():
        files[name] = base / f"{name}.asc"
        files[name].write_bytes(_gpg(home, "--armor", "--export", *fprs))
    try:
        yield Keys(home, pinned, other, files["both"], files["pinned"], files["other"])
    finally:
        subprocess.run(
            [_tool("gpgconf"), "--kill", "all"],
            env={**os.environ, "GNUPGHOME": str(home)}, timeout=TIMEOUT, check=False,
        )  # fmt: skip


def run_apt_key(
    tmp: Path, served: Path, fingerprint: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run the script from the user-data with a fake ``curl`` on PATH that serves ``served``."""
    bindir = tmp / "bin"
    bindir.mkdir(exist_ok=True)
    curl = bindir / "curl"
    curl.write_text(
        "#!/bin/sh\n"
        "# fake curl: writes $FAKE_CURL_FILE wherever -o says\n"
        "out=\nwhile [ $# -gt 0 ]; do case $1 in -o) out=$2; shift 2 ;; *) shift ;; esac; done\n"
        'cp "$FAKE_CURL_FILE" "$out"\n'
    )
    curl.chmod(0o755)
    script = tmp / "multicloud-apt-key"
    script.write_text(APT_KEY_SCRIPT)
    script.chmod(0o755)
    keyring = tmp / "repo.gpg"
    env = {
        **os.environ,
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "FAKE_CURL_FILE": str(served),
        "TMPDIR": str(tmp),
    }
    env.pop("GNUPGHOME", None)
    done = subprocess.run(
        [str(script), "https://keys.example.invalid/repo.gpg", fingerprint, str(keyring)],
        env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    return done, keyring


def primary_fingerprints(keyring: Path) -> list[str]:
    out = subprocess.run(
        [_tool("gpg"), "--batch", "--with-colons", "--show-keys", str(keyring)],
        capture_output=True, text=True, timeout=TIMEOUT, check=True,
    ).stdout  # fmt: skip
    lines = out.splitlines()
    return [
        lines[i + 1].split(":")[9]
        for i, line in enumerate(lines)
        if line.startswith("pub:") and lines[i + 1].startswith("fpr:")
    ]


def apt_trusts(keys: Keys, keyring: Path, signer: str, tmp: Path) -> bool:
    """Whether a file signed by ``signer`` verifies against ``keyring`` the way apt checks
    a Release file: ``gpgv`` with the repository's signed-by keyring and nothing else."""
    data = tmp / f"Release-{signer[:8]}"
    data.write_text("Origin: test\n")
    sig = tmp / f"{data.name}.gpg"
    _gpg(keys.home, "--yes", "--local-user", signer, "--detach-sign", "-o", str(sig), str(data))
    done = subprocess.run(
        [_tool("gpgv"), "--keyring", str(keyring), str(sig), str(data)],
        capture_output=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    return done.returncode == 0


def test_apt_key_keeps_only_the_pinned_key_from_a_file_with_two(keys: Keys, tmp_path: Path) -> None:
    done, keyring = run_apt_key(tmp_path, keys.both, keys.pinned)
    assert done.returncode == 0, done.stderr
    assert primary_fingerprints(keyring) == [keys.pinned]
    assert keys.other in done.stderr  # the extra key is named, and left out
    assert apt_trusts(keys, keyring, keys.pinned, tmp_path)
    assert not apt_trusts(keys, keyring, keys.other, tmp_path)
    assert oct(keyring.stat().st_mode & 0o777) == "0o644"


def test_apt_key_refuses_a_file_without_the_pinned_key(keys: Keys, tmp_path: Path) -> None:
    done, keyring = run_apt_key(tmp_path, keys.other_only, keys.pinned)
    assert done.returncode != 0
    assert "refusing" in done.stderr and keys.pinned in done.stderr
    assert not keyring.exists() and not Path(f"{keyring}.new").exists()


def test_apt_key_refuses_what_is_not_a_key(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_text("<html>captive portal</html>\n")
    done, keyring = run_apt_key(tmp_path, junk, "74A5E9C458E1A431F1DA57A71657198823E52A61")
    assert done.returncode != 0 and not keyring.exists()


def test_apt_key_accepts_the_plain_pinned_key_and_leaves_no_temporary_files(
    keys: Keys, tmp_path: Path
) -> None:
    done, keyring = run_apt_key(tmp_path, keys.pinned_only, keys.pinned)
    assert done.returncode == 0, done.stderr
    assert primary_fingerprints(keyring) == [keys.pinned] and done.stderr == ""
    # mktemp -d ran under TMPDIR=tmp_path; the trap removed it with the throwaway keyring
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "multicloud-apt-key", "repo.gpg"]
    assert "--proto '=https'" in APT_KEY_SCRIPT  # the key itself only over https


# --- the metadata guard, in a network namespace ----------------------------------------


def _netns() -> list[str]:
    """A command prefix that runs in a fresh network namespace where we hold CAP_NET_ADMIN."""
    return namespace_prefix("n", "a network namespace")


def test_metadata_guard_blocks_every_local_and_forwarded_route(tmp_path: Path) -> None:
    guard = tmp_path / "guard"
    guard.write_text(METADATA_GUARD_SCRIPT)
    guard.chmod(0o755)
    _tool("ip")
    # A namespace with a route to the metadata address (as a cloud's DHCP gives one), the
    # guard run twice (idempotent), then what the kernel answers a connect() and a lookup.
    probe = f"""
set -e
echo 1 > /proc/sys/net/ipv4/ip_forward
ip link add pods type veth peer name uplink   # pods: like cni0; uplink: the cloud's NIC
ip link set lo up && ip link set pods up && ip link set uplink up
ip addr add 10.42.0.1/24 dev pods
ip route add 169.254.0.0/16 dev uplink        # as a cloud's DHCP route to the metadata service
ip route add 10.1.0.0/16 dev uplink
ip route get 169.254.169.254 >/dev/null && echo before=reachable
ip route get 169.254.169.254 from 10.42.0.5 iif pods >/dev/null && echo before-forwarded=reachable
{guard}
{guard}
echo "rules=$(ip -4 rule show | grep -c 'to 169.254.169.254 prohibit')"
ip route get 169.254.169.254 2>&1 | sed 's/^/after=/' || true
ip route get 169.254.169.254 from 10.42.0.5 iif pods 2>&1 | sed 's/^/forwarded=/' || true
ip route get 10.1.2.3 from 10.42.0.5 iif pods >/dev/null && echo other=reachable
python3 -c '
import errno, socket
s = socket.socket()
try:
    s.connect(("169.254.169.254", 80))
except OSError as err:
    print("connect=" + errno.errorcode[err.errno])
'
"""
    done = subprocess.run(
        [*_netns(), "sh", "-c", probe], capture_output=True, text=True, timeout=TIMEOUT
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr
    assert "before=reachable" in out and "before-forwarded=reachable" in out
    assert "rules=1" in out  # run twice, one rule
    assert "after=RTNETLINK answers: Permission denied" in out
    assert "forwarded=RTNETLINK answers: Permission denied" in out  # a pod's packet too
    assert "other=reachable" in out
    assert "connect=EACCES" in out


def test_metadata_guard_unit_runs_before_docker_and_docker_requires_it() -> None:
    unit = metadata_guard_unit(GUARD_ORDER)
    assert "Before=docker.service containerd.service" in unit
    assert "RequiredBy=docker.service" in unit
    # Default dependencies (After=basic.target) put it after cloud-init's local and network
    # stages, which are Before=sysinit.target on Debian: nothing may switch that off.
    assert "DefaultDependencies=no" not in unit and "After=" not in unit


# --- the SSH host key in user-data ----------------------------------------------------------


def host_key() -> HostKey:
    """An ED25519 key in the two OpenSSH encodings pulumi_tls.PrivateKey outputs."""
    private, public = ed25519_openssh()
    return HostKey(private_openssh=private, public_openssh=public + "\n")


def test_user_data_installs_the_generated_host_key_and_nothing_else(tmp_path: Path) -> None:
    key = host_key()
    text = render_user_data(
        NODE, ssh_user="rke", ssh_public_key=KEY, engine=RKE, overlay=OVERLAY, host_key=key
    )
    path = tmp_path / "user-data.yaml"
    path.write_text(text)
    [verdict] = validate_user_data([path])  # cloud-init 22.4.2's schema (and its binary)
    assert verdict.valid, verdict.why()
    doc = yaml.safe_load(text)
    assert doc["ssh_deletekeys"] is True
    assert set(doc["ssh_keys"]) == {"ed25519_private", "ed25519_public"}
    assert "ssh_genkeytypes" not in doc  # cc_ssh ignores it when ssh_keys is given
    installed = serialization.load_ssh_private_key(
        doc["ssh_keys"]["ed25519_private"].encode(), None
    )
    public = installed.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert public.decode() == doc["ssh_keys"]["ed25519_public"] == key.public_openssh.strip()
    files = {f["path"]: f["content"] for f in doc["write_files"]}
    assert files[SSHD_HOST_KEY_DROPIN] == "HostKey /etc/ssh/ssh_host_ed25519_key\n"


def test_without_a_host_key_cloud_init_keeps_its_defaults() -> None:
    doc = yaml.safe_load(
        render_user_data(NODE, ssh_user="rke", ssh_public_key=KEY, engine=RKE, overlay=None)
    )
    assert "ssh_keys" not in doc
    assert SSHD_HOST_KEY_DROPIN not in {f["path"] for f in doc["write_files"]}


# --- packages: pinned, held, from https ------------------------------------------------------


def test_packages_are_pinned_held_and_match_the_reference() -> None:
    doc = yaml.safe_load(
        render_user_data(NODE, ssh_user="rke", ssh_public_key=KEY, engine=RKE, overlay=OVERLAY)
    )
    script = {f["path"]: f["content"] for f in doc["write_files"]}[
        "/usr/local/sbin/multicloud-bootstrap"
    ]
    install = next(line for line in script.splitlines() if "apt-get install" in line)
    wanted = {
        "docker-ce": DOCKER_VERSION,
        "docker-ce-cli": DOCKER_VERSION,
        "containerd.io": CONTAINERD_VERSION,
        "zerotier-one": ZEROTIER_VERSION,
    }
    named = dict(
        word.split("=", 1) for word in install.split() if "=" in word and "FRONTEND" not in word
    )
    assert named == wanted  # every package with an exact version, nothing unpinned
    held = {
        package
        for line in script.splitlines()
        if line.startswith("apt-mark hold ")
        for package in line.split()[2:]
    }
    assert held == set(wanted) == {*HELD_PACKAGES, "zerotier-one"}
    assert script.index("enable --now multicloud-metadata-guard") < script.index(install)
    for line in script.splitlines():
        if line.startswith("echo 'deb "):
            assert "] https://" in line, line
    assert ZEROTIER_APT.startswith("https://")
    zt = reference.load("zerotier-install.json")
    assert zt["package_version"] == ZEROTIER_VERSION
    docker = reference.load("docker-packages.json")
    assert docker["docker-ce"]["version"] == DOCKER_VERSION
    assert docker["containerd.io"]["version"] == CONTAINERD_VERSION

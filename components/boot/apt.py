"""apt at first boot: pinned signing keys, and every apt call waiting for the locks (bounded).

At first boot apt-daily, unattended-upgrades or a cloud's agent may be running apt, and
the bootstrap's apt calls would fail at once on their locks. So every one goes through
multicloud-apt (shims named apt-get and apt-mark first on its PATH): a failure naming a
lock is retried until the bound, any other APT_OTHER_TRIES times in all
(docs/first-deploy.md#when-a-nodes-boot-script-fails). Debian 12: apt 2.6.1, dpkg 1.21.22.
"""

from __future__ import annotations

from components.boot.assets import render

File = dict[str, object]  # one write_files entry

APT_KEY = "/usr/local/sbin/multicloud-apt-key"
APT_WRAPPER = "/usr/local/sbin/multicloud-apt"
APT_SHIMS = "/usr/local/lib/multicloud/apt"  # apt-get, apt-mark: first on the bootstrap's PATH
# Per apt call, for the locks: an unattended-upgrades run on a fresh image (security
# updates, a kernel's initramfs) takes minutes; the RKE readiness gate waits 15 minutes for
# the whole boot (rke/readiness.py).
APT_LOCK_TIMEOUT_SECONDS = 600
APT_RETRY_PAUSE_SECONDS = 5
APT_OTHER_TRIES = 3
# What the bootstrap installs from Debian before anything else (curl and gnupg fetch and
# check the pinned keys; open-iscsi and nfs-common are Longhorn's).
BASE_PACKAGES = ("ca-certificates", "curl", "gnupg", "iptables", "open-iscsi", "nfs-common")
# The bootstrap's outcome: bootstrap-failed (holding its message) or bootstrap-done (the
# time); both are removed when it starts.
BOOTSTRAP_STATE = "/var/lib/multicloud"
BOOTSTRAP_FAILED = f"{BOOTSTRAP_STATE}/bootstrap-failed"
BOOTSTRAP_DONE = f"{BOOTSTRAP_STATE}/bootstrap-done"
# What apt 2.6 (fileutl.cc GetLock; debsystem.cc) and dpkg 1.21 (file.c file_lock: "%s was
# locked by another process with pid %d") print, LC_ALL=C, when a lock is held;
# tests/components/boot/test_apt_lock.py makes the real ones print them. apt-get waits for dpkg's
# locks
# itself (DPkg::Lock::Timeout: debsystem.cc debSystem::Lock, since apt 1.9.11), but the
# lists and archives locks (acquire.cc pkgAcquire::GetLock, one F_SETLK) and dpkg's own
# (apt-mark's `dpkg --set-selections`: lib/dpkg/dbmodify.c modstatdb_lock) fail at once.
APT_LOCK_MESSAGES = (
    "Could not get lock |Unable to acquire the dpkg frontend lock|Unable to lock "
    "|locked by another process"
)

# Writes a keyring holding exactly the key with the pinned primary fingerprint.
APT_KEY_SCRIPT = render("components.boot", "multicloud-apt-key")
APT_WRAPPER_SCRIPT = render(
    "components.boot",
    "multicloud-apt",
    APT_OTHER_TRIES=APT_OTHER_TRIES,
    APT_LOCK_TIMEOUT_SECONDS=APT_LOCK_TIMEOUT_SECONDS,
    APT_RETRY_PAUSE_SECONDS=APT_RETRY_PAUSE_SECONDS,
    APT_LOCK_MESSAGES=APT_LOCK_MESSAGES,
)
# The bootstrap's first lines: every apt call waits (above), and a failure is reported on
# stderr (cloud-init's output log) and in BOOTSTRAP_FAILED, and fails cloud-init's
# scripts-user module, so `cloud-init status` says error (exit 1) and the RKE readiness gate
# stops there; set -e stops at the first failed command, so nothing runs half set up.
BOOTSTRAP_PROLOGUE = render(
    "components.boot",
    "bootstrap-prologue.sh",
    BOOTSTRAP_STATE=BOOTSTRAP_STATE,
    BOOTSTRAP_FAILED=BOOTSTRAP_FAILED,
    BOOTSTRAP_DONE=BOOTSTRAP_DONE,
    APT_SHIMS=APT_SHIMS,
)


def apt_key_file() -> File:
    return {"path": APT_KEY, "permissions": "0755", "content": APT_KEY_SCRIPT}


def wrapper_files() -> list[File]:
    """multicloud-apt, and apt-get and apt-mark that run the real ones through it."""
    shims: list[File] = [
        {
            "path": f"{APT_SHIMS}/{name}",
            "permissions": "0755",
            "content": render("components.boot", "apt-shim", APT_WRAPPER=APT_WRAPPER, COMMAND=name),
        }
        for name in ("apt-get", "apt-mark")
    ]
    return [{"path": APT_WRAPPER, "permissions": "0755", "content": APT_WRAPPER_SCRIPT}, *shims]


def repository(name: str, key_url: str, fingerprint: str, apt_line: str) -> list[str]:
    """Bootstrap lines adding an https repository signed by exactly the pinned key."""
    keyring = f"/usr/share/keyrings/{name}.gpg"
    return [
        f"{APT_KEY} {key_url} {fingerprint} {keyring}",
        f"echo 'deb [signed-by={keyring}] {apt_line}' > /etc/apt/sources.list.d/{name}.list",
    ]


def base_install() -> list[str]:
    return [
        "apt-get update",
        # options first, as apt-get(8) writes it
        "DEBIAN_FRONTEND=noninteractive apt-get -y --no-install-recommends install "
        + " ".join(BASE_PACKAGES),
    ]


def install(packages: list[str]) -> list[str]:
    return [
        "apt-get update",
        "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
        + " ".join(packages),
    ]

"""First boot while another process holds apt's locks: the node's real bootstrap, run.

The bootstrap script from the rendered user-data runs with the real ``apt-get``,
``apt-mark`` and ``dpkg`` in a user, mount and network namespace, where tmp directories
are bind-mounted over ``/etc/apt``, ``/var/lib``, ``/var/cache/apt``, ``/var/log`` and
``/usr/local``'s ``sbin`` and ``lib`` (the files the user-data writes there). A local
``file:`` repository of empty packages stands in for Debian's, Docker's and ZeroTier's;
the commands that would change this machine (``systemctl``, ``modprobe``, ``sed`` on
``/etc/fstab``...) are fakes on ``PATH`` that only log. Another process holds one of the
locks, with the same ``fcntl`` write lock apt's ``GetLock`` takes (apt-pkg/contrib/
fileutl.cc), as apt-daily, unattended-upgrades or a cloud's agent would at first boot.

The bootstraps mostly wait (for a lock, for a bound), so the module runs them all at once
(``runs``: each scenario in its own tmp root and namespace, on its own thread) and each
test checks its own; a lock held "for a while" is released HOLD_SECONDS after the
bootstrap's output shows apt met it, so every such test really waited, however slow the
machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

from components.boot.apt import BASE_PACKAGES, BOOTSTRAP_DONE, BOOTSTRAP_FAILED
from components.boot.document import render_user_data
from components.boot.overlay import ZEROTIER_VERSION
from rke.boot import CONTAINERD_VERSION, DOCKER_VERSION
from rke2.boot import RKE2_EXTERNAL_IP, RKE2_INSTALL, Rke2Files, rke2_part
from tests.components.boot.test_cloud_init import KEY, NODE, OVERLAY, RKE
from tests.support.tools import namespace_prefix

TIMEOUT = 120
# How long the other process keeps its lock after apt met it (a lock held at boot), or after
# taking it (the one the usermod fake takes mid-bootstrap): well beyond the wrapper's tries
# for a failure that is not a lock (APT_OTHER_TRIES, 0.2 s apart here), so only waiting for
# the lock gets the bootstrap through.
HOLD_SECONDS = 2.0
PINNED = {
    "docker-ce": DOCKER_VERSION,
    "docker-ce-cli": DOCKER_VERSION,
    "containerd.io": CONTAINERD_VERSION,
    "zerotier-one": ZEROTIER_VERSION,
}
# Where each lock is, relative to the tmp root (see ``Node``), and who takes it at boot.
LOCKS = {
    "dpkg-frontend": "var-lib/dpkg/lock-frontend",  # unattended-upgrades, apt-get install
    "dpkg": "var-lib/dpkg/lock",  # dpkg itself
    "lists": "var-lib/apt/lists/lock",  # apt-daily's apt-get update
    "archives": "var-cache-apt/archives/lock",  # apt-daily's download of upgrades
}
# Commands the bootstrap runs that would change this machine: each only logs its arguments.
FAKES = ("swapoff", "modprobe", "sysctl", "systemctl", "usermod", "sed")
BINDS = {  # tmp root subdirectory -> where the namespace sees it
    "etc-apt": "/etc/apt",
    "var-lib": "/var/lib",
    "var-cache-apt": "/var/cache/apt",
    "var-log": "/var/log",
    "usr-local-sbin": "/usr/local/sbin",
    "usr-local-lib": "/usr/local/lib",
    "fstab": "/etc/fstab",
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not installed (Debian: apt-get install apt dpkg util-linux)")
    return path


@cache
def _namespace() -> list[str]:
    """A command prefix for a fresh mount and network namespace where we are root."""
    return namespace_prefix("mn", "a mount namespace")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flat apt repository of empty packages: every one the bootstrap installs."""
    base = tmp_path_factory.mktemp("repo")
    packages = {name: "1.0" for name in BASE_PACKAGES} | PINNED
    index = []
    for i, (name, version) in enumerate(sorted(packages.items())):
        tree = base / "build" / name
        (tree / "DEBIAN").mkdir(parents=True)
        (tree / "DEBIAN" / "control").write_text(
            f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
            "Maintainer: multicloud tests <tests@example.invalid>\nDescription: stand-in\n"
        )
        deb = base / f"p{i}.deb"
        subprocess.run(
            [_tool("dpkg-deb"), "--root-owner-group", "-Zgzip", "--build", str(tree), str(deb)],
            capture_output=True, timeout=TIMEOUT, check=True,
        )  # fmt: skip
        data = deb.read_bytes()
        index.append(
            f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
            f"Maintainer: multicloud tests <tests@example.invalid>\nFilename: ./{deb.name}\n"
            f"Size: {len(data)}\nSHA256: {hashlib.sha256(data).hexdigest()}\n"
            "Description: stand-in\n"
        )
    (base / "Packages").write_text("\n".join(index))
    return base


@dataclass
class Run:
    done: subprocess.CompletedProcess[str]
    seconds: float
    root: Path
    met: bool  # the bootstrap's output showed apt failing on the held lock

    def dpkg_status(self) -> dict[str, str]:
        """Package -> its dpkg Status line ("hold ok installed", "install ok installed")."""
        text = (self.root / "var-lib/dpkg/status").read_text()
        status = {}
        for stanza in text.split("\n\n"):
            fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line[:40])
            if "Package" in fields:
                status[fields["Package"]] = fields["Status"]
        return status

    def faked(self) -> list[str]:
        log = self.root / "fakes.log"
        return log.read_text().splitlines() if log.exists() else []

    def state(self, path: str) -> Path:
        return self.root / "var-lib" / Path(path).relative_to("/var/lib")


class Node:
    """A tmp root holding what the user-data writes, and apt's and dpkg's state."""

    def __init__(self, root: Path, repo: Path, user_data: str) -> None:
        self.root = root
        for sub in (
            "etc-apt/apt.conf.d", "etc-apt/sources.list.d", "etc-apt/preferences.d",
            "etc-apt/trusted.gpg.d", "etc-apt/no-parts.d", "var-lib/dpkg/info",
            "var-lib/dpkg/updates", "var-lib/dpkg/triggers", "var-lib/apt/lists/partial",
            "var-cache-apt/archives/partial", "var-log", "usr-local-sbin", "usr-local-lib",
            "bin", "tmp",
        ):  # fmt: skip
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "var-lib/dpkg/status").write_text("")
        (root / "fstab").write_text("/swapfile none swap sw 0 0\n")
        (root / "etc-apt/sources.list").write_text(f"deb [trusted=yes] file:{repo} ./\n")
        # The repositories the bootstrap adds (https, pinned keys) are out of reach in the
        # namespace: apt reads only the local one, which holds their packages.
        (root / "etc-apt/apt.conf.d/99test").write_text(
            'APT::Sandbox::User "root";\n'
            f'Dir::Etc::SourceParts "{root}/etc-apt/no-parts.d";\n'
            'Acquire::Languages "none";\n'
        )
        for file in yaml.safe_load(user_data)["write_files"]:
            for sub, target in BINDS.items():
                if file["path"].startswith(target + "/"):
                    path = root / sub / file["path"].removeprefix(target + "/")
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(file["content"])
                    path.chmod(int(file.get("permissions", "0644"), 8))
        # Fetching the pinned keys is tested in tests/components/boot/test_node_trust.py; RKE2's
        # install
        # in tests/rke2/test_rke2.py. Here they only log.
        for stub in ("/usr/local/sbin/multicloud-apt-key", RKE2_INSTALL, RKE2_EXTERNAL_IP):
            self._fake(root / "usr-local-sbin" / Path(stub).name)
        for name in FAKES:
            self._fake(root / "bin" / name)

    def _fake(self, path: Path) -> None:
        path.write_text(f'#!/bin/sh\necho "${{0##*/}} $*" >> {self.root}/fakes.log\n')
        path.chmod(0o755)

    def bootstrap(self, held: Holder | None = None, release: bool = True, **env: str) -> Run:
        """Runs the bootstrap in its namespace. ``held``: a lock another process holds,
        released (``release``) HOLD_SECONDS after apt failed on it, as the bootstrap's
        output shows."""
        binds = "\n".join(
            f"mount --bind {self.root / sub} {target}" for sub, target in BINDS.items()
        )
        variables = {
            "PATH": f"{self.root / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin",
            "TMPDIR": str(self.root / "tmp"),
            "HOME": str(self.root),
            **env,
        }
        command = [
            *_namespace(), "env", "-i", *(f"{k}={v}" for k, v in variables.items()),
            "sh", "-ec", f"{binds}\nexec /usr/local/sbin/multicloud-bootstrap",
        ]  # fmt: skip
        out, err = self.root / "bootstrap.out", self.root / "bootstrap.err"
        start = time.monotonic()
        with out.open("w") as stdout, err.open("w") as stderr:
            proc = subprocess.Popen(command, stdout=stdout, stderr=stderr, text=True)
        met = False
        try:
            # apt-get's own wait for dpkg's locks prints "Waiting for cache lock: Could not
            # get lock <path>..." on stdout; the other locks' failures are on stderr
            while held is not None and proc.poll() is None and time.monotonic() - start < TIMEOUT:
                if held.message in out.read_text() + err.read_text():
                    met = True
                    break
                time.sleep(0.05)
            if met and release:
                # keep it a while: the bootstrap waits (or, wrongly, gives up)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=HOLD_SECONDS)
                held.release()
            proc.wait(timeout=max(1.0, TIMEOUT - (time.monotonic() - start)))
        finally:
            proc.kill()
            proc.wait()
            if held is not None:
                held.release()
        seconds = time.monotonic() - start
        done = subprocess.CompletedProcess(
            command, proc.returncode, out.read_text(), err.read_text()
        )
        if held is not None:
            met = held.message in done.stdout + done.stderr
        return Run(done, seconds, self.root, met)


# Takes the fcntl write lock apt's GetLock tests for (F_SETLKW), says so, and keeps it
# for argv[2] seconds, or ("-") until its stdin is closed.
HOLDER = (
    "import fcntl, sys, time\n"
    "f = open(sys.argv[1], 'a')\n"
    "fcntl.lockf(f, fcntl.LOCK_EX)\n"
    "print('held', flush=True)\n"
    "sys.stdin.read() if sys.argv[2] == '-' else time.sleep(float(sys.argv[2]))\n"
)


class Holder:
    """Another process holding apt's write lock on ``lock`` (a key of LOCKS) of a node."""

    def __init__(self, node: Node, lock: str) -> None:
        # what apt prints when it meets the lock (fileutl.cc GetLock: "Could not get lock %s.
        # It is held by process %d"), with the path the namespace sees
        sub, _, rest = LOCKS[lock].partition("/")
        self.message = f"Could not get lock {BINDS[sub]}/{rest}."
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(node.root / LOCKS[lock]), "-"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "held\n"

    def release(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.proc.wait(timeout=TIMEOUT)


def _user_data(rke2: bool = False) -> str:
    engine = RKE
    if rke2:
        files = Rke2Files(
            role="agent",
            config_yaml="token: x\n",
            install_script="#!/bin/sh\n",
            external_ip_script="#!/bin/sh\n",
        )
        engine = rke2_part(files)
    return render_user_data(
        NODE, ssh_user="rke", ssh_public_key=KEY, engine=engine, overlay=OVERLAY
    )


def _assert_set_up(run: Run, pinned: dict[str, str]) -> None:
    assert run.done.returncode == 0, run.done.stderr[-3000:]
    status = run.dpkg_status()
    for name in BASE_PACKAGES:
        assert status.get(name) == "install ok installed", (name, status)
    for name in pinned:
        assert status.get(name) == "hold ok installed", (name, status)  # installed and held
    assert run.state(BOOTSTRAP_DONE).exists() and not run.state(BOOTSTRAP_FAILED).exists()


# The scenarios, by name: each sets up a node in its own tmp root and runs its bootstrap.
Scenario = Callable[[Path, Path], Run]
NEVER_RELEASED_BOUND = 3  # MULTICLOUD_APT_LOCK_TIMEOUT of the locks never released
WAIT = {"MULTICLOUD_APT_LOCK_TIMEOUT": "60", "MULTICLOUD_APT_RETRY_PAUSE": "0.2"}


def _held_at_boot(lock: str, rke2: bool = False) -> Scenario:
    def scenario(root: Path, repo: Path) -> Run:
        node = Node(root, repo, _user_data(rke2))
        return node.bootstrap(Holder(node, lock), **WAIT)

    return scenario


def _never_released(lock: str) -> Scenario:
    def scenario(root: Path, repo: Path) -> Run:
        node = Node(root, repo, _user_data())
        bound = str(NEVER_RELEASED_BOUND)
        return node.bootstrap(
            Holder(node, lock), release=False,
            MULTICLOUD_APT_LOCK_TIMEOUT=bound, MULTICLOUD_APT_RETRY_PAUSE="0.2",
        )  # fmt: skip

    return scenario


def _lock_taken_before_the_hold(root: Path, repo: Path) -> Run:
    # unattended-upgrades starts right after the install: `usermod` (between the install and
    # the last `apt-mark hold`) starts a process that takes dpkg's frontend lock, so
    # `apt-mark hold zerotier-one` meets it, in dpkg's --set-selections.
    node = Node(root, repo, _user_data())
    lock = root / LOCKS["dpkg-frontend"]
    (root / "bin" / "usermod").write_text(
        f'#!/bin/sh\necho "usermod $*" >> {root}/fakes.log\n'
        f"{sys.executable} -c {shlex.quote(HOLDER)} {lock} {HOLD_SECONDS} > {root}/held &\n"
        f"until grep -q held {root}/held; do sleep 0.05; done\n"
    )
    return node.bootstrap(**WAIT)


def _not_a_lock(root: Path, repo: Path) -> Run:
    # A pinned version the repository does not have: waiting cannot help, so the production
    # lock bound (unset here) does not apply.
    node = Node(root, repo, _user_data().replace(ZEROTIER_VERSION, "9.9.9"))
    return node.bootstrap(MULTICLOUD_APT_RETRY_PAUSE="0.2")


def _interrupted_dpkg(root: Path, repo: Path) -> Run:
    # A dpkg killed mid-way leaves a journal entry in /var/lib/dpkg/updates; apt-get then
    # refuses with "dpkg was interrupted, you must manually run 'dpkg --configure -a'".
    node = Node(root, repo, _user_data())
    (root / "var-lib/dpkg/updates/0000").write_text("")
    return node.bootstrap(**WAIT)


SCENARIOS: dict[str, Scenario] = {
    **{f"held-{lock}": _held_at_boot(lock) for lock in LOCKS},
    "held-rke2": _held_at_boot("dpkg-frontend", rke2=True),
    **{f"never-{lock}": _never_released(lock) for lock in ("dpkg-frontend", "lists")},
    "apt-mark": _lock_taken_before_the_hold,
    "not-a-lock": _not_a_lock,
    "interrupted": _interrupted_dpkg,
}


@pytest.fixture(scope="module")
def runs(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[Run]]]:
    """Every scenario, started at once on its own thread: name -> its Run (a future)."""
    with ThreadPoolExecutor(max_workers=len(SCENARIOS)) as pool:
        yield {
            name: pool.submit(scenario, tmp_path_factory.mktemp(name), repo)
            for name, scenario in SCENARIOS.items()
        }


def _run(runs: dict[str, Future[Run]], name: str) -> Run:
    return runs[name].result(timeout=2 * TIMEOUT)


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_the_bootstrap_waits_for_a_lock_held_at_boot_then_sets_the_node_up(
    lock: str, runs: dict[str, Future[Run]]
) -> None:
    run = _run(runs, f"held-{lock}")
    assert run.met, run.done.stdout[-2000:] + run.done.stderr[-2000:]  # apt met the lock
    _assert_set_up(run, PINNED)  # ... and the bootstrap waited for it rather than failing
    assert "usermod -aG docker rke" in run.faked()
    assert "systemctl enable --now zerotier-one" in run.faked()


def test_apt_mark_waits_for_a_lock_taken_between_the_install_and_the_hold(
    runs: dict[str, Future[Run]],
) -> None:
    run = _run(runs, "apt-mark")
    _assert_set_up(run, PINNED)
    assert "dpkg frontend lock was locked by another process" in run.done.stderr
    assert "multicloud-apt: apt-mark hold zerotier-one failed (exit 100: another process" in (
        run.done.stderr
    )


def test_the_rke2_bootstrap_waits_for_the_lock_too(runs: dict[str, Future[Run]]) -> None:
    run = _run(runs, "held-rke2")
    assert run.met, run.done.stdout[-2000:] + run.done.stderr[-2000:]
    _assert_set_up(run, {"zerotier-one": ZEROTIER_VERSION})
    assert "docker-ce" not in run.dpkg_status()
    assert run.faked()[-1] == "multicloud-rke2-install "  # RKE2 last, after every package


@pytest.mark.parametrize("lock", ["dpkg-frontend", "lists"])
def test_a_lock_never_released_fails_the_bootstrap_within_the_bound_and_says_so(
    lock: str, runs: dict[str, Future[Run]]
) -> None:
    run = _run(runs, f"never-{lock}")
    bound = NEVER_RELEASED_BOUND
    assert run.done.returncode != 0
    assert run.met
    assert bound - 1 <= run.seconds < bound + 15, run.seconds  # date +%s: whole seconds
    err = run.done.stderr
    assert f"still fails after {bound}s" in err and "lock" in err, err[-2000:]
    assert "multicloud-bootstrap: FAILED" in err
    marker = run.state(BOOTSTRAP_FAILED)
    assert marker.exists() and "FAILED" in marker.read_text()
    assert not run.state(BOOTSTRAP_DONE).exists()
    # It stopped there: nothing after the failed apt call ran.
    assert not run.dpkg_status()
    assert not [line for line in run.faked() if line.startswith(("usermod", "multicloud-apt-key"))]
    assert "systemctl enable --now docker iscsid" not in run.faked()


def test_a_failure_that_is_not_a_lock_gives_up_after_a_few_tries(
    runs: dict[str, Future[Run]],
) -> None:
    run = _run(runs, "not-a-lock")
    assert run.done.returncode != 0
    assert run.seconds < 30, run.seconds
    assert "zerotier-one=9.9.9" in run.done.stderr and "3 times; giving up" in run.done.stderr
    assert run.state(BOOTSTRAP_FAILED).exists()
    assert "docker-ce" not in run.dpkg_status()  # nothing of the failed install
    assert not [line for line in run.faked() if line.startswith("usermod")]


def test_an_interrupted_dpkg_is_replayed_once_then_the_node_is_set_up(
    runs: dict[str, Future[Run]],
) -> None:
    run = _run(runs, "interrupted")
    assert "dpkg was interrupted" in run.done.stderr  # apt really refused first
    _assert_set_up(run, PINNED)

"""How the runner starts ``rke``, ``kubectl`` and ``ssh``: an allowlisted environment
(``child_env``), each child in its own process group that dies with the runner
(``Supervisor``: SIGTERM, SIGINT and SIGHUP stop the group and raise ``Interrupted``),
and stderr under a budget with the full redacted log in a private file (``Console``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

# What rke, kubectl and ssh may see of the runner's environment.
ALLOWED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR")
ALLOWED_PREFIXES = ("LC_",)
PROXY_ENV = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
STOP_GRACE_SECONDS = 10.0


def child_env(env: Mapping[str, str], agent: bool) -> dict[str, str]:
    """The environment for rke/kubectl/ssh: locale, PATH/HOME, proxies, and
    ``SSH_AUTH_SOCK`` only when RKE authenticates with the SSH agent. pulumi-command starts
    the runner with the whole environment of ``pulumi up`` (``cmd.Env = os.Environ()``,
    ``run()`` in ``local/commandOutputs.go``): passphrase, cloud credentials, secrets."""
    allowed = set(ALLOWED_ENV) | set(PROXY_ENV) | {p.upper() for p in PROXY_ENV}
    if agent:
        allowed.add("SSH_AUTH_SOCK")
    return {k: v for k, v in env.items() if k in allowed or k.startswith(ALLOWED_PREFIXES)}


class Interrupted(Exception):
    """The runner got SIGTERM, SIGINT or SIGHUP; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # prctl(PR_SET_PDEATHSIG, SIGTERM): the kernel signals us when the runner dies.
    # pulumi-command cancels with SIGKILL to the shell only (``exec.CommandContext``'s
    # default ``Process.Kill``, in ``run()``), which the runner cannot catch.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)


class Supervisor:
    """Owns the one child running at a time and turns signals into ``Interrupted``."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.signum: int | None = None
        self.quiet = False  # set during cleanup: record signals, raise nothing
        self._starting = False  # between Popen and self.child: record, do not raise

    def install(self) -> dict[int, Any]:
        """Handle SIGTERM/SIGINT/SIGHUP; returns the handlers it replaced."""
        previous: dict[int, Any] = {}
        for signum in self.SIGNALS:
            previous[signum] = signal.signal(signum, self._handle)
        return previous

    def restore(self, previous: Mapping[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        if self.child is not None and self.child.poll() is None:
            self._signal_group(signal.SIGTERM)
            return  # run() notices self.signum once the child is gone
        if not (self.quiet or self._starting):
            raise Interrupted(signum)

    def check(self) -> None:
        """Raise ``Interrupted`` if a signal arrived."""
        if self.signum is not None and not self.quiet:
            raise Interrupted(self.signum)

    def _signal_group(self, signum: int) -> None:
        if self.child is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.child.pid, signum)

    def run(
        self,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        on_line: Callable[[str], None],
        on_tick: Callable[[], None] = lambda: None,
        pass_fds: Sequence[int] = (),
        timeout: float | None = None,
    ) -> int:
        """Run ``argv`` in its own process group, calling ``on_line`` for each output
        line (stdout and stderr merged) and ``on_tick`` at least every 0.2 s and once at
        the end. Returns the exit code; raises ``Interrupted`` after stopping the group
        when a signal arrived; a ``timeout`` (seconds) stops it the same way and returns
        124."""
        self.check()
        preexec = _die_with_parent if sys.platform.startswith("linux") else None
        self._starting = True
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec,
                pass_fds=tuple(pass_fds),
            )
            self.child = proc
        finally:
            self._starting = False
        if self.signum is not None:
            self._signal_group(signal.SIGTERM)
        assert proc.stdout is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        stopping_since: float | None = None
        timed_out = False
        try:
            for line in _lines(proc.stdout, proc, on_tick):
                on_line(line)
                if self.signum is not None or (deadline and time.monotonic() > deadline):
                    timed_out = timed_out or self.signum is None
                    stopping_since = stopping_since or time.monotonic()
                    self._stop(stopping_since)
            rc = proc.wait()
        finally:
            if proc.poll() is None:
                self._signal_group(signal.SIGKILL)
                proc.wait()
            # stragglers of the group (a kubectl rke started) go with it
            self._signal_group(signal.SIGKILL)
            self.child = None
            on_tick()
        self.check()
        return 124 if timed_out else rc

    def _stop(self, since: float) -> None:
        grace_over = time.monotonic() - since > STOP_GRACE_SECONDS
        self._signal_group(signal.SIGKILL if grace_over else signal.SIGTERM)


def _lines(stream: IO[bytes], proc: subprocess.Popen[bytes], on_tick: Callable[[], None]) -> Any:
    """Yield decoded lines of ``stream`` as they come; ``""`` every 0.2 s of silence
    (so callers can check signals and deadlines), until EOF. Once the process has
    exited, stops after 2 s without output (a grandchild may hold the pipe)."""
    fd = stream.fileno()
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    pending = b""
    quiet_since: float | None = None
    try:
        while True:
            if selector.select(timeout=0.2):
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                quiet_since = None
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    yield raw.decode(errors="replace").rstrip("\r")
            else:
                if proc.poll() is not None:
                    quiet_since = quiet_since or time.monotonic()
                    if time.monotonic() - quiet_since > 2:
                        break
                yield ""
            on_tick()
        if pending:
            yield pending.decode(errors="replace")
    finally:
        selector.close()
        stream.close()


_IMPORTANT = re.compile(r"\b(WARN|ERRO|FATA|level=(warning|error|fatal))\b|\[rke-runner\]")


class Console:
    """stderr under a byte budget, and everything in a private log file.

    Ordinary lines go to stderr while they fit in ``chatty`` bytes; warnings and errors
    (and the runner's own lines) while they fit in ``important``; ``final`` is always
    written, cut to the ``limit``. Every line also goes to ``log_path`` (0600) when set.
    Why a budget: pulumi-command passes stderr back to the next run as
    ``PULUMI_COMMAND_STDERR``, one environment string of 128 KiB at most (else E2BIG).
    """

    def __init__(
        self,
        log_path: Path | None = None,
        chatty: int = 40 * 1024,
        important: int = 56 * 1024,
        limit: int = 64 * 1024,
        stream: IO[str] | None = None,
    ) -> None:
        self.written = 0
        self.chatty, self.important, self.limit = chatty, important, limit
        self.stream = stream or sys.stderr
        self.log_path = log_path
        self._log: IO[str] | None = None
        self._told = False
        if log_path is not None:
            fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._log = os.fdopen(fd, "a")

    def _emit(self, text: str) -> None:
        data = text + "\n"
        self.stream.write(data)
        self.stream.flush()
        self.written += len(data.encode())

    def line(self, text: str) -> None:
        if not text:
            return
        text = text if len(text) <= 2000 else text[:2000] + " [...]"
        if self._log is not None:
            self._log.write(text + "\n")  # flushed by final() and close()
        budget = self.important if _IMPORTANT.search(text) else self.chatty
        if self.written + len(text) + 1 <= budget:
            self._emit(text)
        elif not self._told:
            self._told = True
            where = f" in {self.log_path}" if self.log_path else ""
            self._emit(
                f"[rke-runner] more output only{where}: stderr stays under "
                f"{self.limit // 1024} KiB because pulumi-command passes it back to the "
                "next run as PULUMI_COMMAND_STDERR (one environment string, 128 KiB at most)"
            )

    def final(self, text: str) -> None:
        """Write ``text`` (the error, with its tail of output) within the hard limit."""
        if self._log is not None:
            self._log.write(text + "\n")
            self._log.flush()
        room = max(self.limit - self.written - 1, 0)
        data = text.encode()
        if len(data) > room:
            text = "[...]\n" + data[len(data) - room + 6 :].decode(errors="ignore")
        self._emit(text)

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def ssh_argv(
    ssh: str,
    entry: Mapping[str, Any],
    default_user: str,
    key_path: Path | None,
    command: str,
    connect_timeout: int = 15,
    known_hosts: Path | None = None,
) -> list[str]:
    """``ssh`` to a cluster.yml node the way RKE reaches it: its ``address``, ``port``
    and ``user``, the cluster's key or the agent, and no ``~/.ssh/config`` (RKE does not
    read it either). With ``known_hosts`` (a file holding the node's pinned ED25519 host
    key) the host key must match it; without, it is not checked, as RKE's own dialer does
    not check it (``ssh.InsecureIgnoreHostKey``, ``hosts/tunnel.go`` getSSHConfig)."""
    checks = (
        ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
         "-o", "HostKeyAlgorithms=ssh-ed25519"]
        if known_hosts is not None
        else ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    )  # fmt: skip
    argv = [
        ssh, "-F", "none", "-o", "BatchMode=yes", *checks, "-o", "LogLevel=ERROR",
        "-o", f"ConnectTimeout={connect_timeout}", "-p", str(entry.get("port") or 22),
    ]  # fmt: skip
    if key_path is not None:
        argv += ["-i", str(key_path), "-o", "IdentitiesOnly=yes"]
    return [*argv, f"{entry.get('user') or default_user}@{entry['address']}", command]


def run_quick(
    argv: Sequence[str], env: Mapping[str, str], timeout: float, cwd: Path | None = None
) -> tuple[int, str]:
    """Run a short command (ssh probes, ``--version``): (exit code, stdout+stderr).
    A timeout or a missing binary gives exit code 124/127 and the reason as output."""
    rc, out, err = run_split(argv, env, timeout, cwd)
    return rc, out + err


def run_split(
    argv: Sequence[str], env: Mapping[str, str], timeout: float, cwd: Path | None = None
) -> tuple[int, str, str]:
    """``run_quick`` with stdout and stderr apart: (exit code, stdout, stderr), for a
    command whose stdout is parsed (``kubectl -o json``; its warnings go to stderr)."""
    try:
        out = subprocess.run(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired:
        return 124, "", f"timed out after {timeout:.0f}s"
    except OSError as err:
        return 127, "", str(err)
    return (
        out.returncode,
        out.stdout.decode(errors="replace"),
        out.stderr.decode(errors="replace"),
    )

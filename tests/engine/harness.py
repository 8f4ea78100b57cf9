"""A workspace for driving the real `pulumi` CLI over the project (docs/testing.md,
"Scenarios").

``Workspace(folder, stack)`` lays out, under ``folder``:

- ``project/``: the repository's top-level entries as symlinks (the program, its packages,
  ``reference/``, ``venv`` — so Pulumi.yaml's ``virtualenv: venv`` resolves to the repo's
  venv, relative to the project root as the language host reads it) and a copy of
  Pulumi.yaml, but none of the committed ``Pulumi.<stack>.yaml`` files: `pulumi stack init`
  writes the test stack's own file there (its own salt; the committed secure values cannot
  be decrypted);
- ``state/``: the file backend; ``home/``: PULUMI_HOME with the stand-in plugins installed
  (tests/engine/plugins.py and tests/engine/providers/command.py; automatic plugin
  acquisition off, tests/engine/tools.py ``engine_env``); ``cloud/``: the fake cloud
  (``MULTICLOUD_FAKE_CLOUD_DIR``).

Every `pulumi` command runs inside a network namespace of its own (``unshare --net``, only
``lo`` up; not as root, inside a user namespace too), so the engine, the plugins and the
program can reach nothing but loopback. In it, the fake ZeroTier Central
(tests/support/fake_central.py, served by this process on a socket made in the namespace) answers
on 127.0.0.1:443 over HTTPS with a certificate from a test CA, as
``https://localhost/api/v1`` (the program only accepts an https URL without a port,
components/config/model.py ``check_https_url``); the dynamic providers trust the CA
through ``SSL_CERT_FILE`` (central.py opens connections with ``urllib.request.urlopen``
and the default SSL context, which reads that variable).

The stack's config is the committed stack's plain values (``pulumi config set-all --json``)
plus every secret the program requires (scripts/offline.py ``stack_config``) set with
``pulumi config set --secret`` from stdin, valued ``canary-<key>-7f3a``
(tests/support/program_runs.py
``CANARIES``), so a canary found in plaintext is a leak.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from scripts import stack_yaml
from scripts.offline import ADDRESS_BASE_ENV, PROJECT, load_yaml_file, stack_config
from tests.engine.plugins import install_fake_plugins
from tests.engine.providers.cloud import ENV as FAKE_CLOUD_ENV
from tests.engine.providers.command import install_command_plugin
from tests.engine.providers.nodes import ENV as NODES_ENV
from tests.engine.providers.nodes import halt_all
from tests.engine.tools import ROOT, engine_env, pulumi_binary
from tests.support import fake_rke
from tests.support.fake_central import FakeCentral, _handler
from tests.support.tools import ed25519_openssh

CENTRAL_URL = "https://localhost/api/v1"
# Not linked into the project folder: the committed stacks, and what is not the program's.
_NOT_LINKED = {".git", ".tools", "node_modules", "build", "tests", "Pulumi.yaml"}
COMMAND_TIMEOUT = 900  # seconds; a bound for any one `pulumi` command
ADDRESS_BASE = "127.10"  # the fake VMs' addresses with ``nodes=True`` (a loopback /16)


def canary(key: str) -> str:
    """The test value of a secret key (tests/support/program_runs.py CANARIES' form)."""
    return f"canary-{key}-7f3a"


@dataclass
class Result:
    """One `pulumi` command: its output, exit status and wall time."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> Any:
        return json.loads(self.stdout)


class CommandFailed(AssertionError):
    pass


# --- the network namespace and the fake Central ----------------------------------------------


# Run inside the namespace: bind a listening TCP socket there and hand it back over the
# inherited end of a socket pair (SCM_RIGHTS); a socket keeps the namespace it was made in.
_LISTEN_INSIDE = """
import socket, sys
channel = socket.socket(fileno=int(sys.argv[3]))
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
socket.send_fds(channel, [b"x"], [server.fileno()])
"""


class NetworkNamespace:
    """A network namespace with only ``lo`` up, held open by a ``sleep`` process. As root
    a plain one; otherwise inside a user namespace of its own where the caller is root
    (``unshare --map-root-user``), as tests/components/boot/test_node_trust.py does."""

    def __init__(self) -> None:
        root = os.geteuid() == 0
        namespaces = ["--net"] if root else ["--user", "--map-root-user", "--net"]
        self._holder = subprocess.Popen(
            ["unshare", *namespaces, "--", "sleep", "86400"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        pid = self._holder.pid
        own = os.stat("/proc/self/ns/net").st_ino
        for _ in range(200):  # unshare execs sleep once the namespaces exist
            if self._holder.poll() is not None:
                err = self._holder.stderr.read().decode() if self._holder.stderr else ""
                raise RuntimeError(f"cannot create a network namespace (`unshare`): {err}")
            if os.stat(f"/proc/{pid}/ns/net").st_ino != own:
                break
            time.sleep(0.01)
        else:
            self.close()
            raise RuntimeError("`unshare` did not create a network namespace in 2 s")
        # the prefix that runs a command inside (with --user: as the namespace's root)
        # (--preserve-credentials: the caller's uid is the namespace's root already, and
        # nsenter's setgroups is refused there)
        entered = ["--net"] if root else ["--user", "--preserve-credentials", "--net"]
        self.run_prefix = ["nsenter", "-t", str(pid), *entered, "--"]
        try:
            subprocess.run(
                [*self.run_prefix, "ip", "link", "set", "lo", "up"], check=True, timeout=30
            )
        except BaseException:
            self.close()
            raise

    def listen(self, host: str, port: int) -> socket.socket:
        """A TCP socket listening on ``host:port`` inside the namespace (any port: the
        helper runs as the namespace's root), for a server in this process to accept on."""
        ours, theirs = socket.socketpair()
        with ours, theirs:
            helper = [sys.executable, "-c", _LISTEN_INSIDE, host, str(port), str(theirs.fileno())]
            done = subprocess.run(
                [*self.run_prefix, *helper],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
                pass_fds=(theirs.fileno(),),
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"cannot listen on {host}:{port} in the namespace: {done.stderr}"
                )
            _, fds, _, _ = socket.recv_fds(ours, 1, 1)
        return socket.socket(fileno=fds[0])

    def close(self) -> None:
        self._holder.kill()
        self._holder.wait(timeout=10)
        if self._holder.stderr:
            self._holder.stderr.close()


def make_test_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for ``localhost``/127.0.0.1 it signed: (ca.pem, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "multicloud engine tests CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    ca_pem, cert_pem, key_pem = folder / "ca.pem", folder / "central.pem", folder / "central.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.touch(mode=0o600)
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_pem, cert_pem, key_pem


class HttpsCentral(FakeCentral):
    """tests/support/fake_central.py's fake, over TLS, accepting on ``listener`` (a socket from
    ``NetworkNamespace.listen("127.0.0.1", 443)``)."""

    def __init__(self, token: str, listener: socket.socket, cert: Path, key: Path) -> None:
        super().__init__(token)
        self._server.server_close()  # the plain-HTTP listener on a free port: not used
        server = ThreadingHTTPServer(("127.0.0.1", 443), _handler(self), bind_and_activate=False)
        server.socket.close()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(listener, server_side=True)
        self._server = server
        self.url = CENTRAL_URL
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,))


# --- the workspace ------------------------------------------------------------------------


def stack_plain_config(stack: str) -> dict[str, Any]:
    """The committed stack file's plain (not ``secure:``) values, full key -> YAML value."""
    path = ROOT / f"Pulumi.{stack}.yaml"
    raw = stack_yaml.config_section(load_yaml_file(path) or {}, PROJECT, path)
    return {k: v for k, v in raw.items() if not (isinstance(v, dict) and set(v) == {"secure"})}


class Workspace:
    """A project folder, file backend, PULUMI_HOME, fake cloud and fake Central for one
    stack; ``run`` and the command methods drive the real CLI and time it."""

    def __init__(
        self,
        folder: Path,
        stack: str,
        *,
        config: Mapping[str, Any] | None = None,
        central: bool = True,
        nodes: bool = False,
    ) -> None:
        """``config``: full keys set after the committed ones (plain values). ``nodes``: the
        fake clouds boot their VMs (``_boot_nodes``) and the RKE command finds the fakes of
        ``rke``/``kubectl`` (tests/support/fake_rke.py) first on PATH."""
        self.folder = folder
        self.stack = stack
        self.project = folder / "project"
        self.times: list[tuple[str, float]] = []
        self.pulumi = pulumi_binary()
        self._layout()
        for name in ("state", "home", "cloud", "xdg-state", "rke-runs"):
            (folder / name).mkdir(parents=True, exist_ok=True)
        self.env = engine_env(folder / "home", folder / "state")
        self.env[FAKE_CLOUD_ENV] = str(folder / "cloud")
        # rke.runner's local state copy and run folders (rke/state.py, rke/runner/): this
        # workspace's own, not the user's ~/.local/state and /dev/shm shared by every run
        self.env["XDG_STATE_HOME"] = str(folder / "xdg-state")
        self.env["RKE_RUNNER_TMPDIR"] = str(folder / "rke-runs")
        install_fake_plugins(self.pulumi, self.env, folder / "plugins")
        install_command_plugin(self.pulumi, self.env, folder / "plugins")
        self.netns = NetworkNamespace()
        self.central: HttpsCentral | None = None
        self.rke: fake_rke.Sandbox | None = None
        self.ssh_private_key = ""  # the stack's sshPrivateKey with ``nodes``
        secrets: dict[str, str] = {}
        extra = dict(config or {})
        try:
            if central:
                ca, cert, key = make_test_ca(folder / "tls")
                token = canary("zerotierToken")
                listener = self.netns.listen("127.0.0.1", 443)
                self.central = HttpsCentral(token, listener, cert, key)
                self.central.start()
                self.env["SSL_CERT_FILE"] = str(ca)
                central_file = folder / "tls" / "central.json"
                central_file.write_text(
                    json.dumps({"url": CENTRAL_URL, "token": token, "ca": str(ca)})
                )
            if nodes:
                secrets, extra = self._boot_nodes(extra)
            self.run("stack", "init", stack, "--secrets-provider", "passphrase")
            self.config, self.secret_keys = self._configure(extra, secrets)
        except BaseException:
            self.close()
            raise

    def _layout(self) -> None:
        self.project.mkdir(parents=True)
        for entry in ROOT.iterdir():
            if entry.name in _NOT_LINKED or entry.name.startswith("Pulumi."):
                continue
            (self.project / entry.name).symlink_to(entry)
        shutil.copy(ROOT / "Pulumi.yaml", self.project / "Pulumi.yaml")

    def _boot_nodes(self, extra: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
        """Fake VMs that boot (tests/engine/providers/nodes.py): loopback addresses, a real
        SSH key pair for the stack (``sshPrivateKey`` is then that key, not a canary), the
        node settings file, and the RKE fakes first on PATH. Returns (secrets, config)."""
        private, public = ed25519_openssh()
        self.ssh_private_key = private
        extra = {f"{PROJECT}:sshPublicKey": public + " engine-tests"} | extra
        overlay = extra.get(f"{PROJECT}:overlayCidr") or stack_plain_config(self.stack).get(
            f"{PROJECT}:overlayCidr", "10.147.0.0/16"
        )
        central = self.folder / "tls" / "central.json"
        settings = {
            "central": str(central) if central.exists() else "",
            "overlay_prefix": ipaddress.ip_network(str(overlay)).prefixlen,
            "rke_world": str(self.folder / "rke" / "world"),  # the RKE masters' etcd
        }
        (self.folder / "nodes.json").write_text(json.dumps(settings))
        self.env[NODES_ENV] = str(self.folder / "nodes.json")
        self.env[ADDRESS_BASE_ENV] = ADDRESS_BASE
        self.rke = fake_rke.Sandbox(self.folder / "rke", tools=("rke", "kubectl"))
        self.env["PATH"] = os.pathsep.join([str(self.rke.bin), self.env["PATH"]])
        return {"sshPrivateKey": private}, extra

    def _configure(
        self, extra: dict[str, Any], secrets: Mapping[str, str] | None = None
    ) -> tuple[dict[str, str], list[str]]:
        """Set the stack's config; returns it as the CLI passes it to the program (full
        key -> string, Pulumi.yaml defaults included) and the secret keys, for the mocks.
        ``secrets``: short key -> value, instead of the canary."""
        plain = stack_plain_config(self.stack)
        plain[f"{PROJECT}:zerotierCentralUrl"] = CENTRAL_URL
        plain |= extra
        # `pulumi config --json`'s form: the value as the program reads it, and for maps and
        # lists the object too (stored as YAML structure, so `--path` edits work)
        values: dict[str, dict[str, Any]] = {
            key: {"value": stack_yaml.config_string(value, key), "secret": False}
            for key, value in plain.items()
        }
        for key, value in plain.items():
            if isinstance(value, dict | list):
                values[key]["objectValue"] = value
        self.run("config", "set-all", "--json", json.dumps(values))
        expected, secret_keys = stack_config(self.stack)
        for key in secret_keys:
            short = key.split(":", 1)[1]
            value = (secrets or {}).get(short, canary(short))
            self.run("config", "set", "--secret", short, input=value)
            expected[key] = value
        for key, value in plain.items():
            expected[key] = stack_yaml.config_string(value, key)
        return expected, secret_keys

    # --- running the CLI ---

    def run(
        self, *args: str, input: str | None = None, check: bool = True, cwd: Path | None = None
    ) -> Result:
        """``pulumi <args> --non-interactive`` in the project folder (or ``cwd``, another
        project sharing the backend and PULUMI_HOME), inside the namespace."""
        started = time.monotonic()
        done = subprocess.run(
            [*self.netns.run_prefix, str(self.pulumi), *args, "--non-interactive"],
            cwd=cwd or self.project,
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        result = Result(args, done.returncode, done.stdout, done.stderr, time.monotonic() - started)
        self.times.append((" ".join(args[:2]), result.seconds))
        if check and done.returncode != 0:
            raise CommandFailed(
                f"`pulumi {' '.join(args)}` exited {done.returncode} after "
                f"{result.seconds:.1f} s:\n{done.stdout[-20000:]}\n{done.stderr[-5000:]}"
            )
        return result

    def preview(
        self, *args: str, json: bool = True, check: bool = True, cwd: Path | None = None
    ) -> Result:
        return self.run("preview", *(["--json"] if json else []), *args, check=check, cwd=cwd)

    def up(self, *args: str, check: bool = True) -> Result:
        return self.run("up", "--yes", "--skip-preview", *args, check=check)

    def refresh(self, *args: str, check: bool = True) -> Result:
        return self.run("refresh", "--yes", *args, check=check)

    def destroy(self, *args: str, check: bool = True) -> Result:
        return self.run("destroy", "--yes", *args, check=check)

    def export(self) -> Any:
        return self.run("stack", "export").json()

    def config_set(self, key: str, value: Any) -> None:
        """Set one plain config value as a user edits the stack file (``key`` short, e.g.
        ``sites``; a map or list is stored as YAML structure, as ``_configure`` does)."""
        full = f"{PROJECT}:{key}"
        entry: dict[str, Any] = {"value": stack_yaml.config_string(value, full), "secret": False}
        if isinstance(value, dict | list):
            entry["objectValue"] = value
        self.run("config", "set-all", "--json", json.dumps({full: entry}))
        self.config[full] = entry["value"]

    def close(self) -> None:
        halt_all(self.folder / "cloud" / "nodes")
        if self.central is not None:
            self.central.stop()
            self.central = None
        self.netns.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

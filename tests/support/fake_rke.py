"""Stand-ins for ``rke``, ``kubectl`` and ``ssh``, installed by tests into a PATH directory.

``Sandbox(tmp)`` writes executables ``rke`` and ``kubectl`` that run this file, and
``ssh``, a shell script (``fake_ssh.sh``) that reads the world.
The runner gives its children an allowlisted environment, so the fakes take their
settings from a control file (``Sandbox.control``, JSON) named inside the wrappers,
and share a *world*: a directory standing for the machines and the cluster.

The world, as RKE would leave it:

- ``nodes/<address>/kube-ca.pem``: the CA certificate deployed to a node
  (``SetUpHosts`` deploys certificates before anything else changes, ``cmd/up.go``);
- ``full-cluster-state``: the ``kube-system/full-cluster-state`` Secret's data
  (``SaveFullStateToK8s`` after the control plane, ``cluster/state.go``);
- ``etcd.json``: the etcd members (``{name: {"peer": url, "client": url}}``), and
  ``etcd-members.out``/``etcd-health.out``, what ``etcdctl`` prints for them;
- ``snapshots/<name>.json``: etcd snapshots on the nodes (with the state RKE puts in the
  archive); ``s3.json`` and ``s3/<name>.json``: an S3 bucket's settings and keys, and the
  snapshots in it.

``rke up`` follows ``ClusterInit`` + ``ClusterUp``: it writes ``cluster.rkestate`` once
the certificates exist (kept from the given state, a new CA otherwise), deploys them
to the nodes, reconciles the etcd members by address, and writes the state again after
the control plane; it refuses a run that replaces every etcd member after having
written state and certificates (``isEtcdPlaneReplaced``). Control keys:

- ``version``: what ``rke --version`` reports (default v1.8.14)
- ``fail_at``: ``"init"`` (after the first state write), ``"certs"`` (after the
  certificates reached the nodes), ``"controlplane"`` (before the second write),
  ``"workers"`` (after it), or ``"start"`` (before anything); ``fail_on_up``: only the
  n-th ``rke up`` (1-based) fails
- ``slow``: seconds ``rke up`` spends in the middle (between the two writes)
- ``chatty``: extra output lines ``rke up`` prints
- ``kubectl_notfound``: node name ``kubectl drain`` answers NotFound for
- ``ssh_unreachable``: addresses ``ssh`` cannot reach
- ``etcd_unhealthy``: member names ``etcdctl endpoint health`` reports unhealthy
- ``etcd_keep``: member names whose removal fails (RKE logs it and goes on)
- ``ingress_ready_after``: how many looks at the ingress controller find it not ready
  (default 0: ready at once; ``-1``: never). A look is ``kubectl get daemonset/...
  validatingwebhookconfiguration/...``; until then the DaemonSet has no available pod, the
  webhook Service's EndpointSlice no ready endpoint and the webhook no CA bundle (the
  names of RKE's 1.30 ingress template, ``rke.ingress.RKE_INGRESS``)
- ``leak``: ``rke up`` also prints, after the first state write, what a debug log can
  carry: the S3 secret key base64-encoded (as RKE hands it to the snapshot container,
  ``services/etcd.go``) and URL-encoded, and kube-admin's key as the kubeconfig has it
  (``client-key-data``, also wrapped at 64 columns) and JSON-escaped

Every start of a fake appends its command line to ``argv.log`` (``Sandbox.command_lines``),
and every call one JSON line to ``calls.jsonl``: the tool, its arguments, the
environment's keys, its pid and time (``time.time()``: tests order it against other
logs), and for ``rke`` the config it read, the state it was given (and the fingerprint
of that state's CA) and file modes. Not recorded (answered by
the shell wrapper, no Python start): ``rke --version`` and ``kubectl ... get``, whose
looks are counted in ``world/ingress/looks`` (``Sandbox.ingress_looks``).
"""

from __future__ import annotations

import atexit
import base64
import functools
import hashlib
import json
import os
import py_compile
import re
import secrets
import shutil
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# The wrappers run this file precompiled (see _compiled): from there, __file__ is the .pyc.
ROOT = Path(os.environ.get("FAKE_ROOT", ROOT))

CERT_NAMES = (
    "kube-ca", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy",
    "kube-node", "kube-admin", "kube-apiserver-proxy-client",
    "kube-apiserver-requestheader-ca", "kube-service-account-token",
)  # fmt: skip
WITH_CONFIG = ("kube-controller-manager", "kube-scheduler", "kube-proxy", "kube-node", "kube-admin")
SYSTEM_IMAGES = 40  # RKE fills ~40 system images into the state's rkeConfig


@functools.cache
def _compiled() -> Path:
    """This file as bytecode, once per test session, for the wrappers to run: the fakes
    start hundreds of times, and each start would otherwise compile this module again
    (nothing caches a script's bytecode, and nothing at all under PYTHONDONTWRITEBYTECODE)."""
    out = Path(tempfile.mkdtemp(prefix="fake-rke-")) / "fake_rke.pyc"
    atexit.register(shutil.rmtree, out.parent, True)
    py_compile.compile(__file__, cfile=str(out), doraise=True)
    # the children date certificates by patching this one (an import of `cryptography`
    # would cost every fake `rke up` that signs one a tenth of a second)
    (out.parent / "cert.der").write_bytes(_template_der())
    return out


NOISE = 560  # random bytes standing in for the entropy of RKE's RSA-2048 public key


@functools.cache
def _template_der() -> bytes:
    """A certificate the children re-date: serial 1 (so the first two UTCTimes in it are
    its validity), an extension of NOISE zero bytes they fill with random ones. Its
    signature no longer matches once patched; the runner reads the dates only."""
    if os.environ.get("FAKE_ROOT"):  # a child: the session wrote it beside the bytecode
        return (Path(__file__).parent / "cert.der").read_bytes()
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "fake-rke")])
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(when).not_valid_after(when + dt.timedelta(days=3650))
        .add_extension(x509.UnrecognizedExtension(
            x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), bytes(NOISE)
        ), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.DER)


_UTC_TIME = b"\x17\x0d"  # ASN.1 UTCTime, 13 bytes: YYMMDDHHMMSSZ (years to 2049)


def _validity(der: bytes) -> tuple[int, int]:
    first = der.index(_UTC_TIME) + 2
    return first, der.index(_UTC_TIME, first) + 2


def _der_of(pem: str) -> bytes:
    body = pem.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END", 1)[0]
    return base64.b64decode("".join(body.split()))


class Sandbox:
    """A bin directory with the fakes, a control file and a world, under ``tmp``."""

    def __init__(self, tmp: Path, tools: tuple[str, ...] = ("rke", "kubectl", "ssh")) -> None:
        self.tmp = tmp
        self.bin = tmp / "bin"
        self.world = tmp / "world"
        self.control = tmp / "control.json"
        self.calls_path = tmp / "calls.jsonl"
        self.argv_path = tmp / "argv.log"
        self.bin.mkdir(parents=True, exist_ok=True)
        self.world.mkdir(exist_ok=True)
        # every start of every fake, before anything else: its whole command line, as
        # /proc/<pid>/cmdline shows it to any local user (a shell builtin: no PATH needed)
        argv_line = f'printf \'%s\\n\' "$0 $*" >> "{self.argv_path}"\n'
        for tool in tools:
            exe = self.bin / tool
            if tool == "ssh":
                script = (Path(__file__).parent / "fake_ssh.sh").read_text()
                script = script.replace("@CALLS@", str(self.calls_path))
                shebang, rest = script.replace("@WORLD@", str(self.world)).split("\n", 1)
                exe.write_text(f"{shebang}\n{argv_line}{rest}")
            else:
                # `rke --version` answers from a file: the runner asks it on every run
                fast = (
                    f'[ "$1" = --version ] && {{ read -r v < "{tmp / "version"}"; '
                    'echo "rke version $v"; exit 0; }\n'
                    if tool == "rke"
                    else _KUBECTL_GET.replace("@INGRESS@", str(self.world / "ingress"))
                )
                exe.write_text(
                    f'#!/bin/sh\n{argv_line}{fast}FAKE_CONTROL="{self.control}" FAKE_ROOT="{ROOT}" '
                    f'exec "{sys.executable}" "{_compiled()}" {tool} "$@"\n'
                )
            exe.chmod(0o755)
        self.set()

    def set(self, **settings: Any) -> None:
        """Replace the control settings (calls and world paths are always there)."""
        data = {"calls": str(self.calls_path), "world": str(self.world), **settings}
        self.control.write_text(json.dumps(data))
        (self.tmp / "version").write_text(str(settings.get("version", "v1.8.14")))
        unreachable = self.world / "unreachable"
        unreachable.mkdir(exist_ok=True)
        for marker in unreachable.iterdir():
            marker.unlink()
        for address in settings.get("ssh_unreachable", []):
            (unreachable / address).touch()
        if (self.world / "etcd.json").exists():
            write_members(self.world, self.members(), settings.get("etcd_unhealthy", []))
        ingress = self.world / "ingress"
        ingress.mkdir(exist_ok=True)
        (ingress / "looks").write_text("")
        after = int(settings.get("ingress_ready_after", 0))
        (ingress / "ready-after").write_text(str(10**9 if after < 0 else after))
        for ready in (True, False):
            objects, slices = ingress_world(ready)
            (ingress / f"objects-{ready}.json").write_text(json.dumps(objects))
            (ingress / f"slices-{ready}.json").write_text(json.dumps(slices))

    def ingress_looks(self) -> int:
        """How many times the ingress controller was looked at (``kubectl get``)."""
        return len((self.world / "ingress" / "looks").read_text().splitlines())

    def deploy(self, config: dict[str, Any]) -> tuple[str, str]:
        """The world after a successful first ``rke up`` of ``config`` (a parsed
        cluster.yml), without running it; returns (cluster.rkestate, kubeconfig)."""
        rkestate, kubeconfig = applied_state(config)
        state = json.loads(rkestate)
        ca = state["desiredState"]["certificatesBundle"]["kube-ca"]["certificatePEM"]
        for node in config["nodes"]:
            (self.world / "nodes" / node["address"]).mkdir(parents=True, exist_ok=True)
            (self.world / "nodes" / node["address"] / "kube-ca.pem").write_text(ca)
        members = {
            _member(n): {
                "peer": f"https://{n.get('internal_address', n['address'])}:2380",
                "client": f"https://{n.get('internal_address', n['address'])}:2379",
            }
            for n in _etcd_hosts(config["nodes"])
        }
        write_members(self.world, members, [])
        write_secret(self.world, state)
        return rkestate, kubeconfig

    def calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        if not self.calls_path.exists():
            return []
        entries = [json.loads(ln) for ln in self.calls_path.read_text().splitlines()]
        return [e for e in entries if tool is None or e["tool"] == tool]

    def command_lines(self) -> list[str]:
        """Every fake's command line (``$0 $*``), one per start, in order."""
        if not self.argv_path.exists():
            return []
        return self.argv_path.read_text().splitlines()

    def ups(self) -> list[dict[str, Any]]:
        return [c for c in self.calls("rke") if c["args"][:1] == ["up"]]

    def members(self) -> dict[str, Any]:
        path = self.world / "etcd.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def nodes_with_certs(self) -> list[str]:
        return sorted(p.parent.name for p in (self.world / "nodes").glob("*/kube-ca.pem"))


# `kubectl --kubeconfig F -n NS get ...` in the wrapper: the kubeconfig RKE wrote must be
# given; the first `ready-after` looks find the controller pending. Shell builtins only:
# the runner gives its children no PATH but the fakes' directory.
_KUBECTL_GET = """if [ "$5" = get ]; then
  [ "$1" = --kubeconfig ] && [ -s "$2" ] || { echo "error: no kubeconfig $2" >&2; exit 1; }
  w="@INGRESS@"
  [ "$6" = endpointslices ] && f=slices || { f=objects; echo >> "$w/looks"; }
  n=0; while read -r _; do n=$((n + 1)); done < "$w/looks"
  read -r after < "$w/ready-after"
  [ "$n" -gt "$after" ] && f="$f-True" || f="$f-False"
  read -r doc < "$w/$f.json" || true
  printf '%s\\n' "$doc"
  exit 0
fi
"""


def ingress_world(ready: bool, desired: int = 3) -> tuple[dict[str, Any], dict[str, Any]]:
    """What ``kubectl get -o json`` prints for RKE's ingress-nginx: (the DaemonSet and the
    ValidatingWebhookConfiguration as a List, the webhook Service's EndpointSlices)."""
    from rke.ingress import RKE_INGRESS as c

    available = desired if ready else 0
    daemonset = {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": c.daemonset, "namespace": c.namespace, "generation": 2},
        "status": {
            "observedGeneration": 2, "desiredNumberScheduled": desired,
            "updatedNumberScheduled": desired, "numberReady": available,
            "numberAvailable": available,
        },
    }  # fmt: skip
    client: dict[str, Any] = {"service": {"namespace": c.namespace, "name": c.webhook_service}}
    if ready:
        client["caBundle"] = base64.b64encode(b"-----BEGIN CERTIFICATE-----").decode()
    webhook = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": c.webhook_configuration},
        "webhooks": [{"name": "validate.nginx.ingress.kubernetes.io", "failurePolicy": "Fail",
                      "clientConfig": client}],
    }  # fmt: skip
    endpoints = [
        {"addresses": [f"10.42.{i}.7"], "conditions": {"ready": ready}} for i in range(desired)
    ]
    slices = {
        "apiVersion": "v1", "kind": "List",
        "items": [{
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{c.webhook_service}-x7k2p", "namespace": c.namespace,
                         "labels": {"kubernetes.io/service-name": c.webhook_service}},
            "endpoints": endpoints,
        }],
    }  # fmt: skip
    return {"apiVersion": "v1", "kind": "List", "items": [daemonset, webhook]}, slices


# -- shared helpers ------------------------------------------------------------------------


def _control() -> dict[str, Any]:
    return json.loads(Path(os.environ["FAKE_CONTROL"]).read_text())


def _record(control: dict[str, Any], entry: dict[str, Any]) -> None:
    with open(control["calls"], "a") as handle:
        handle.write(
            json.dumps(
                {**entry, "env_keys": sorted(os.environ), "pid": os.getpid(), "time": time.time()}
            )
            + "\n"
        )


def write_members(world: Path, members: dict[str, Any], unhealthy: list[str]) -> None:
    """``etcd.json`` and what ``etcdctl member list`` / ``endpoint health --cluster -w json``
    print for it (the shell ``ssh`` fake shows these files)."""
    (world / "etcd.json").write_text(json.dumps(members))
    listing = [
        {"name": n, "peerURLs": [m["peer"]], "clientURLs": [m["client"]]}
        for n, m in members.items()
    ]
    health = [{"endpoint": m["client"], "health": n not in unhealthy} for n, m in members.items()]
    (world / "etcd-members.out").write_text(json.dumps({"members": listing}) + "\n")
    (world / "etcd-health.out").write_text(json.dumps(health) + "\n")


def write_secret(world: Path, state: dict[str, Any]) -> None:
    """The full-cluster-state Secret: its data, and base64 as ``kubectl -o jsonpath`` prints it."""
    text = json.dumps(state)
    (world / "full-cluster-state").write_text(text)
    (world / "full-cluster-state.b64").write_text(base64.b64encode(text.encode()).decode() + "\n")


def fingerprint(pem: str) -> str:
    return hashlib.sha256("".join(pem.split()).encode()).hexdigest()


def _pem(kind: str, size: int) -> str:
    body = base64.b64encode(secrets.token_bytes(size)).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {kind}-----\n{lines}\n-----END {kind}-----\n"


def x509_pem(name: str, not_before: Any = None, issued: Any = None) -> str:
    """An X.509 certificate dated as RKE dates them: ``notBefore`` the CA's
    (``not_before``; ``issued`` for a CA), ``notAfter`` the signing time (``issued``,
    default now, UTC) plus ten years (``newSignedCert`` in ``pki/util.go``), with NOISE
    random bytes so a state compresses (hardly) as RKE's does. ``name`` is not in it."""
    import datetime as dt

    issued = issued or dt.datetime.now(dt.UTC).replace(microsecond=0)
    der = bytearray(_template_der())
    start, end = _validity(bytes(der))
    der[start : start + 13] = (not_before or issued).strftime("%y%m%d%H%M%SZ").encode()
    after = issued + dt.timedelta(days=3650)
    der[end : end + 13] = after.strftime("%y%m%d%H%M%SZ").encode()
    noise = bytes(der).index(bytes(NOISE))
    der[noise : noise + NOISE] = secrets.token_bytes(NOISE)
    body = base64.b64encode(bytes(der)).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n"


def ca_not_before(bundle: dict[str, Any]) -> Any:
    """The kube-ca certificate's notBefore (UTC), read without ``cryptography``."""
    import datetime as dt

    der = _der_of(bundle["kube-ca"]["certificatePEM"])
    start, _ = _validity(der)
    when = dt.datetime.strptime(der[start : start + 13].decode(), "%y%m%d%H%M%SZ")
    return when.replace(tzinfo=dt.UTC)


def _cert(name: str, ca_pem: str | None = None, not_before: Any = None) -> dict[str, Any]:
    cert = ca_pem or x509_pem(name, not_before)
    key = _pem("RSA PRIVATE KEY", 1190)
    config = ""
    if name in WITH_CONFIG:
        config = (
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    api-version: v1\n"
            "    certificate-authority: /etc/kubernetes/ssl/kube-ca.pem\n"
            '    server: "https://127.0.0.1:6443"\n  name: "local"\ncontexts:\n- context:\n'
            f'    cluster: "local"\n    user: "{name}-local"\n  name: "local"\n'
            f'current-context: "local"\nusers:\n- name: "{name}-local"\n  user:\n'
            f"    client-certificate: /etc/kubernetes/ssl/{name}.pem\n"
            f"    client-key: /etc/kubernetes/ssl/{name}-key.pem\n"
        )
    env = name.upper().replace("-", "_")
    return {
        "certificatePEM": cert, "keyPEM": key, "config": config, "name": name,
        "commonName": f"system:{name}", "ouName": "", "envName": env,
        "path": f"/etc/kubernetes/ssl/{name}.pem", "keyEnvName": f"{env}_KEY",
        "keyPath": f"/etc/kubernetes/ssl/{name}-key.pem", "configEnvName": f"{env}_CONFIG",
        "configPath": f"/etc/kubernetes/ssl/kubecfg-{name}.yaml" if config else "",
    }  # fmt: skip


def _json_node(node: dict[str, Any], key_path: str | None) -> dict[str, Any]:
    out = {
        "address": node["address"], "port": str(node.get("port", "22")),
        "internalAddress": node.get("internal_address", ""), "role": node.get("role", []),
        "hostnameOverride": node.get("hostname_override", ""), "user": node.get("user", ""),
        "sshKeyPath": key_path or "~/.ssh/id_rsa", "labels": node.get("labels") or {},
    }  # fmt: skip
    return {k: v for k, v in out.items() if v not in ("", None)}


def _rke_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config as RKE keeps it in the state: JSON names, defaults filled in."""
    key_path = config.get("ssh_key_path")
    images = {f"image{i}": f"rancher/mirrored-component-{i}:v1.{i}.0" for i in range(SYSTEM_IMAGES)}
    return {
        "nodes": [_json_node(n, key_path) for n in config["nodes"]],
        "services": config.get("services", {}),
        "network": config.get("network", {}),
        "kubernetesVersion": config.get("kubernetes_version"),
        "clusterName": config.get("cluster_name"),
        "systemImages": images,
        "sshKeyPath": key_path,
    }


def _etcd_hosts(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [n for n in nodes if "etcd" in n.get("role", [])]


def _member(node: dict[str, Any]) -> str:
    return f"etcd-{node.get('hostname_override', node['address'])}"


def _admin_config(bundle: dict[str, Any], server: str) -> str:
    """kube-admin's kubeconfig with the certificates inline, as RKE writes it
    (``pki.GetKubeConfigX509WithData``)."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    ca, admin = bundle["kube-ca"], bundle["kube-admin"]
    return (
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    api-version: v1\n"
        f"    certificate-authority-data: {b64(ca['certificatePEM'])}\n"
        f'    server: "{server}"\n  name: "local"\ncontexts:\n- context:\n'
        '    cluster: "local"\n    user: "kube-admin-local"\n  name: "local"\n'
        'current-context: "local"\nusers:\n- name: "kube-admin-local"\n  user:\n'
        f"    client-certificate-data: {b64(admin['certificatePEM'])}\n"
        f"    client-key-data: {b64(admin['keyPEM'])}\n"
    )


def _kubeconfig(state: dict[str, Any], config: dict[str, Any]) -> None:
    bundle = state["desiredState"]["certificatesBundle"]
    server = next(
        (f"https://{n['address']}:6443" for n in config["nodes"] if "controlplane" in n["role"]),
        "https://127.0.0.1:6443",
    )
    bundle["kube-admin"]["config"] = _admin_config(bundle, server)
    Path("kube_config_cluster.yml").write_text(bundle["kube-admin"]["config"])


def _kubeconfig_ca(text: str) -> str | None:
    for line in text.splitlines():
        if "certificate-authority-data:" in line:
            return fingerprint(base64.b64decode(line.split(":", 1)[1].strip()).decode())
    return None


def _leak(s3_secret: str, admin_key: str) -> None:
    from urllib.parse import quote

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    data = b64(admin_key)
    print(f"DEBU[0003] [etcd] env S3_SECRET_KEY={b64(s3_secret)}", flush=True)
    print(f"DEBU[0003] [etcd] GET /?secret={quote(s3_secret, safe='')}", flush=True)
    print(f"DEBU[0003] [state] kube-admin client-key-data: {data}", flush=True)
    for i in range(0, len(data), 64):
        print(data[i : i + 64], flush=True)
    print(f"DEBU[0003] [state] kube-admin key {json.dumps(admin_key)}", flush=True)


def _write_state(state: dict[str, Any], restamp: tuple[int, int] | None = None) -> None:
    Path("cluster.rkestate").write_text(json.dumps(state, indent=2))
    if restamp is not None:
        os.utime("cluster.rkestate", ns=restamp)
    print("INFO[0001] Successfully Deployed state file at [./cluster.rkestate]", flush=True)


def _write_decoy(state: dict[str, Any]) -> tuple[int, int]:
    """Write ``state`` with kube-admin's key blanked (same length) and give the runner time
    to read it; returns its (atime, mtime) for the real state to be written with: a
    rewrite within one coarse kernel timestamp tick keeps size and mtime."""
    decoy = json.loads(json.dumps(state))
    admin = decoy["desiredState"]["certificatesBundle"]["kube-admin"]
    admin["keyPEM"] = re.sub(r"[^\n]", "x", admin["keyPEM"])
    _write_state(decoy)
    time.sleep(0.5)  # the runner reads it on the line above and on its 0.2 s ticks
    st = os.stat("cluster.rkestate")
    return st.st_atime_ns, st.st_mtime_ns


# -- rke -----------------------------------------------------------------------------------


def _rke(args: list[str]) -> int:
    control = _control()
    world = Path(control["world"])
    if args == ["--version"]:
        _record(control, {"tool": "rke", "args": args})
        print(f"rke version {control.get('version', 'v1.8.14')}")
        return 0
    config_path = Path(args[args.index("--config") + 1]) if "--config" in args else None
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    config = yaml.load(config_path.read_text(), Loader=loader) if config_path else {}
    state_path = Path("cluster.rkestate")
    given = state_path.read_text() if state_path.exists() else None
    given_ca = None
    if given:
        given_ca = fingerprint(
            json.loads(given)["desiredState"]["certificatesBundle"]["kube-ca"]["certificatePEM"]
        )
    key_path = config.get("ssh_key_path")
    cwd = Path.cwd()
    ups = [a for a in args if a == "up"]
    entry = {
        "tool": "rke", "args": args, "cwd": str(cwd), "cwd_mode": stat.S_IMODE(cwd.stat().st_mode),
        "config": config,
        "config_mode": stat.S_IMODE(config_path.stat().st_mode) if config_path else None,
        "state_given": given is not None,
        "state_digest": hashlib.sha256(given.encode()).hexdigest() if given else None,
        "ca_given": given_ca,
        "key": Path(key_path).read_text() if key_path else None,
        "key_mode": stat.S_IMODE(Path(key_path).stat().st_mode) if key_path else None,
        "etcd": sorted(_member(n) for n in _etcd_hosts(config.get("nodes", []))),
        "kubeconfig_given": Path("kube_config_cluster.yml").exists(),
        "run_dirs": sorted(p.name for p in cwd.parent.iterdir() if p.name.startswith("run-")),
    }  # fmt: skip
    _record(control, entry)
    if ups:
        count = len([c for c in _calls(control) if c["tool"] == "rke" and c["args"][:1] == ["up"]])
        return _up(control, world, config, given, count)
    if args[:2] == ["util", "get-state-file"]:
        return _get_state_file(world)
    if args[:2] == ["etcd", "snapshot-restore"]:
        return _restore(control, world, config, args, given)
    print(f"fake rke: unsupported {args}", file=sys.stderr)
    return 2


def _calls(control: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in Path(control["calls"]).read_text().splitlines()]


def _fails(control: dict[str, Any], point: str, count: int) -> bool:
    if control.get("fail_at") != point:
        return False
    only = control.get("fail_on_up")
    return only is None or only == count


def build_state(config: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """``ClusterInit``: the desired state for ``config`` (a parsed cluster.yml) with the
    certificates of ``old`` (a new CA when there is none); the current state is kept."""
    old = old or {"desiredState": {}, "currentState": {}}
    bundle = dict(old.get("desiredState", {}).get("certificatesBundle") or {})
    if "kube-ca" not in bundle:
        bundle = {"kube-ca": _cert("kube-ca")}
        start = ca_not_before(bundle)
        bundle.update({name: _cert(name, None, start) for name in CERT_NAMES[1:]})
    for node in _etcd_hosts(config["nodes"]):
        name = "kube-etcd-" + node.get("internal_address", node["address"]).replace(".", "-")
        if name not in bundle:
            bundle[name] = _cert(name, None, ca_not_before(bundle))
    return {
        "desiredState": {"rkeConfig": _rke_config(config), "certificatesBundle": bundle},
        "currentState": old.get("currentState") or {},
    }


def applied_state(config: dict[str, Any], old: dict[str, Any] | None = None) -> tuple[str, str]:
    """(cluster.rkestate text, kubeconfig) of a successful ``rke up`` of ``config``."""
    state = build_state(config, old)
    bundle = state["desiredState"]["certificatesBundle"]
    server = next(
        (f"https://{n['address']}:6443" for n in config["nodes"] if "controlplane" in n["role"]),
        "https://127.0.0.1:6443",
    )
    bundle["kube-admin"]["config"] = _admin_config(bundle, server)
    state["currentState"] = json.loads(json.dumps(state["desiredState"]))
    return json.dumps(state, indent=2), bundle["kube-admin"]["config"]


def _up(
    control: dict[str, Any], world: Path, config: dict[str, Any], given: str | None, count: int
) -> int:
    if _fails(control, "start", count):
        print("FATA[0000] Failed to set up SSH tunneling for host: fake failure", flush=True)
        return 1
    backup = config.get("services", {}).get("etcd", {}).get("backup_config", {})
    s3 = backup.get("s3backupconfig")
    if s3:  # a leaky tool: the runner must redact what it prints
        print(f"INFO[0000] [etcd] s3 {s3.get('access_key')} {s3.get('secret_key')}", flush=True)
    version = config.get("kubernetes_version")
    data = json.loads((ROOT / "reference" / "rke-releases.json").read_text())
    release = data["releases"].get(control.get("version", "v1.8.14")) or {}
    if version not in (release.get("kubernetes_versions") or ()):
        print(f"FATA[0000] Failed to validate cluster: unsupported Kubernetes version {version}")
        return 1
    state = build_state(config, json.loads(given) if given else None)
    bundle = state["desiredState"]["certificatesBundle"]
    if control.get("midwrite"):  # RKE's "written" line while the file is being rewritten
        Path("cluster.rkestate").write_text("")
        print("INFO[0001] Successfully Deployed state file at [./cluster.rkestate]", flush=True)
        _leak((s3 or {}).get("secret_key") or "", bundle["kube-admin"]["keyPEM"])
        time.sleep(0.3)
    _write_state(state, restamp=_write_decoy(state) if control.get("restamp") else None)
    if _fails(control, "init", count):
        print("FATA[0002] Failed to set up hosts: fake failure", flush=True)
        return 1
    # ClusterUp: refuse replacing every etcd member (after state and certs exist)
    current_nodes = (state["currentState"].get("rkeConfig") or {}).get("nodes") or []
    old_etcd = {n["address"] for n in current_nodes if "etcd" in n.get("role", [])}
    new_etcd = {n["address"] for n in _etcd_hosts(config["nodes"])}
    ca_pem = bundle["kube-ca"]["certificatePEM"]
    for node in config["nodes"]:
        node_dir = world / "nodes" / node["address"]
        node_dir.mkdir(parents=True, exist_ok=True)
        (node_dir / "kube-ca.pem").write_text(ca_pem)
    _kubeconfig(state, config)
    if control.get("leak"):
        _leak((s3 or {}).get("secret_key") or "", bundle["kube-admin"]["keyPEM"])
    if old_etcd and not old_etcd & new_etcd:
        print(
            "FATA[0003] Failed to reconcile etcd plane: Etcd plane nodes are replaced. "
            "Stopping provisioning. Please restore your cluster from backup.",
            flush=True,
        )
        return 1
    if _fails(control, "certs", count):
        print("FATA[0003] Failed to reconcile: fake failure", flush=True)
        return 1
    # reconcile etcd members by address: removals first, then additions
    members = (
        json.loads((world / "etcd.json").read_text()) if (world / "etcd.json").exists() else {}
    )
    for node in current_nodes:
        if "etcd" in node.get("role", []) and node["address"] not in new_etcd:
            name = f"etcd-{node.get('hostnameOverride', node['address'])}"
            if name in control.get("etcd_keep", []):  # RKE only logs a failed removal
                print(f"WARN[0003] [reconcile] failed to delete etcd member [{name}]")
                continue
            members.pop(name, None)
    for node in _etcd_hosts(config["nodes"]):
        if node["address"] not in old_etcd or not members:
            ip = node.get("internal_address", node["address"])
            members[f"etcd-{node.get('hostname_override', node['address'])}"] = {
                "peer": f"https://{ip}:2380",
                "client": f"https://{ip}:2379",
            }
    write_members(world, members, control.get("etcd_unhealthy", []))
    for i in range(int(control.get("chatty", 0))):
        print(f"INFO[{i:04d}] [worker] fake rke progress line {i} " + "x" * 80, flush=True)
    deadline = time.monotonic() + float(control.get("slow", 0))
    while time.monotonic() < deadline:
        print("INFO[0004] [controlplane] waiting for the control plane", flush=True)
        time.sleep(0.05)
    if _fails(control, "controlplane", count):
        for i in range(60):
            print(f"INFO[{i:04d}] fake rke progress line {i}", flush=True)
        print("FATA[0060] Failed to bring up Control Plane: fake failure", flush=True)
        return 1
    # UpdateClusterCurrentState (kube-admin's config was rebuilt with the certificates),
    # then SaveFullStateToK8s
    state["currentState"] = json.loads(json.dumps(state["desiredState"]))
    _write_state(state)
    write_secret(world, state)
    if _fails(control, "workers", count):
        print("FATA[0070] Failed to deploy worker plane: fake failure", flush=True)
        return 1
    print("INFO[0100] Finished building Kubernetes cluster successfully", flush=True)
    return 0


def _get_state_file(world: Path) -> int:
    """``cmd/util.go`` getStateFile: the Secret through kube_config_cluster.yml, else
    the ConfigMap over SSH (which modern RKE no longer writes)."""
    secret = world / "full-cluster-state"
    kubeconfig = Path("kube_config_cluster.yml")
    if kubeconfig.exists() and secret.exists():
        state = json.loads(secret.read_text())
        ca = state["desiredState"]["certificatesBundle"]["kube-ca"]["certificatePEM"]
        if _kubeconfig_ca(kubeconfig.read_text()) == fingerprint(ca):
            Path("cluster.rkestate").write_text(json.dumps(state, indent=2))
            print("INFO[0001] Successfully Deployed state file at [./cluster.rkestate]")
            return 0
    print(
        "INFO[0000] Unable to connect to server using kubeconfig, trying to get state "
        "from Control Plane node(s)"
    )
    print(
        "FATA[0005] [state] Unable to get ConfigMap with cluster state from any Control Plane host"
    )
    return 1


def _restore(
    control: dict[str, Any], world: Path, config: dict[str, Any], args: list[str], given: str | None
) -> int:
    """``RestoreEtcdSnapshotFromCli`` and ``RestoreEtcdSnapshot`` (``cmd/etcd.go``).

    Where the S3 settings come from: with ``--s3`` the flags replace the file's whole S3
    block (``setOptionsFromCLI``, ``setS3OptionsFromCLI`` in ``cmd/common.go``; the
    endpoint defaults to ``s3.amazonaws.com``, empty flags stay unset); without it the
    cluster.yml's ``services.etcd.backup_config.s3backupconfig`` is used as written.
    ``PrepareBackup`` (``cluster/etcd.go``) downloads from S3 when there is a block and
    falls back to the nodes' local copy when the download fails. The bucket is
    ``world/s3.json`` (its settings and keys) and ``world/s3/<name>.json``; a download
    with other settings or keys fails, as S3 refuses it.
    """
    name = args[args.index("--name") + 1]

    def flag(option: str, default: str | None = None) -> str | None:
        value = args[args.index(option) + 1] if option in args else default
        return value or None

    if "--s3" in args:
        s3: dict[str, Any] | None = {
            "endpoint": flag("--s3-endpoint", "s3.amazonaws.com"), "bucket": flag("--bucket-name"),
            "access_key": flag("--access-key"), "secret_key": flag("--secret-key"),
            "region": flag("--region"), "folder": flag("--folder"),
        }  # fmt: skip
    else:
        block = ((config.get("services") or {}).get("etcd") or {}).get("backup_config") or {}
        found = block.get("s3backupconfig")
        s3 = None if found is None else {
            "endpoint": found.get("endpoint") or None, "bucket": found.get("bucket_name") or None,
            "access_key": found.get("access_key") or None,
            "secret_key": found.get("secret_key") or None,
            "region": found.get("region") or None, "folder": found.get("folder") or None,
        }  # fmt: skip
    snapshot = world / "snapshots" / f"{name}.json"
    source = "local"
    if s3 is not None:
        # DownloadEtcdSnapshotFromS3 (services/etcd.go) logs the access key
        where = f"[{s3['endpoint']}] using accesskey [{s3['access_key']}]"
        print(f"INFO[0001] [etcd] Snapshot [{name}] will be downloaded from {where}", flush=True)
        bucket = world / "s3.json"
        copy = world / "s3" / f"{name}.json"
        if bucket.exists() and json.loads(bucket.read_text()) == s3 and copy.exists():
            snapshot.parent.mkdir(exist_ok=True)
            snapshot.write_text(copy.read_text())
            source = "s3"
        else:
            print(f"WARN[0001] failed to download snapshot [{name}] from s3", flush=True)
    if not snapshot.exists():
        print(f"FATA[0001] snapshot [{name}] not found", flush=True)
        return 1
    data = json.loads(snapshot.read_text())
    state = data.get("state") or (json.loads(given) if given else None)
    if state is None:
        print("FATA[0001] no state", flush=True)
        return 1
    state["currentState"] = {}
    _write_state(state)
    write_members(world, data["members"], control.get("etcd_unhealthy", []))
    state["desiredState"]["rkeConfig"] = _rke_config(config)
    _kubeconfig(state, config)
    state["currentState"] = json.loads(json.dumps(state["desiredState"]))
    _write_state(state)
    write_secret(world, state)
    (world / "restored").write_text(f"{name} from {source}")
    print(f"INFO[0100] Finished restoring snapshot [{name}] on all etcd hosts", flush=True)
    return 0


# -- kubectl and ssh -----------------------------------------------------------------------


def _kubectl(args: list[str]) -> int:
    control = _control()
    _record(control, {"tool": "kubectl", "args": args})
    if "get" in args and {"nodes", "volumes.longhorn.io", "replicas.longhorn.io"} & set(args):
        return _kubectl_get(control, args)
    node = args[args.index("drain") + 1] if "drain" in args else None
    if node is not None and node == control.get("kubectl_notfound"):
        print(f'Error from server (NotFound): nodes "{node}" not found', file=sys.stderr)
        return 1
    print(f"node/{node} drained")
    return 0


# `kubectl --kubeconfig F --request-timeout=T [-n NS] get nodes|volumes.longhorn.io -o json`
# (the roll's waits, roll/checks.py), as the API server of the cluster RKE made would answer:
# - the kubeconfig is RKE's (the cluster's kube-ca, pki.GetKubeConfigX509WithData) and names
#   a server an API server listens on: RKE runs kube-apiserver on every controlplane host
#   (its address in the current state's rkeConfig) and a VM serves only while it is live and
#   booted (the fake cloud's ``nodes`` folder, control key ``cloud_nodes``); else kubectl says
#   "Unable to connect to the server" and exits 1;
# - ``--request-timeout``: "a single integer in seconds, or an integer followed by a
#   corresponding time unit" (client-go tools/clientcmd/client_config.go ``ParseTimeout``),
#   else an error;
# - the Nodes: one per node of the current state (kubelet registers as ``hostname_override``;
#   RKE deletes the Node of a host it removes, cluster/reconcile.go), addresses InternalIP
#   (kubelet's --node-ip: RKE's ``internal_address``, cluster/plan.go) and Hostname; Ready
#   True ("KubeletReady") while the VM is live and booted, else Unknown ("Kubelet stopped
#   posting node status.", the node lifecycle controller once heartbeats stop);
# - ``volumes.longhorn.io``, ``replicas.longhorn.io``: none (nothing in these stacks claims
#   a volume), an empty List.
def _kubectl_get(control: dict[str, Any], args: list[str]) -> int:
    import yaml

    options: dict[str, str] = {}
    words = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg.startswith("--") and "=" in arg:
            key, value = arg.split("=", 1)
            options[key] = value
        elif arg in ("--kubeconfig", "--request-timeout", "-n", "--namespace", "-o"):
            options[arg] = rest.pop(0) if rest else ""
        else:
            words.append(arg)
    timeout = options.get("--request-timeout", "0")
    if not re.fullmatch(r"[0-9]+|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+", timeout):
        print(
            "error: invalid timeout value. Timeout must be a single integer in seconds, or an "
            "integer followed by a corresponding time unit (e.g. 1s | 2m | 3h)",
            file=sys.stderr,
        )
        return 1
    if options.get("-o") != "json":
        print(f"fake kubectl: not modelled: {' '.join(args)}", file=sys.stderr)
        return 1
    world = Path(control["world"])
    state = json.loads((world / "full-cluster-state").read_text())["currentState"]
    path = Path(options.get("--kubeconfig", ""))
    config = yaml.safe_load(path.read_text()) if path.is_file() else None
    if not isinstance(config, dict):
        print(f"error: stat {path}: no such file or directory", file=sys.stderr)
        return 1
    cluster = config["clusters"][0]["cluster"]
    server = str(cluster.get("server", ""))
    booted: dict[str, list[str]] = {}  # hostname -> addresses of a live, booted VM
    if not control.get("cloud_nodes"):
        print("fake kubectl: no cloud_nodes in the control file (Sandbox.set)", file=sys.stderr)
        return 1
    for info in Path(control["cloud_nodes"]).glob("*/node.json"):
        if (info.parent / "sshd.pid").exists():
            vm = json.loads(info.read_text())
            booted[str(vm.get("hostname"))] = list(vm.get("addresses") or [])
    rke_nodes = state["rkeConfig"]["nodes"]
    host = server.removeprefix("https://").rsplit(":", 1)[0]
    serving = any(
        "controlplane" in n["role"] and n["address"] == host
        and host in booted.get(n.get("hostnameOverride", n["address"]), [])
        for n in rke_nodes
    )  # fmt: skip
    if not serving:
        print(
            f"Unable to connect to the server: dial tcp {host}:6443: connect: connection refused",
            file=sys.stderr,
        )
        return 1
    ca = state["certificatesBundle"]["kube-ca"]["certificatePEM"]
    given = base64.b64decode(cluster.get("certificate-authority-data", "")).decode()
    if fingerprint(given) != fingerprint(ca):
        print(
            "Unable to connect to the server: tls: failed to verify certificate: x509: "
            "certificate signed by unknown authority",
            file=sys.stderr,
        )
        return 1
    items: list[dict[str, Any]] = []
    if words == ["get", "nodes"]:
        for n in rke_nodes:
            name = n.get("hostnameOverride", n["address"])
            ready = name in booted
            condition = {
                "type": "Ready",
                "status": "True" if ready else "Unknown",
                "reason": "KubeletReady" if ready else "NodeStatusUnknown",
                "message": "kubelet is posting ready status"
                if ready
                else "Kubelet stopped posting node status.",
            }
            addresses = [{"type": "Hostname", "address": name}]
            if n.get("internalAddress"):
                addresses.insert(0, {"type": "InternalIP", "address": n["internalAddress"]})
            items.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": name, "labels": n.get("labels") or {}},
                    "status": {"addresses": addresses, "conditions": [condition]},
                }
            )
    elif words not in (["get", "volumes.longhorn.io"], ["get", "replicas.longhorn.io"]):
        print(f"fake kubectl: not modelled: {' '.join(args)}", file=sys.stderr)
        return 1
    listing = {
        "apiVersion": "v1",
        "items": items,
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    }
    print(json.dumps(listing, indent=4))
    return 0


if __name__ == "__main__":
    tool, rest = sys.argv[1], sys.argv[2:]
    sys.exit({"rke": _rke, "kubectl": _kubectl}[tool](rest))

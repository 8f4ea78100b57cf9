"""Evaluate the real program in-process under Pulumi's mock engine.

Used by ``make render`` and by the tests. Every resource registration is recorded
with its options (parent, dependencies, secret outputs, ignoreChanges) exactly as
the engine would receive it. Cloud-computed values (addresses, ids) are stand-ins
from documentation ranges; nothing here talks to a cloud.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import runpy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from scripts import fake_cloudflare, stack_yaml

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "multicloud"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
SIG_KEY = "4dabf18193072939515e22adb298388d"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
PLACEHOLDER = "placeholder-secret"


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("/".join(parts).encode()).digest()


# MULTICLOUD_FAKE_ADDRESS_BASE (e.g. "127.10"): a /16 the addresses are taken from instead
# of the documentation ranges, one /18 per kind, so the engine tests' fake VMs get loopback
# addresses a local sshd can listen on (tests/engine/providers/nodes.py); unset, renders
# stay as before.
ADDRESS_BASE_ENV = "MULTICLOUD_FAKE_ADDRESS_BASE"
_ADDRESS_KINDS = ("192.0.2", "203.0.113", "198.51.100", "10.116.0")


def _address(prefix: str, name: str) -> str:
    d = _digest(prefix, name)
    base = os.environ.get(ADDRESS_BASE_ENV)
    if base:
        return f"{base}.{_ADDRESS_KINDS.index(prefix) * 64 + d[1] % 64}.{d[0] % 250 + 2}"
    return f"{prefix}.{d[0] % 250 + 2}"


def fake_outputs(
    type_: str, name: str, inputs: Mapping[str, Any], previous: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What the cloud would add to a resource's state; deterministic per name.

    ``previous`` stands for the stack's outputs from its last update, which a
    StackReference to the stack itself reads back (empty: a stack never deployed).
    """
    out = dict(inputs)
    if type_ == "pulumi:pulumi:StackReference":
        return out | {"outputs": dict(previous or {}), "secretOutputNames": []}
    if type_ == "openstack:networking/port:Port":
        out["allFixedIps"] = [_address("192.0.2", name)]
    elif type_ == "openstack:networking/floatingIp:FloatingIp":
        out["address"] = _address("203.0.113", name)
    elif type_ == "digitalocean:index/droplet:Droplet":
        out["ipv4Address"] = _address("198.51.100", name)
        out["ipv4AddressPrivate"] = _address("10.116.0", name)
    elif type_ == "digitalocean:index/sshKey:SshKey":
        out["fingerprint"] = ":".join(f"{b:02x}" for b in _digest("fp", name)[:16])
    elif type_.startswith("pulumi-python:dynamic"):
        out.pop("__provider", None)
        if type_.endswith(":Identity"):
            address = _digest("zt", name)[:5].hex()
            out |= {
                "address": address,
                "public": f"{address}:0:{'ab' * 64}",
                "secret": f"{address}:0:{'ab' * 64}:{PLACEHOLDER}",
            }
        elif type_.endswith(":Network"):
            out["network_id"] = inputs.get("adopt_network_id") or _digest("nw", name)[:8].hex()
    elif type_ == "command:local:Command":
        out["stdout"] = json.dumps(
            {
                "kubeconfig": f"apiVersion: v1\nkind: Config\n# {PLACEHOLDER}\n",
                "rkestate": PLACEHOLDER,
            }
        )
    elif type_.startswith("cloudflare:"):
        out = fake_cloudflare.created_state(type_, inputs) or out
    elif type_ == "random:index/randomPassword:RandomPassword":
        out["result"] = f"{PLACEHOLDER}-{name}"
    elif type_ == "command:remote:Command" and name.endswith("-nodes-ready"):
        out["stdout"] = (  # RKE2's admin kubeconfig, as the cluster-ready command prints it
            "apiVersion: v1\nkind: Config\nclusters:\n- name: default\n  cluster:\n"
            f"    certificate-authority-data: {PLACEHOLDER}\n    server: https://127.0.0.1:6443\n"
            "contexts:\n- name: default\n  context: {cluster: default, user: default}\n"
            f"current-context: default\nusers:\n- name: default\n  user: {{token: {PLACEHOLDER}}}\n"
        )
    elif type_ == "tls:index/privateKey:PrivateKey":
        out |= _ed25519_openssh(name)
    return out


# Zone-scoped API token permission groups as the API lists them (ids made up), and a group of
# the account scope named like a zone-scoped one: the lookup has to pick by scope too.
CLOUDFLARE_PERMISSION_GROUPS = (
    ("DNS Read", "com.cloudflare.api.account.zone"),
    ("DNS Write", "com.cloudflare.api.account.zone"),
    ("Zone Read", "com.cloudflare.api.account.zone"),
    ("Zone Write", "com.cloudflare.api.account.zone"),
    ("Zone Read", "com.cloudflare.api.account"),
)


def _ed25519_openssh(name: str) -> dict[str, str]:
    """A stand-in ED25519 key derived from the resource name (public, so not a secret of
    anyone's), in the two OpenSSH encodings pulumi-tls outputs; byte-for-byte deterministic."""
    import base64
    import struct

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.from_private_bytes(_digest("ssh-host-key", name))
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    # openssh-key-v1 (OpenSSH PROTOCOL.key): the private section, the last string, opens with
    # two equal random "checkint"s; fix them so every run gives the same text.
    lines = pem.strip().splitlines()
    blob = bytearray(base64.b64decode("".join(lines[1:-1])))
    offset = len(b"openssh-key-v1\0")
    for _ in range(4):  # ciphername, kdfname, kdfoptions, then (after nkeys) the public key
        (length,) = struct.unpack_from(">I", blob, offset)
        offset += 4 + length
        if _ == 2:
            offset += 4  # nkeys
    blob[offset + 4 : offset + 12] = _digest("checkint", name)[:4] * 2
    body = base64.b64encode(bytes(blob)).decode()
    private = "\n".join([lines[0], *(body[i : i + 70] for i in range(0, len(body), 70)), lines[-1]])
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return {"privateKeyOpenssh": private + "\n", "publicKeyOpenssh": public.decode() + "\n"}


def fake_call(token: str, args: Mapping[str, Any]) -> dict[str, Any]:
    if token == "openstack:networking/getNetwork:getNetwork":
        return {"id": f"net-{args.get('name')}", "name": args.get("name")}
    if token == "openstack:images/getImage:getImage":
        return {
            "id": f"img-{_digest('img', str(args.get('name')))[:8].hex()}",
            "name": args.get("name"),
        }
    if token.startswith("cloudflare:index/getApiTokenPermissionGroupsList"):
        scope, name = args.get("scope"), args.get("name")
        results = [
            {
                "id": _digest("cf", g, s)[:16].hex(),
                "name": g,
                "scopes": [s],
                "category": "dns_and_zones",
                "isSelectable": True,
            }
            for g, s in CLOUDFLARE_PERMISSION_GROUPS
            if (scope is None or s == scope) and (name is None or name in g)
        ]
        return {"results": results}
    return {}


class _Mocks(pulumi.runtime.Mocks):
    """Stand-in cloud. In a preview nothing exists yet, so it computes nothing: every
    output the cloud would decide (addresses, ids, identities, the kubeconfig) stays unknown,
    as in a first `pulumi preview`."""

    def __init__(self, preview: bool, previous: Mapping[str, Any] | None = None) -> None:
        self.preview = preview
        self.previous = previous

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if args.typ == "pulumi:pulumi:StackReference":  # read, even in a preview
            return str(args.inputs.get("name")), fake_outputs(
                args.typ, args.name, args.inputs, self.previous
            )
        if self.preview:
            return "", {k: v for k, v in args.inputs.items() if k != "__provider"}
        outputs = fake_outputs(args.typ, args.name, args.inputs)
        if args.typ == "pulumi-python:dynamic/zerotier:Network":  # its id is the network id
            return outputs["network_id"], outputs
        return f"{args.name}-id", outputs

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return fake_call(args.token, args.args), []


@dataclass
class Registration:
    """One RegisterResource request as the engine would see it."""

    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    provider: str
    inputs: dict[str, Any]  # serialized: secrets carry SECRET_SIG, unknowns are UNKNOWN
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    additional_secret_outputs: list[str]
    ignore_changes: list[str]
    replace_on_changes: list[str]
    delete_before_replace: bool
    outputs: dict[str, Any] = field(default_factory=dict)  # the state the stand-in cloud keeps


class RecordingMonitor(mocks.MockMonitor):
    def __init__(self, mock: pulumi.runtime.Mocks) -> None:
        super().__init__(mock)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            message = json_format.MessageToDict(request, preserving_proto_field_name=True)
            self.registrations.append(
                Registration(
                    type=request.type,
                    name=request.name,
                    urn=self.make_urn(request.parent, request.type, request.name),
                    parent=request.parent,
                    custom=request.custom,
                    provider=request.provider,
                    inputs=message.get("object", {}),
                    dependencies=list(request.dependencies),
                    property_dependencies={
                        key: list(value.urns) for key, value in request.propertyDependencies.items()
                    },
                    additional_secret_outputs=list(request.additionalSecretOutputs),
                    ignore_changes=list(request.ignoreChanges),
                    replace_on_changes=list(request.replaceOnChanges),
                    delete_before_replace=request.deleteBeforeReplace,
                    outputs=json_format.MessageToDict(response.object),
                )
            )
        return response


@dataclass
class Run:
    registrations: list[Registration]
    outputs: dict[str, Any]
    error: BaseException | None = None
    config_secrets: tuple[str, ...] = ()  # the values of the config's secret keys
    by_name: dict[str, Registration] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_name = {r.name: r for r in self.registrations}

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG


def reveal(value: Any) -> Any:
    """The value with every secret wrapper removed (for assertions on content)."""
    if is_secret(value):
        return reveal(value.get("value"))
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


# Inputs that carry a whole document (user-data, cluster.yml, a command's script): secret as
# a whole, but masking them would hide everything; their secret parts are secrets elsewhere.
_DOCUMENT_KEYS = frozenset({"userData", "stdin", "create", "update", "delete", "triggers"})


def secret_strings(run: Run) -> list[str]:
    """Every secret value of ``run`` as text, longest first: the config's secret keys,
    secret-wrapped inputs (less whole documents, ``_DOCUMENT_KEYS``) and the outputs a
    resource declares secret (keys, identities, tokens), less the public halves that ride in
    secret containers (``public_strings``); for masking text that embeds them."""
    found: set[str] = set(run.config_secrets)

    def leaves(value: Any, inside_secret: bool) -> None:
        if is_secret(value):
            leaves(value.get("value"), True)
        elif isinstance(value, dict):
            for key, item in value.items():
                if key not in _DOCUMENT_KEYS:
                    leaves(item, inside_secret)
        elif isinstance(value, list):
            for item in value:
                leaves(item, inside_secret)
        elif inside_secret and isinstance(value, str):
            found.add(value)

    for r in run.registrations:
        leaves(r.inputs, False)
        for key in r.additional_secret_outputs:
            if r.type not in ("command:local:Command", "command:remote:Command"):  # whole output
                leaves(r.outputs.get(key), True)
    found -= {*public_strings(run), *(f"{key}\n" for key in public_strings(run))}
    return sorted((s for s in found if s and s != UNKNOWN), key=len, reverse=True)


def public_strings(run: Run) -> list[str]:
    """The public halves resources output (``publicKeyOpenssh``, a ZeroTier identity's
    ``public``...): they travel inside secret containers (a command's connection, RKE's
    known_hosts) but are no secret, and a reviewer should see them."""
    return [
        value.strip()
        for r in run.registrations
        for key, value in r.outputs.items()
        if key.startswith("public") and isinstance(value, str) and value.strip()
    ]


def masked_text(text: str, secrets: Sequence[str], public: Sequence[str] = ()) -> str:
    """``text`` with every line of every secret (8 characters or more, as it appears
    indented in YAML block scalars) replaced by ``[secret]``, but for lines that are one
    of ``public`` (a public key inside a secret known_hosts, say)."""
    lines = {line.strip() for secret in secrets for line in secret.splitlines()}
    lines -= {line.strip() for value in public for line in value.splitlines()}
    for line in sorted((x for x in lines if len(x) >= 8), key=len, reverse=True):
        text = text.replace(line, "[secret]")
    return text


def masked(value: Any) -> Any:
    """The value with every secret replaced by ``[secret]`` (for printing)."""
    if is_secret(value):
        return "[secret]"
    if isinstance(value, dict):
        if value.get(SIG_KEY):  # resource references and other special values
            return {k: masked(v) for k, v in value.items() if k != SIG_KEY}
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    if value == UNKNOWN:
        return "[unknown]"
    return value


def run_program(
    config: Mapping[str, str],
    *,
    secret_keys: list[str] | None = None,
    stack: str = "test",
    preview: bool = False,
    previous_outputs: Mapping[str, Any] | None = None,
) -> Run:
    """Run ``__main__.py`` with ``config`` (full keys -> strings as the CLI passes them).

    ``previous_outputs`` are the stack outputs of a previous update, as a StackReference
    to the stack itself reads them (default: none, a first deployment).
    """
    pulumi.runtime.reset_options()
    monitor = RecordingMonitor(_Mocks(preview, previous_outputs))
    mocks.set_mocks(monitor.mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor)
    pulumi.runtime.set_all_config(dict(config), secret_keys or [])
    settings.SETTINGS.rpc_manager.clear()
    settings.SETTINGS.outputs.clear()
    error: BaseException | None = None
    outputs: dict[str, Any] = {}
    try:
        _sync_await(run_pulumi_func(lambda: runpy.run_path(str(ROOT / "__main__.py"))))  # type: ignore[arg-type, return-value]
        outputs = _stack_outputs()
    except Exception as err:  # the caller decides whether an error is expected
        error = err
    config_secrets = tuple(config[key] for key in secret_keys or () if key in config)
    return Run(monitor.registrations, outputs, error, config_secrets)


def _stack_outputs() -> dict[str, Any]:
    """The stack's exports, secrets wrapped as in registrations (mocks never send them)."""
    root = settings.get_root_resource()
    exported: dict[str, Any] = dict(getattr(root, "outputs", {}))

    async def resolve() -> dict[str, Any]:
        result = {}
        for name, value in exported.items():
            output = pulumi.Output.from_input(value)
            plain = await output.future(with_unknowns=True)
            secret = await output.is_secret()
            result[name] = {SIG_KEY: SECRET_SIG, "value": plain} if secret else plain
        return result

    return _sync_await(resolve())


# --- stack files -> config as the CLI would pass it ----------------------------------


def load_yaml_file(path: Path) -> Any:
    """``path`` read as the Pulumi CLI reads stack and project files (scripts/stack_yaml.py:
    go-yaml v3's rules; StackFileError names file, line and column). Each distinct text is
    parsed once per process (the test suite reads the same stack files hundreds of times)
    and every caller gets its own deep copy, free to change."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise stack_yaml.StackFileError(f"{path}: not UTF-8 text ({err})") from None
    except OSError as err:
        raise stack_yaml.StackFileError(f"{path}: cannot read it ({err.strerror})") from None
    return copy.deepcopy(_parse_yaml(text, str(path)))


@functools.lru_cache(maxsize=16)
def _parse_yaml(text: str, path: str) -> Any:
    return stack_yaml.load(text, path)


def project_schema() -> dict[str, Any]:
    """Pulumi.yaml's ``config`` section: key (without the project prefix) -> declaration."""
    schema: dict[str, Any] = load_yaml_file(ROOT / "Pulumi.yaml")["config"]
    return schema


def _placeholders(value: Any, placeholder: str) -> tuple[Any, bool]:
    """``value`` with each nested ``{secure: ...}`` replaced by ``placeholder``, and
    whether there was one."""
    if isinstance(value, dict) and set(value) == {"secure"} and isinstance(value["secure"], str):
        return placeholder, True
    if isinstance(value, dict):
        items = {k: _placeholders(v, placeholder) for k, v in value.items()}
        return {k: v for k, (v, _) in items.items()}, any(s for _, s in items.values())
    if isinstance(value, list):
        items_ = [_placeholders(v, placeholder) for v in value]
        return [v for v, _ in items_], any(s for _, s in items_)
    return value, False


def stack_config(stack: str) -> tuple[dict[str, str], list[str]]:
    """The stack file's config plus project defaults, secrets replaced by placeholders.

    Returns (config, secret_keys). Secure values cannot be decrypted without the
    stack's passphrase, so they become placeholders that stay secret; so do declared
    and conditional secret keys the stack file leaves unset (they are set with
    ``pulumi config set --secret`` by whoever deploys).
    """
    from components.config import CONDITIONAL_SECRETS, DECLARED_SECRETS, openstack_secret_key

    data = load_yaml_file(ROOT / f"Pulumi.{stack}.yaml") or {}
    path = ROOT / f"Pulumi.{stack}.yaml"
    raw = stack_yaml.config_section(data, PROJECT, path)
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for full, value in raw.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            config[full] = f"{PLACEHOLDER}-{full.split(':', 1)[1]}"
            secret_keys.append(full)
        else:
            # `pulumi config set --path --secret` nests {secure: ...} in an object, which
            # makes the whole key a secret (config/value.go hasSecureValue)
            plain, nested = _placeholders(value, f"{PLACEHOLDER}-{full.split(':', 1)[1]}")
            config[full] = stack_yaml.config_string(plain, full)
            if nested:
                secret_keys.append(full)
    for key, declared in project_schema().items():  # the CLI applies Pulumi.yaml defaults
        full = f"{PROJECT}:{key}"
        if full not in config and "default" in declared:
            config[full] = stack_yaml.config_string(declared["default"], full)
    try:  # a malformed `sites` is the program's to refuse, with the key's path
        sites = json.loads(config.get(f"{PROJECT}:sites", "{}"))
    except ValueError:
        sites = {}
    if not isinstance(sites, dict):
        sites = {}
    wanted = list(DECLARED_SECRETS) + list(CONDITIONAL_SECRETS)
    wanted += [
        openstack_secret_key(n) for n, s in sites.items() if isinstance(s, dict) and s.get("auth")
    ]
    for key in wanted:
        full = f"{PROJECT}:{key}"
        if full not in config:
            config[full] = f"{PLACEHOLDER}-{key}"
            secret_keys.append(full)
    return config, secret_keys

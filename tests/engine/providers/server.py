"""One stand-in provider: the engine's ``ResourceProvider`` gRPC service for a package.

The engine's side of each call is pulumi/pulumi pkg/v3 v3.274.0
``resource/plugin/provider_plugin.go`` (``Handshake``, ``Configure``, ``Check``, ``Diff``,
``Create``, ...): it sends properties as ``google.protobuf.Struct`` with secrets and unknowns
in their wire form (the signature key, the unknown sentinel) once the provider accepts
secrets; it skips ``Check``/``Diff``/``Create`` itself while the provider's configuration is
unknown in a preview; it calls ``Create``/``Update`` with ``preview`` set when the provider
supports previews; and it takes ``deleteBeforeReplace`` from the program's option, or from
the provider's answer. Values stay in the wire form here (``json_format``), so a secret
input is a secret output and nothing is unwrapped on the way back.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from concurrent import futures
from functools import cache, wraps
from pathlib import Path
from threading import Event
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime._grpc_settings import _GRPC_CHANNEL_OPTIONS
from pulumi.runtime.proto import plugin_pb2, provider_pb2, provider_pb2_grpc

from scripts import fake_cloudflare
from scripts.offline import (
    SECRET_SIG,
    SIG_KEY,
    UNKNOWN,
    _address,
    fake_call,
    fake_outputs,
    is_secret,
    reveal,
)
from tests.engine.providers import generate
from tests.engine.providers.cloud import CloudError, FakeCloud

ROOT = Path(__file__).resolve().parents[3]
FORCE_NEW = ROOT / "reference" / "force-new.json"
PACKAGES = ("openstack", "digitalocean", "cloudflare", "kubernetes", "random", "tls")

# Outputs the real providers mark sensitive, so the bridge returns them as secrets:
# random v3.9.0 resource_password.go (result, bcrypt_hash: Sensitive), tls v4.2.1
# resource_private_key.go (private_key_pem, _openssh, _pem_pkcs8: Sensitive), cloudflare
# v5.22.0 internal/services/api_token/schema.go (value: Sensitive).
SECRET_OUTPUTS = {
    "random:index/randomPassword:RandomPassword": ("result", "bcryptHash"),
    "tls:index/privateKey:PrivateKey": ("privateKeyPem", "privateKeyPemPkcs8", "privateKeyOpenssh"),
    "cloudflare:index/apiToken:ApiToken": ("value",),
}
_MISSING = object()

# With this set, every droplet after a name's first gets addresses of its own: DigitalOcean
# assigns a new droplet its public and VPC IPv4 at creation and a destroyed droplet's go
# with it; only a Reserved IP is a static address that moves between droplets
# (https://docs.digitalocean.com/products/networking/reserved-ips/, "publicly-accessible
# static IPv4 ... addresses", "configurations requiring movable addresses"). Unset, a name
# keeps its addresses (the offline render's model, scripts/offline.py ``fake_outputs``).
FRESH_ADDRESSES_ENV = "MULTICLOUD_FAKE_FRESH_ADDRESSES"
DROPLET = "digitalocean:index/droplet:Droplet"
DROPLET_ADDRESSES = {"ipv4Address": "198.51.100", "ipv4AddressPrivate": "10.116.0"}


def plugin_version(package: str) -> str:
    """The plugin version the package's Python SDK asks the engine for: its
    ``pulumi-plugin.json`` (found without importing the SDK, which is slow)."""
    spec = importlib.util.find_spec(f"pulumi_{package}")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"pulumi_{package} is not installed in this Python ({sys.executable})")
    path = Path(next(iter(spec.submodule_search_locations))) / "pulumi-plugin.json"
    version: str = json.loads(path.read_text())["version"]
    return version


@cache
def force_new() -> dict[str, list[str]]:
    """reference/force-new.json: type -> the property paths whose change replaces."""
    types = json.loads(FORCE_NEW.read_text())["types"]
    return {t: list(entry["force_new"]) for t, entry in types.items()}


# --- values in wire form ------------------------------------------------------------------


def from_struct(struct: struct_pb2.Struct | None) -> dict[str, Any]:
    return json_format.MessageToDict(struct) if struct is not None else {}


def to_struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    return json_format.ParseDict(dict(value), struct_pb2.Struct())


def secret(value: Any) -> dict[str, Any]:
    return {SIG_KEY: SECRET_SIG, "value": value}


def has_unknown(value: Any) -> bool:
    if value == UNKNOWN:
        return True
    if isinstance(value, dict):
        return any(has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(has_unknown(v) for v in value)
    return False


def at_path(value: Any, path: str) -> Any:
    """The value at a dotted property path (``metadata.name``), through secrets."""
    for part in path.split("."):
        value = reveal(value)
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _set_path(target: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        child = target.get(part)
        if not isinstance(child, dict):
            return
        target = child
    if value is _MISSING:
        target.pop(last, None)
    else:
        target[last] = value


def _rewrap(model: Mapping[str, Any], inputs: Mapping[str, Any], type_: str) -> dict[str, Any]:
    """``model`` (plain values) with the inputs' own values (secret or not) where the model
    kept them, and secrets where the provider marks an output sensitive or its input was."""
    out: dict[str, Any] = {}
    for key, value in model.items():
        given = inputs.get(key, _MISSING)
        if given is not _MISSING and reveal(given) == value:
            out[key] = given
        elif key in SECRET_OUTPUTS.get(type_, ()) or is_secret(given):
            out[key] = secret(value)
        else:
            out[key] = value
    return out


# --- what the clouds compute ----------------------------------------------------------------


def cloud_outputs(
    type_: str, name: str, inputs: Mapping[str, Any], previous: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A resource's outputs after a create (``previous`` None) or an update: the offline
    render's model (scripts/offline.py ``fake_outputs``), with real random values and keys,
    which an update keeps (every input that would change them forces a new resource)."""
    plain = reveal(dict(inputs))
    model = fake_outputs(type_, name, plain)
    if type_ == "random:index/randomPassword:RandomPassword":
        kept = reveal(previous.get("result")) if previous else None
        model["result"] = kept if isinstance(kept, str) else generate.random_string(plain)
    elif type_ == "tls:index/privateKey:PrivateKey":
        keys = [k for k in generate.private_key({"algorithm": "ED25519"}) if k != "id"]
        if previous and all(k in previous for k in keys):
            model |= {k: reveal(previous[k]) for k in keys}
        else:
            model |= {k: v for k, v in generate.private_key(plain).items() if k != "id"}
    return _rewrap(model, inputs, type_)


def preview_outputs(type_: str, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """A preview's outputs: the inputs, and every output the cloud would compute unknown."""
    try:
        model = fake_outputs(type_, name, reveal(dict(inputs)))
    except (KeyError, TypeError, ValueError, AttributeError):  # unknown inputs the model reads
        model = {}
    computed = {k for k, v in model.items() if k not in inputs or reveal(inputs[k]) != v}
    computed |= set(SECRET_OUTPUTS.get(type_, ()))
    if type_ == "tls:index/privateKey:PrivateKey":
        computed |= {k for k in generate.private_key({"algorithm": "ED25519"}) if k != "id"}
    return dict(inputs) | {k: UNKNOWN for k in computed}


def diff(
    type_: str, old_inputs: Mapping[str, Any], new_inputs: Mapping[str, Any], ignore: list[str]
) -> provider_pb2.DiffResponse:
    """Changed top-level inputs, and replacement where a force-new path changed (an unknown
    new value counts as a change, as in the bridge's plan)."""
    news = copy.deepcopy(dict(new_inputs))
    for path in ignore:  # the engine applied these already; the providers do it again
        _set_path(news, path, at_path(old_inputs, path))
    changed = sorted(
        k for k in set(old_inputs) | set(news) if reveal(old_inputs.get(k)) != reveal(news.get(k))
    )
    replaces = [
        path
        for path in force_new().get(type_, [])
        if reveal(at_path(old_inputs, path)) != reveal(at_path(news, path))
        or has_unknown(at_path(news, path))
    ]
    replaced_keys = {p.split(".")[0] for p in replaces}
    kind = provider_pb2.PropertyDiff
    detailed = {
        k: kind(kind=kind.UPDATE_REPLACE if k in replaced_keys else kind.UPDATE, inputDiff=True)
        for k in changed
    }
    return provider_pb2.DiffResponse(
        changes=provider_pb2.DiffResponse.DIFF_SOME
        if changed
        else provider_pb2.DiffResponse.DIFF_NONE,
        diffs=changed,
        replaces=replaces,
        detailedDiff=detailed,
        hasDetailedDiff=True,
        deleteBeforeReplace=_kubernetes_delete_first(type_, old_inputs, news, replaces),
    )


def _kubernetes_delete_first(
    type_: str, olds: Mapping[str, Any], news: Mapping[str, Any], replaces: list[str]
) -> bool:
    """pulumi-kubernetes v4.32.0 provider.go ``Diff``: an object the program named itself
    (not autonamed) that keeps its name and namespace must be deleted before its replacement
    is created (two objects cannot share a name)."""
    if not type_.startswith("kubernetes:") or type_ == "kubernetes:helm.sh/v3:Release":
        return False
    annotations = reveal(at_path(news, "metadata.annotations"))
    autonamed = isinstance(annotations, dict) and annotations.get("pulumi.com/autonamed") == "true"
    same = all(
        reveal(at_path(olds, p)) == reveal(at_path(news, p))
        for p in ("metadata.name", "metadata.namespace")
    )
    return (
        bool(replaces) and at_path(news, "metadata.name") is not _MISSING and not autonamed and same
    )


def _active_cluster(config: Mapping[str, Any]) -> Any:
    """The kubeconfig's active cluster entry (its current context's), None if it has none."""
    import yaml

    try:
        document = yaml.safe_load(str(reveal(config.get("kubeconfig")) or ""))
    except yaml.YAMLError:
        return None
    if not isinstance(document, dict):
        return None
    context = str(config.get("context") or document.get("current-context") or "")
    contexts = {c.get("name"): c.get("context", {}) for c in document.get("contexts") or []}
    name = config.get("cluster") or contexts.get(context, {}).get("cluster")
    clusters = {c.get("name"): c.get("cluster") for c in document.get("clusters") or []}
    if name is None and len(clusters) == 1:
        return next(iter(clusters.values()))
    return clusters.get(name)


def kubernetes_config_replaces(
    olds: Mapping[str, Any], news: Mapping[str, Any], changed: list[str]
) -> list[str]:
    """What pulumi-kubernetes replaces its provider on (provider/pkg/provider/provider.go
    ``DiffConfig``): a changed ``clusterIdentifier``; else, unless that is set and unchanged
    (then nothing), an unknown ``kubeconfig``/``context``/``cluster`` or a change of the
    kubeconfig's active cluster (``getActiveClusterFromConfig``: its server among others).
    Replacing the provider replaces every object it manages (step_generator.go
    ``providerChanged``)."""
    key = "clusterIdentifier"
    if key in olds and key in news and olds[key] != news[key]:
        return [key]
    if key in olds and key in news:
        return []  # the identifier is the cluster's identity: nothing else replaces
    unknown = [k for k in ("kubeconfig", "context", "cluster") if news.get(k) == UNKNOWN]
    if unknown:
        return unknown[:1]
    old_cluster, new_cluster = _active_cluster(olds), _active_cluster(news)
    if old_cluster is not None and new_cluster is not None and old_cluster != new_cluster:
        return [k for k in ("kubeconfig", "context", "cluster") if k in changed]
    return []


def kubernetes_check(
    type_: str, name: str, olds: Mapping[str, Any], news: dict[str, Any], seed: bytes
) -> dict[str, Any]:
    """pulumi-kubernetes v4.32.0 provider.go ``Check``: an object without ``metadata.name``
    keeps its old autoname, or gets ``<resource name>-<8 hex>`` from the engine's random seed
    (metadata/naming.go ``AssignNameIfAutonamable``) and the ``pulumi.com/autonamed`` mark."""
    if not type_.startswith("kubernetes:") or type_ == "kubernetes:helm.sh/v3:Release":
        return news
    metadata = news.get("metadata")
    if not isinstance(metadata, dict) or "name" in metadata:
        return news
    old_name = at_path(olds, "metadata.name")
    suffix = hashlib.sha256(seed or name.encode()).hexdigest()[:8]
    metadata["name"] = old_name if isinstance(old_name, str) else f"{name}-{suffix}"
    annotations = metadata.setdefault("annotations", {})
    if isinstance(annotations, dict):
        annotations["pulumi.com/autonamed"] = "true"
    return news


# --- the gRPC service ---------------------------------------------------------------------

F = TypeVar("F", bound=Callable[..., Any])


def _answers_errors(method: F) -> F:
    """A CloudError becomes its gRPC status; anything else UNKNOWN with the traceback, which
    the engine shows as the resource's error."""

    @wraps(method)
    def wrapper(self: FakeProvider, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except CloudError as err:
            context.abort(grpc.StatusCode[err.code], str(err))
        except Exception:  # the engine reports it against the resource
            context.abort(grpc.StatusCode.UNKNOWN, traceback.format_exc())

    return wrapper  # type: ignore[return-value]


def _name(request: Any) -> str:
    return str(request.name or request.urn.rsplit("::", 1)[-1])


class FakeProvider(provider_pb2_grpc.ResourceProviderServicer):
    def __init__(self, package: str, cloud: FakeCloud | None = None) -> None:
        if package not in PACKAGES:
            raise ValueError(f"no stand-in for package {package!r}; one of {', '.join(PACKAGES)}")
        self.package = package
        self.version = plugin_version(package)
        self._cloud = cloud

    @property
    def cloud(self) -> FakeCloud:
        if self._cloud is None:  # from the environment, when the engine starts the plugin
            self._cloud = FakeCloud()
        return self._cloud

    # --- plugin and configuration ---

    def Handshake(self, request: Any, context: Any) -> Any:
        return provider_pb2.ProviderHandshakeResponse(accept_secrets=True, accept_resources=True)

    def GetPluginInfo(self, request: Any, context: Any) -> Any:
        return plugin_pb2.PluginInfo(version=self.version)

    def GetSchema(self, request: Any, context: Any) -> Any:
        # The engine asks for a schema only for codegen and conversion, not to run a program.
        schema = {"name": self.package, "version": self.version, "resources": {}, "functions": {}}
        return provider_pb2.GetSchemaResponse(schema=json.dumps(schema))

    def CheckConfig(self, request: Any, context: Any) -> Any:
        return provider_pb2.CheckResponse(inputs=request.news)

    def DiffConfig(self, request: Any, context: Any) -> Any:
        olds = from_struct(request.old_inputs) or from_struct(request.olds)
        news = from_struct(request.news)
        keys = set(olds) | set(news)
        changed = sorted(
            k for k in keys if k != "version" and reveal(olds.get(k)) != reveal(news.get(k))
        )
        changes = (
            provider_pb2.DiffResponse.DIFF_SOME if changed else provider_pb2.DiffResponse.DIFF_NONE
        )
        replaces = (
            kubernetes_config_replaces(olds, news, changed) if self.package == "kubernetes" else []
        )
        return provider_pb2.DiffResponse(changes=changes, diffs=changed, replaces=replaces)

    def Configure(self, request: Any, context: Any) -> Any:
        return provider_pb2.ConfigureResponse(
            acceptSecrets=True, supportsPreview=True, acceptResources=True
        )

    def Cancel(self, request: Any, context: Any) -> Any:
        return empty_pb2.Empty()

    # --- resources ---

    @_answers_errors
    def Check(self, request: Any, context: Any) -> Any:
        news = from_struct(request.news)
        if self.package == "kubernetes":
            olds = from_struct(request.olds)
            news = kubernetes_check(request.type, _name(request), olds, news, request.randomSeed)
        return provider_pb2.CheckResponse(inputs=to_struct(news))

    @_answers_errors
    def Diff(self, request: Any, context: Any) -> Any:
        old_inputs = from_struct(request.old_inputs) or from_struct(request.olds)
        news = from_struct(request.news)
        return diff(request.type, old_inputs, news, list(request.ignoreChanges))

    @_answers_errors
    def Create(self, request: Any, context: Any) -> Any:
        inputs = from_struct(request.properties)
        type_, name = request.type, _name(request)
        if request.preview:
            return provider_pb2.CreateResponse(
                properties=to_struct(preview_outputs(type_, name, inputs))
            )
        try:
            outputs = cloud_outputs(type_, name, inputs)
        except ValueError as err:  # what the provider refuses (e.g. a proxied record's ttl)
            raise CloudError(f"{type_} {name}: {err}", "INVALID_ARGUMENT") from err
        instance = self.cloud.created(name) + 1 if type_ == DROPLET else 1
        if instance > 1 and os.environ.get(FRESH_ADDRESSES_ENV):  # a new droplet's own
            outputs |= {
                k: _address(kind, f"{name}#{instance}") for k, kind in DROPLET_ADDRESSES.items()
            }
        id_ = self.cloud.create(self.package, type_, name, request.urn, outputs)
        return provider_pb2.CreateResponse(id=id_, properties=to_struct(outputs))

    @_answers_errors
    def Update(self, request: Any, context: Any) -> Any:
        olds, news = from_struct(request.olds), from_struct(request.news)
        type_, name = request.type, _name(request)
        if request.preview:
            outputs = {k: v for k, v in olds.items() if k not in news} | news
            return provider_pb2.UpdateResponse(properties=to_struct(outputs))
        outputs = cloud_outputs(type_, name, news, previous=olds)
        if type_ == DROPLET and os.environ.get(FRESH_ADDRESSES_ENV):  # a droplet keeps its own
            outputs |= {k: olds[k] for k in DROPLET_ADDRESSES if k in olds}
        self.cloud.update(self.package, type_, name, request.urn, request.id, outputs)
        return provider_pb2.UpdateResponse(properties=to_struct(outputs))

    @_answers_errors
    def Read(self, request: Any, context: Any) -> Any:
        type_, name = request.type, _name(request)
        stored = self.cloud.read(self.package, type_, name, request.urn, request.id)
        if stored is None:  # gone: an empty id tells the engine to drop it from the state
            return provider_pb2.ReadResponse()
        if type_.startswith("cloudflare:"):
            model = fake_cloudflare.refreshed_state(type_, reveal(stored))
            stored = _rewrap(model, stored, type_)
        inputs = from_struct(request.inputs)
        return provider_pb2.ReadResponse(
            id=request.id, properties=to_struct(stored), inputs=to_struct(inputs)
        )

    @_answers_errors
    def Delete(self, request: Any, context: Any) -> Any:
        self.cloud.delete(self.package, request.type, _name(request), request.urn, request.id)
        return empty_pb2.Empty()

    @_answers_errors
    def Invoke(self, request: Any, context: Any) -> Any:
        if not request.tok.startswith(f"{self.package}:"):
            raise CloudError(f"unknown function {request.tok}", "INVALID_ARGUMENT")
        result = fake_call(request.tok, reveal(from_struct(request.args)))
        if not result:
            raise CloudError(f"the stand-in does not model function {request.tok}", "UNIMPLEMENTED")
        return provider_pb2.InvokeResponse(**{"return": to_struct(result)})


def serve(package: str) -> None:
    """Serve on a free loopback port and print it on stdout, the engine's plugin protocol
    (pkg/v3 resource/plugin/plugin.go ``newPlugin`` reads the port from the first line)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=_GRPC_CHANNEL_OPTIONS)
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(FakeProvider(package), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    Event().wait()

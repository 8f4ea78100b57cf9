"""Write docs/config-reference.md from Pulumi.yaml and the config models (`make docs`).

Every key of the stack config, as ``pulumi config set --path`` names it: its type, default,
allowed values and bounds (from the pydantic field: ``Literal`` values, ``ge``/``le``,
``min_length``/``max_length``), and what it does (``Field(description=...)``; for the
scalar keys Pulumi.yaml declares, Pulumi.yaml's ``description``). Secrets get the
``pulumi config set --secret`` command and when a stack needs them.

The output is a pure function of the models and Pulumi.yaml: running it twice gives the
same bytes, and ``tests/scripts/test_config_reference.py`` fails when the committed file differs.
A field without a description is an error here, so every new key gets documented.

    python -m scripts.config_reference            # write docs/config-reference.md
    python -m scripts.config_reference --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from components.config import (
    CONDITIONAL_SECRETS,
    DECLARED_SECRETS,
    ClusterSettings,
    OpenStackSiteConfig,
    openstack_secret_key,
)
from components.config.model import NAMESPACE, Cidr

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "config-reference.md"
REGENERATE = "make docs"


@dataclass(frozen=True)
class SecretKey:
    """A secret config key: when a stack needs it, and what to pass to ``--secret``."""

    key: str
    needed_when: str
    value: str  # what follows the key on the command line
    needed: Callable[[ClusterSettings], bool]


def _has_digitalocean(s: ClusterSettings) -> bool:
    return any(site.kind == "digitalocean" for site in s.sites.values())


def _has_cloudflare(s: ClusterSettings) -> bool:
    return s.entrypoint is not None and s.entrypoint.cloudflare is not None


def _has_s3(s: ClusterSettings) -> bool:
    return s.rke.etcd.s3 is not None


# The conditions components/config/read.py `read_secrets` applies, as sentences; the
# tests check both agree for every committed stack.
SECRETS: tuple[SecretKey, ...] = (
    SecretKey("zerotierToken", "every stack", "<ZeroTier Central API token>", lambda s: True),
    SecretKey("sshPrivateKey", "every stack", "< ~/.ssh/multicloud", lambda s: True),
    SecretKey(
        "digitaloceanToken",
        "a site of `kind: digitalocean`",
        "<DigitalOcean API token>",
        _has_digitalocean,
    ),
    SecretKey(
        "cloudflareApiToken",
        "`entrypoint.cloudflare` is set",
        "<token with Zone:Read, DNS:Edit, API Tokens:Edit>",
        _has_cloudflare,
    ),
    SecretKey("etcdS3AccessKey", "`rke.etcd.s3` is set", "<S3 access key>", _has_s3),
    SecretKey("etcdS3SecretKey", "`rke.etcd.s3` is set", "<S3 secret key>", _has_s3),
)
OPENSTACK_SECRET = (
    "<site>OpenstackSecret",
    "site `<site>` has `auth` (explicit OpenStack credentials); `<site>` in camelCase",
    "<password or application credential secret>",
)


class ReferenceError(ValueError):
    """The models cannot be documented as they are (e.g. a field without a description)."""


def secret_command(key: str, value: str, stack: str | None = None) -> str:
    """The command that sets one secret, safe to paste into a shell.

    ``value`` is either a redirection (``< ~/.ssh/multicloud``: Pulumi reads a multi-line
    value from stdin) or a ``<placeholder>``, which never goes on the command line: the
    command omits the value, so Pulumi prompts for it (``pulumi config set`` docs: "If a
    value is not present on the command line, pulumi will prompt for the value") and the
    secret stays out of the shell's history; the placeholder becomes a comment, e.g.
    ``pulumi config set --secret zerotierToken  # prompts for: ZeroTier Central API token``.
    """
    target = f" --stack {stack}" if stack else ""
    command = f"pulumi config set{target} --secret {key}"
    if value.startswith("< "):
        return f"{command} {value}"
    return f"{command}  # prompts for: {value.strip('<>')}"


def stack_secrets(settings: ClusterSettings) -> list[tuple[str, str]]:
    """``(key, value hint)`` of every secret this stack needs, in the order of ``SECRETS``."""
    needed = [(s.key, s.value) for s in SECRETS if s.needed(settings)]
    for name, site in settings.sites.items():
        if isinstance(site, OpenStackSiteConfig) and site.auth is not None:
            needed.append((openstack_secret_key(name), OPENSTACK_SECRET[2]))
    return needed


# --- describing a pydantic field -------------------------------------------------------


def _strip_none(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) < len(get_args(annotation)):
            inner = args[0] if len(args) == 1 else Union[tuple(args)]  # noqa: UP007
            return inner, True
    return annotation, False


_CIDR_CHECKS = get_args(Cidr)[1:]  # the validators that make a string a `Cidr`


def _is_cidr(metadata: Sequence[Any]) -> bool:
    return any(m in _CIDR_CHECKS for m in metadata)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models a field holds, directly or inside lists, maps and unions."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        found += _models_in(arg)
    return found


def type_name(annotation: Any, metadata: Sequence[Any] = ()) -> str:
    """A reader's name for a field's type: ``string``, ``list of CIDR``, ``object`` ..."""
    annotation, _ = _strip_none(annotation)
    if get_origin(annotation) is typing.Annotated:
        inner, *extra = get_args(annotation)
        return type_name(inner, [*metadata, *extra])
    origin = get_origin(annotation)
    if origin is Literal:
        kinds = {type(v) for v in get_args(annotation)}
        return "string" if kinds == {str} else " or ".join(sorted(k.__name__ for k in kinds))
    if origin in (Union, types.UnionType):
        if _models_in(annotation) and all(_models_in(a) for a in get_args(annotation)):
            return "object"
        return " or ".join(type_name(a) for a in get_args(annotation))
    if origin in (list, tuple):
        return f"list of {type_name(get_args(annotation)[0])}"
    if origin is dict:
        return f"map of name to {type_name(get_args(annotation)[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    if annotation is str and _is_cidr(metadata):
        return "CIDR"
    names = {str: "string", int: "integer", bool: "boolean", float: "number"}
    if annotation in names:
        return names[annotation]
    raise ReferenceError(f"no reader's name for the type {annotation!r}")


def _bounds(metadata: Sequence[Any], unit: tuple[str, str]) -> list[str]:
    """Numeric bounds and lengths; ``unit`` is (singular, plural), e.g. ("entry", "entries")."""
    out = []
    low = next((m.min_length for m in metadata if isinstance(m, annotated_types.MinLen)), None)
    high = next((m.max_length for m in metadata if isinstance(m, annotated_types.MaxLen)), None)
    if low is not None and high is not None:
        out.append(f"{low} to {high} {unit[1]}")
    elif low is not None:
        out.append(f"at least {low} {unit[0] if low == 1 else unit[1]}")
    elif high is not None:
        out.append(f"at most {high} {unit[0] if high == 1 else unit[1]}")
    for m in metadata:
        if isinstance(m, annotated_types.Ge):
            out.append(f">= {m.ge}")
        elif isinstance(m, annotated_types.Gt):
            out.append(f"> {m.gt}")
        elif isinstance(m, annotated_types.Le):
            out.append(f"<= {m.le}")
        elif isinstance(m, annotated_types.Lt):
            out.append(f"< {m.lt}")
    return out


def allowed(field: FieldInfo) -> str:
    """Allowed values (``Literal``) and bounds, or an empty string."""
    annotation, _ = _strip_none(field.annotation)
    parts = []
    if get_origin(annotation) is Literal:
        parts.append(", ".join(f"`{v}`" for v in get_args(annotation)))
    unit = ("character", "characters") if annotation is str else ("entry", "entries")
    parts += _bounds(field.metadata, unit)
    return "; ".join(parts)


def _value(value: Any) -> str:
    if isinstance(value, BaseModel):
        changed = value.model_dump(by_alias=True, exclude_defaults=True, mode="json")
        return f"`{json.dumps(changed)}`, the rest as below" if changed else "as below"
    if value is None:
        return "unset"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    if isinstance(value, tuple):
        value = list(value)
    return f"`{json.dumps(value)}`"


def default(field: FieldInfo) -> str:
    """The default as the reader would write it, or **required**."""
    if field.default is not PydanticUndefined:
        return _value(field.default)
    if field.default_factory is not None:
        return _value(field.default_factory())  # type: ignore[call-arg]
    return "**required**"


# --- walking the models ----------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    path: str
    type: str
    default: str
    allowed: str
    description: str


@dataclass(frozen=True)
class Section:
    title: str
    anchor: str
    intro: str
    rows: tuple[Row, ...]


def _alias(name: str, field: FieldInfo) -> str:
    return field.serialization_alias or field.alias or name


def _doc(model: type[BaseModel]) -> str:
    text = (model.__doc__ or "").strip()
    return " ".join(text.split("\n\n")[0].split())


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    keep = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return keep.replace(" ", "-")


def _walk(model: type[BaseModel], prefix: str, title: str, missing: list[str]) -> Iterator[Section]:
    rows = []
    nested: list[tuple[type[BaseModel], str]] = []
    fields = sorted(model.model_fields.items(), key=lambda item: item[0] != "kind")
    for name, field in fields:  # the discriminator first, then declaration order
        key = _alias(name, field)
        path = f"{prefix}.{key}"
        description = " ".join((field.description or "").split())
        if not description:
            missing.append(f"{model.__module__}.{model.__name__}.{name} ({path})")
        kind = type_name(field.annotation, field.metadata)
        models = _models_in(field.annotation)
        if models:
            nested += [(sub, path) for sub in models]
            kind += f", see [`{path}`](#{_anchor(path)})"
        rows.append(Row(f"`{path}`", kind, default(field), allowed(field), description))
    heading = title if title.startswith("`") else f"`{title}`"
    yield Section(heading, _anchor(title), _doc(model), tuple(rows))
    for sub, path in nested:
        yield from _walk(sub, path, path, missing)


def _pulumi_schema() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load((ROOT / "Pulumi.yaml").read_text(encoding="utf-8"))
    schema: dict[str, dict[str, Any]] = doc.get("config") or {}
    return schema


def _pulumi_type(declared: dict[str, Any]) -> str:
    if declared.get("type") == "array":
        return f"list of {declared.get('items', {}).get('type', 'value')}"
    return str(declared.get("type", "string"))


def top_level(missing: list[str]) -> tuple[Section, list[tuple[type[BaseModel], str]]]:
    """The top-level keys: Pulumi.yaml's declared scalars merged with ``ClusterSettings``."""
    schema = _pulumi_schema()
    rows = []
    nested: list[tuple[type[BaseModel], str]] = []
    for name, field in ClusterSettings.model_fields.items():
        key = _alias(name, field)
        declared = schema.get(key)
        models = _models_in(field.annotation)
        if declared is not None:  # what `pulumi config` itself knows about the key
            kind = _pulumi_type(declared)
            item = (get_args(field.annotation) or (None,))[0]
            if kind == "list of string" and _is_cidr(get_args(item)[1:]):
                kind = "list of CIDR"
            elif _is_cidr(field.metadata):
                kind = "CIDR"
            text = " ".join(str(declared.get("description", "")).split())
            value = _value(declared["default"]) if "default" in declared else "**required**"
        else:
            kind = type_name(field.annotation, field.metadata)
            text = " ".join((field.description or "").split())
            value = default(field)
        if not text:
            missing.append(f"Pulumi.yaml or ClusterSettings.{name} ({key})")
        if key == "sites":
            links = ", ".join(
                f"[{site_title(m)}](#{_anchor(site_title(m))})" for m in _site_models()
            )
            kind += f", see {links}"
        elif len(models) == 1:
            kind += f", see [`{key}`](#{_anchor(key)})"
            nested.append((models[0], key))
        rows.append(Row(f"`{key}`", kind, value, allowed(field), text))
    for key, declared in schema.items():
        if key not in {r.path.strip("`") for r in rows} and not declared.get("secret"):
            missing.append(f"Pulumi.yaml declares {key}, which ClusterSettings does not read")
    intro = (
        "Scalar keys are declared in `Pulumi.yaml` (so `pulumi config` knows their type and "
        "default); structured keys are read as objects and validated by the program."
    )
    return Section("Top-level keys", _anchor("Top-level keys"), intro, tuple(rows)), nested


def _site_models() -> list[type[BaseModel]]:
    sites = ClusterSettings.model_fields["sites"].annotation
    return _models_in(get_args(sites)[1])


def site_title(model: type[BaseModel]) -> str:
    kind = get_args(model.model_fields["kind"].annotation)[0]
    return f"`sites.<name>` (kind: {kind})"


def sections() -> list[Section]:
    """Every section of the reference, in the order the document shows them."""
    missing: list[str] = []
    top, nested = top_level(missing)
    out = [top]
    for model in _site_models():
        title = site_title(model)
        out += _walk(model, "sites.<name>", title, missing)
    for model, key in nested:
        out += _walk(model, key, key, missing)
    if missing:
        raise ReferenceError(
            "these config fields have no description (add Field(description=...)):\n  "
            + "\n  ".join(missing)
        )
    return out


# --- the document ----------------------------------------------------------------------


def _cell(text: str) -> str:
    """Text for a table cell: pipes escaped, ``<`` escaped outside code spans."""
    parts = text.replace("|", "\\|").replace("\n", " ").split("`")
    return "`".join(
        p if i % 2 else re.sub(r"<(?=[A-Za-z/!?])", "&lt;", p) for i, p in enumerate(parts)
    )


def _table(rows: Sequence[Row]) -> list[str]:
    lines = [
        "| key path | type | default | allowed | what it does |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        cells = (r.path, r.type, r.default, r.allowed, r.description)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def _secrets_table() -> list[str]:
    schema = _pulumi_schema()
    declared = {k for k, v in schema.items() if v.get("secret")}
    if declared != set(DECLARED_SECRETS):
        raise ReferenceError(
            f"Pulumi.yaml's secret keys {sorted(declared)} differ from DECLARED_SECRETS "
            f"{sorted(DECLARED_SECRETS)}"
        )
    known = {s.key for s in SECRETS}
    if known != set(DECLARED_SECRETS) | set(CONDITIONAL_SECRETS):
        raise ReferenceError(
            "scripts/config_reference.py SECRETS must describe exactly DECLARED_SECRETS and "
            f"CONDITIONAL_SECRETS; missing {sorted(set(CONDITIONAL_SECRETS) - known)}"
        )
    lines = ["| key | needed when | set it with |", "| --- | --- | --- |"]
    for s in SECRETS:
        where = "declared in Pulumi.yaml (`secret: true`): " if s.key in declared else ""
        command = secret_command(s.key, s.value)
        lines.append(f"| `{s.key}` | {where}{_cell(s.needed_when)} | `{command}` |")
    key, when, value = OPENSTACK_SECRET
    # The command for an example site: `<site>` pasted into a shell is a redirection.
    example = openstack_secret_key("home")
    command = f"{secret_command(example, value)}` (site `home`)"
    lines.append(f"| `{key}` | {_cell(when)} | `{command} |")
    return lines


def render() -> str:
    """The whole of docs/config-reference.md."""
    out = [
        "# Stack config reference",
        "",
        f"<!-- Generated by `{REGENERATE}` (scripts/config_reference.py) from Pulumi.yaml and "
        "the config models. Do not edit by hand. -->",
        "",
        f"Every key lives in the `{NAMESPACE}` namespace of `Pulumi.<stack>.yaml`. Set a "
        "nested key with its path, e.g. `pulumi config set --path 'sites.home.workers' 3` "
        "or `pulumi config set --path 'adminCidrs[0]' 198.51.100.0/24`; `<name>` is a site's "
        "name. A wrong key or value stops `pulumi preview`/`up` before anything is created, "
        "with the key path and what was expected.",
        "",
        "## Secrets",
        "",
        "Set once per stack, after `make init STACK=<stack>` (so they are encrypted for that "
        "stack). A secret the stack needs but lacks, or one stored without `--secret`, stops "
        "the run with the command to fix it. OpenStack credentials normally stay in "
        "`clouds.yaml` (`sites.<name>.cloud`).",
        "",
        *_secrets_table(),
    ]
    for section in sections():
        out += ["", f"## {section.title}", ""]
        if section.intro:
            out += [_cell(section.intro), ""]
        out += _table(section.rows)
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    try:
        text = render()
    except ReferenceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    current = args.out.read_text(encoding="utf-8") if args.out.exists() else None
    if args.check:
        if current != text:
            print(f"{args.out} is out of date: run `{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    if current != text:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Validate user-data as cloud-init 22.4.2's `cloud-init schema -c FILE` does, without cloud-init.

Debian 12 cloud images ship cloud-init 22.4.2. Its validator (``cloudinit/config/schema.py``
at tag 22.4.2 of canonical/cloud-init; each function here names the one it mirrors) runs
on the ``jsonschema`` library against the schema that release ships, vendored as
``reference/cloud-init-22.4.2-schema-cloud-config-v1.json`` (``reference/README.md``):
the ``#cloud-config`` header, YAML 1.1 loading, Draft 4 with deprecations that are
reported but never fail.

``python -m scripts.cloud_config_schema FILE...`` prints what ``cloud-init schema -c``
prints and exits the same way (1 if any file is invalid).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft4Validator, FormatChecker, ValidationError
from jsonschema.validators import create

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "reference" / "cloud-init-22.4.2-schema-cloud-config-v1.json"
CLOUD_CONFIG_HEADER = b"#cloud-config"  # schema.py: CLOUD_CONFIG_HEADER
DEPRECATED_KEY = "deprecated"  # schema.py: DEPRECATED_KEY
DEPRECATED_PREFIX = "DEPRECATED: "  # schema.py: DEPRECATED_PREFIX


class SchemaDeprecationError(ValidationError):
    """schema.py: ``SchemaDeprecationError``, a deprecation, never a failure."""


@dataclass
class SchemaResult:
    """What ``cloud-init schema -c`` finds in one file.

    ``errors`` and ``deprecations`` are ``(path, message)`` pairs, ``path`` dotted as
    cloud-init prints it (``users.0.ssh_authorized_keys``, or ``format-l1.c1`` for a
    header or YAML problem). ``fatal`` is set when cloud-init stops before the schema
    (a document that is not a mapping). ``valid`` is what its exit status says.
    """

    path: str
    errors: list[tuple[str, str]] = field(default_factory=list)
    deprecations: list[tuple[str, str]] = field(default_factory=list)
    fatal: str | None = None
    schema_ran: bool = False  # False: stopped at the header, the YAML or the top-level type

    @property
    def valid(self) -> bool:
        return not self.errors and self.fatal is None

    def report(self) -> str:
        """The text ``cloud-init schema -c`` prints for this file (stdout and stderr)."""
        if self.fatal is not None:
            return f"Error:\n{self.fatal}"
        parts = []
        if self.schema_ran and (self.errors or self.deprecations):
            # strict validation raised: validate_cloudconfig_file prints the deprecations
            # (an empty list too) before deciding whether to re-raise for errors.
            parts.append(_format(self.deprecations, "Cloud config schema deprecations: "))
        if self.errors:  # SchemaValidationError.__init__, then util.error's "Error:\n{}"
            message = _format(self.errors, "Cloud config schema errors: ")
            if self.deprecations:
                message += "\n\n" + _format(self.deprecations, "Cloud config schema deprecations: ")
            parts.append(f"Error:\n{message}")
        else:
            parts.append(f"Valid cloud-config: {self.path}")
        return "\n".join(parts)


def _format(problems: Sequence[tuple[str, str]], prefix: str) -> str:
    """schema.py: ``_format_schema_problems`` with its default ``", "`` separator."""
    return prefix + ", ".join(f"{path}: {message}" for path, message in problems)


# --- cloudinit/safeyaml.py: load() ---------------------------------------------------


class _CloudInitSafeLoader(yaml.SafeLoader):
    """safeyaml.py: ``_CustomSafeLoader``, PyYAML's YAML 1.1 ``SafeLoader`` plus one tag."""

    def construct_python_unicode(self, node: yaml.Node) -> Any:
        assert isinstance(node, yaml.ScalarNode)
        return super().construct_scalar(node)


_CloudInitSafeLoader.add_constructor(
    "tag:yaml.org,2002:python/unicode", _CloudInitSafeLoader.construct_python_unicode
)


# --- schema.py: get_jsonschema_validator() ---------------------------------------------


def _is_schema_byte_string(checker: Any, instance: Any) -> bool:
    """schema.py: ``is_schema_byte_string`` (``!!binary`` content counts as a string)."""
    return bool(Draft4Validator.TYPE_CHECKER.is_type(instance, "string")) or isinstance(
        instance, bytes
    )


def _add_deprecation_msg(description: str | None) -> str:
    """schema.py: ``_add_deprecation_msg``."""
    if description:
        return f"{DEPRECATED_PREFIX}{description}"
    return DEPRECATED_PREFIX.replace(":", ".").strip()


def _validator_deprecated(
    _validator: Any, deprecated: bool, _instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    """schema.py: ``_validator_deprecated``."""
    if deprecated:
        yield SchemaDeprecationError(_add_deprecation_msg(schema.get("description")))


def _anyOf(
    validator: Any, any_of: list[Any], instance: Any, _schema: Any
) -> Iterator[ValidationError]:
    """schema.py: ``_anyOf``: the first branch without errors wins; its deprecations pass on."""
    all_errors: list[ValidationError] = []
    all_deprecations: list[ValidationError] = []
    for index, subschema in enumerate(any_of):
        found = list(validator.descend(instance, subschema, schema_path=index))
        errs = [e for e in found if not isinstance(e, SchemaDeprecationError)]
        if not errs:
            all_deprecations.extend(e for e in found if isinstance(e, SchemaDeprecationError))
            break
        all_errors.extend(errs)
    else:
        yield ValidationError(
            f"{instance!r} is not valid under any of the given schemas", context=all_errors
        )
    yield from all_deprecations


def _oneOf(
    validator: Any, one_of: list[Any], instance: Any, _schema: Any
) -> Iterator[ValidationError]:
    """schema.py: ``_oneOf``: as ``_anyOf``, and a second matching branch is an error."""
    subschemas = enumerate(one_of)
    all_errors: list[ValidationError] = []
    all_deprecations: list[ValidationError] = []
    first_valid: Any = None
    for index, subschema in subschemas:
        found = list(validator.descend(instance, subschema, schema_path=index))
        errs = [e for e in found if not isinstance(e, SchemaDeprecationError)]
        if not errs:
            first_valid = subschema
            all_deprecations.extend(e for e in found if isinstance(e, SchemaDeprecationError))
            break
        all_errors.extend(errs)
    else:
        yield ValidationError(
            f"{instance!r} is not valid under any of the given schemas", context=all_errors
        )
    # upstream calls validator.is_valid(instance, s); jsonschema 4.26 deprecates passing
    # a schema there, and evolve(schema=s).is_valid(instance) is the same check.
    more_valid = [s for _, s in subschemas if validator.evolve(schema=s).is_valid(instance)]
    if more_valid:
        more_valid.append(first_valid)
        reprs = ", ".join(repr(schema) for schema in more_valid)
        yield ValidationError(f"{instance!r} is valid under each of {reprs}")
    else:
        yield from all_deprecations


def _is_valid(self: Any, instance: Any, _schema: Any = None) -> bool:
    """schema.py: the ``is_valid`` override, blind to deprecations."""
    validator = self if _schema is None else self.evolve(schema=_schema)
    errors = (
        e for e in validator.iter_errors(instance) if not isinstance(e, SchemaDeprecationError)
    )
    return next(errors, None) is None


@cache
def cloud_init_validator_class() -> Any:
    """The validator class cloud-init 22.4.2 builds (``get_jsonschema_validator``).

    ``version`` is left unset where upstream passes ``"draft4"``: with it, jsonschema
    registers the class as *the* Draft 4 validator of the whole process, which would change
    every other Draft 4 validation in the test run. It changes nothing about this class.
    """
    strict_metaschema = deepcopy(Draft4Validator.META_SCHEMA)
    strict_metaschema["additionalProperties"] = False
    strict_metaschema["properties"]["label"] = {"type": "string"}
    type_checker = Draft4Validator.TYPE_CHECKER.redefine("string", _is_schema_byte_string)
    validators = dict(Draft4Validator.VALIDATORS)
    validators[DEPRECATED_KEY] = _validator_deprecated
    validators["oneOf"] = _oneOf
    validators["anyOf"] = _anyOf
    cls = create(meta_schema=strict_metaschema, validators=validators, type_checker=type_checker)
    cls.is_valid = _is_valid
    return cls


@cache
def cloud_config_schema() -> dict[str, Any]:
    """The vendored schema (``get_schema`` reads the same file from cloud-init's package)."""
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return schema


def validate_cloud_config(config: dict[str, Any]) -> tuple[list[tuple[str, str]], ...]:
    """schema.py: ``validate_cloudconfig_schema(strict=True)`` on a loaded document.

    Returns ``(errors, deprecations)``, each a list of ``(dotted path, message)`` sorted
    by path as upstream sorts them.
    """
    validator = cloud_init_validator_class()(cloud_config_schema(), format_checker=FormatChecker())
    errors: list[tuple[str, str]] = []
    deprecations: list[tuple[str, str]] = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(e.path)):
        problem = (".".join(str(p) for p in error.path), error.message)
        (deprecations if isinstance(error, SchemaDeprecationError) else errors).append(problem)
    return errors, deprecations


def validate_cloud_config_file(path: Path | str) -> SchemaResult:
    """schema.py: ``validate_cloudconfig_file(path, schema, annotate=False)``.

    Never raises for bad content: header, YAML and schema problems are in the result.
    ``path`` is echoed as given, as cloud-init echoes its ``-c`` argument.
    """
    result = SchemaResult(str(path))
    content = Path(path).read_bytes()
    if not content.startswith(CLOUD_CONFIG_HEADER):
        message = f'File {path} needs to begin with "{CLOUD_CONFIG_HEADER.decode()}"'
        result.errors.append(("format-l1.c1", message))
        return result
    try:
        config = yaml.load(content, Loader=_CloudInitSafeLoader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        line = column = 1
        mark = getattr(err, "context_mark", None) or getattr(err, "problem_mark", None)
        if mark is not None:
            line, column = mark.line + 1, mark.column + 1
        result.errors.append((f"format-l{line}.c{column}", f"File {path} is not valid yaml. {err}"))
        return result
    if not isinstance(config, dict):
        result.fatal = "Cloud-config is not a YAML dict."
        return result
    result.errors, result.deprecations = validate_cloud_config(config)
    result.schema_ran = True
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="cloud-config files")
    args = parser.parse_args(argv)
    status = 0
    for path in args.files:
        result = validate_cloud_config_file(path)
        print(result.report(), file=sys.stdout if result.valid else sys.stderr)
        status |= 0 if result.valid else 1
    return status


if __name__ == "__main__":
    sys.exit(main())

"""Read Pulumi.yaml and Pulumi.<stack>.yaml exactly as the Pulumi CLI (v3.272.0) does.

The CLI parses stack files with go-yaml v3 (gopkg.in/yaml.v3 v3.0.1,
sdk/go/common/encoding/marshal.go): YAML 1.2's core schema with Go's number syntax
(yaml.v3 resolve.go ``resolve``: ``yes`` is a string, ``010`` is octal 8, ``1_000`` is
1000, a duplicate key is an error), then hands every value to the program as a string
(sdk/go/common/resource/config/object.go ``MarshalString``). PyYAML's parser gives the
structure; this module replaces its YAML 1.1 resolver with go-yaml's rules, refuses
duplicate keys, bounds nesting and alias expansion, and turns every YAML error into
``StackFileError`` naming file, line and column. tests/scripts/test_stack_yaml.py checks
it against the CLI's own loader built from its Go module.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import math
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_DEPTH = 64  # a stack file nests ~6 deep; go-yaml's own parser limit is 10,000
MAX_NODES = 100_000  # after alias expansion: a "billion laughs" document is refused

_LOADER_BASE: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class StackFileError(ValueError):
    """A stack or project file the Pulumi CLI would refuse, or that cannot be read."""


def _error(path: Path | str, node_or_mark: Any, message: str) -> StackFileError:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    return StackFileError(f"{where}: {message}")


# --- go-yaml v3's scalar resolution (resolve.go, resolve()) --------------------------------
_NULLS = {"", "~", "null", "Null", "NULL"}
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_SPECIAL_FLOATS = {
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_YAML_STYLE_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
# Go's strconv.ParseInt(s, 0, 64) syntax (after yaml.v3 removed every "_").
_GO_INT = re.compile(r"([-+]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)")
# yaml.v3 parseTimestamp's accepted layouts: a date, or a date and time.
_TIMESTAMP = re.compile(
    r"\d{4}-\d{1,2}-\d{1,2}"
    r"(?:(?:[Tt]|[ \t]+)\d{1,2}:\d{2}:\d{2}(?:\.\d*)?(?:[ \t]*(?:Z|[-+]\d{1,2}(?::\d{2})?))?)?"
)
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_INT64 = (-(2**63), 2**63 - 1)
# A backslash-slash escape: an odd run of backslashes before "/" (yaml.v3 scannerc.go,
# yaml_parser_scan_flow_scalar, has no case for '/'; PyYAML's ESCAPE_REPLACEMENTS does).
_SLASH_ESCAPE = re.compile(r"(?<!\\)(\\\\)*\\/")
_PLAIN = "!multicloud/plain"  # a plain scalar, resolved by resolve_plain when constructed
_TAGGED: dict[str, Any] = {
    "tag:yaml.org,2002:int": int,
    "tag:yaml.org,2002:float": (int, float),
    "tag:yaml.org,2002:bool": bool,
    "tag:yaml.org,2002:null": type(None),
}


def _go_int(text: str) -> int | None:
    match = _GO_INT.fullmatch(text)
    if not match:
        return None
    sign, digits = match.groups()
    if len(digits) > 1 and digits[0] == "0" and digits[1] not in "xXoObB":
        value = int(digits[1:], 8)  # Go base 0: a leading 0 is octal
    else:
        value = int(digits, 0)
    value = -value if sign == "-" else value
    if _INT64[0] <= value <= _INT64[1] or (sign != "-" and value < 2**64):  # int64, uint64
        return value
    return None


def resolve_plain(path: Path | str, node: ScalarNode) -> Any:
    """A plain (unquoted, untagged) scalar as go-yaml v3 decodes it into ``any``."""
    text: str = node.value
    if text in _NULLS:
        return None
    if text in _BOOLS:
        return _BOOLS[text]
    if text in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text]
    first = text[0]
    if first == ".":
        try:
            return float(text) if _YAML_STYLE_FLOAT.fullmatch(text) else text
        except ValueError:
            return text
    if first in "+-0123456789":
        if _TIMESTAMP.fullmatch(text):
            date = _DATE.fullmatch(text)
            if date is None:  # go-yaml reads a time; its text would be Go's time.String()
                raise _error(path, node, f"{text!r} reads as a date and time; quote it")
            try:
                day = datetime.date(*map(int, date.groups()))
            except ValueError:
                return text
            return datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC)
        plain = text.replace("_", "")
        integer = _go_int(plain)
        if integer is not None:
            return integer
        if _YAML_STYLE_FLOAT.fullmatch(plain):
            return float(plain)
        for prefix, base in (("0b", 2), ("-0b", 2), ("0o", 8), ("-0o", 8)):
            if plain.startswith(prefix) and re.fullmatch(r"[0-9a-fA-F]+", plain[len(prefix) :]):
                try:
                    value = int(plain[len(prefix) :], base)
                except ValueError:
                    break
                return -value if prefix.startswith("-") else value
    return text


class _GoYamlLoader(_LOADER_BASE):
    """PyYAML's parser with go-yaml v3's resolver and duplicate-key check."""

    path: Path | str = "<stack file>"
    text = ""  # the document, for the raw text of double-quoted scalars

    def construct_document(self, node: Node) -> Any:
        self._check_shape(node)
        return super().construct_document(node)

    def _check_shape(self, root: Node) -> None:
        """Nesting depth and the node count after alias expansion, both bounded."""
        expanded: dict[int, int] = {}

        def count(node: Node, depth: int) -> int:
            if depth > MAX_DEPTH:
                raise _error(self.path, node, f"nested deeper than {MAX_DEPTH} levels")
            if id(node) in expanded:  # an alias: its expansion counts again
                return expanded[id(node)]
            total = 1
            if isinstance(node, SequenceNode):
                total += sum(count(child, depth + 1) for child in node.value)
            elif isinstance(node, MappingNode):
                total += sum(count(k, depth + 1) + count(v, depth + 1) for k, v in node.value)
            if total > MAX_NODES:
                raise _error(self.path, node, f"expands to more than {MAX_NODES} nodes (aliases)")
            expanded[id(node)] = total
            return total

        count(root, 0)

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is ScalarNode and implicit[0]:  # plain: go-yaml's resolve() decides
            return "tag:yaml.org,2002:merge" if value == "<<" else _PLAIN
        if kind is ScalarNode:
            return "tag:yaml.org,2002:str"  # quoted, or the non-specific tag "!"
        return super().resolve(kind, value, implicit)

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        if isinstance(node, ScalarNode):
            return self._scalar(node)
        if isinstance(node, MappingNode) and not node.tag.startswith("tag:yaml.org,2002:"):
            node.tag = "tag:yaml.org,2002:map"  # a local tag: go-yaml decodes a map anyway
        if isinstance(node, SequenceNode) and not node.tag.startswith("tag:yaml.org,2002:"):
            node.tag = "tag:yaml.org,2002:seq"
        return super().construct_object(node, deep=deep)

    def _scalar(self, node: ScalarNode) -> Any:
        if node.style == '"' and _SLASH_ESCAPE.search(
            self.text[node.start_mark.index : node.end_mark.index]
        ):  # PyYAML takes YAML 1.2's "\/"; go-yaml's scanner knows no such escape
            raise _error(self.path, node, 'found unknown escape character "/" (write / alone)')
        tag = node.tag
        if tag == _PLAIN:
            return resolve_plain(self.path, node)
        if tag == "tag:yaml.org,2002:merge":
            return "<<"
        if tag == "tag:yaml.org,2002:binary":
            try:
                return base64.b64decode(node.value).decode()
            except (binascii.Error, UnicodeDecodeError) as err:
                raise _error(self.path, node, f"!!binary value is not base64 text: {err}") from None
        if tag == "tag:yaml.org,2002:timestamp":
            value = resolve_plain(self.path, node)
            if not isinstance(value, datetime.datetime):
                raise _error(self.path, node, f"cannot decode {node.value!r} as !!timestamp")
            return value
        wanted = _TAGGED.get(tag)
        if wanted is None:  # !!str, or a tag go-yaml cannot resolve: it keeps the text
            return node.value
        value = resolve_plain(self.path, node)
        if isinstance(value, bool) != (wanted is bool) or not isinstance(value, wanted):
            raise _error(self.path, node, f"cannot decode {node.value!r} as !!{tag[18:]}")
        return float(value) if tag.endswith(":float") else value

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[tuple[type, Any], Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key == "<<":
                continue
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise _error(self.path, key_node, "a mapping key must be a scalar")
            if (type(key), key) in seen:  # typed: Python's 1 == True, Go's are distinct
                line = seen[(type(key), key)].start_mark.line + 1
                raise _error(
                    self.path, key_node, f"mapping key {key!r} already defined at line {line}"
                )
            seen[(type(key), key)] = key_node
        self.flatten_mapping(node)  # merge keys (<<), as SafeConstructor does
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            # go-yaml keeps 1 and true apart; the CLI then names them as fmt %v does
            mapping[key if isinstance(key, str) else _go_key(key)] = self.construct_object(
                value_node, deep=deep
            )
        return mapping


def load(text: str, path: Path | str = "<stack file>") -> Any:
    """The document in ``text`` as go-yaml v3 reads it; ``StackFileError`` otherwise."""
    loader = _GoYamlLoader(text.removeprefix("\ufeff"))
    loader.path = path
    loader.text = text.removeprefix("\ufeff")
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or err.context or "invalid YAML"
        raise _error(path, mark, problem) from None
    except yaml.YAMLError as err:
        raise StackFileError(f"{path}: {err}") from None
    except RecursionError:
        raise StackFileError(f"{path}: nested too deeply to read") from None
    finally:
        loader.dispose()


def load_file(path: Path) -> Any:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise StackFileError(f"{path}: not UTF-8 text ({err})") from None
    return load(text, path)


def config_section(document: Any, project: str, path: Path | str) -> dict[str, Any]:
    """The stack file's ``config`` with every key namespaced as the CLI namespaces it
    (workspace/loaders.go stackConfigNamespacedWithProject: ``key`` is ``project:key``).
    ``key`` and ``project:key`` both given is refused: the CLI keeps either, by Go's map order."""
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise StackFileError(f"{path}: expected a mapping with a `config` key")
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise StackFileError(f"{path}: `config` must be a mapping of keys to values")
    values: dict[str, Any] = {}
    for key, value in config.items():
        full = str(key) if ":" in str(key) else f"{project}:{key}"
        if full in values:
            raise StackFileError(
                f"{path}: config key {full} is given twice (as {key!r} too); keep one"
            )
        values[full] = value
    return values


# --- values as the CLI hands them to the program (config/object.go MarshalString) -----------
def _go_time(value: datetime.datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S +0000 UTC")  # Go time.Time.String() in UTC


def _go_key(key: Any) -> str:
    """A map key as Go's fmt %v writes it (config/object.go unmarshalObject)."""
    if key is None:
        return "<nil>"
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def _go_json(value: Any, key: str) -> str:
    """``value`` as Go's encoding/json.Marshal writes it: compact, map keys sorted, floats
    in Go's shortest form, dates as Go's ``time.String`` (config/object.go, time.Time)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise StackFileError(f"{key}: {value} cannot be written as JSON (the CLI refuses it)")
        if value == 0:  # the CLI re-marshals the file (loaders.go): -0 comes back as int 0
            return "0"
        return _go_float_text(value)
    if isinstance(value, datetime.datetime):
        return _go_json(_go_time(value), key)
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        for char, escaped in _GO_JSON_ESCAPES.items():  # encoding/json's HTML-safe escapes
            text = text.replace(char, escaped)
        return text
    if isinstance(value, list):
        return "[" + ",".join(_go_json(v, key) for v in value) + "]"
    if isinstance(value, dict):  # go-yaml map keys become text (object.go, fmt %v)
        items = {_go_key(k): v for k, v in value.items()}
        return (
            "{"
            + ",".join(f"{_go_json(k, key)}:{_go_json(items[k], key)}" for k in sorted(items))
            + "}"
        )
    raise StackFileError(f"{key}: unsupported value {value!r}")


def _go_float_text(value: float) -> str:
    """Go encoding/json's text of a float64 (encode.go floatEncoder): shortest digits, plain
    notation unless below 1e-6 or from 1e21 on, where an exponent without padding."""
    if value != 0 and (abs(value) < 1e-6 or abs(value) >= 1e21):
        mantissa, exponent = repr(value).split("e")
        return f"{mantissa}e{exponent[0]}{int(exponent[1:])}"
    return format(Decimal(repr(value)).normalize(), "f")


def config_string(value: Any, key: str = "value") -> str:
    """A config value as the CLI passes it to the program: text unchanged, null as "",
    everything else as Go's encoding/json writes it (compact, keys sorted: so the program
    sees ``sites`` in name order, whatever order the file lists them in)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, datetime.datetime):
        return _go_time(value)
    return _go_json(value, key)


# encoding/json (encode.go, appendString with escapeHTML) writes these as \u escapes; they
# can only occur inside JSON strings, so replacing them in the text is exact.
_GO_JSON_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}

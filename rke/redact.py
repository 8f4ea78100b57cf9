"""Secrets out of the runner's log lines, whatever their encoding.

``rke`` and ``kubectl`` can echo a secret the runner holds (RKE logs an S3 access key in
plain text, ``services/etcd.go``) or one it was never told about (a kubeconfig's
``client-key-data``, a key from ``cluster.rkestate``), and not always as typed. So every
known secret is indexed in its encodings (``encodings``), a line loses every run of
characters that is a piece of one (``SPAN`` anywhere, ``EDGE`` at a line's ends), and
unknown secrets are learnt from what the runner reads (``learn_kubeconfig``,
``learn_rkestate``). The rules and their limits: docs/security.md#what-the-logs-can-show.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Any

import yaml

WINDOW = 12  # characters compared at once
STEP = 12  # an encoding is indexed by its WINDOW-character pieces at every STEP-th offset
# A piece this long of an encoding, anywhere in a line, always holds an indexed piece.
SPAN = WINDOW + STEP - 1
EDGE = 6  # a piece this long at a line's start or end (a split secret) is redacted too
REDACTED = "[redacted]"

_PEM_PRIVATE = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_KEY_VALUE = re.compile(
    r"(?i)((?:access_?key|secret_?key|password|passwd|token|private_?key|client-key-data"
    r"|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]{8,}"
)
_EDGE_STRIP = " \t\"'`,;:()[]{}<>"
# Field names whose values are secret in an RKE state (rancher/rke cluster/state.go
# FullState -> pki.CertificatePKI ``keyPEM``; rkeConfig's ``sshKey``, S3 ``accessKey`` /
# ``secretKey``, registry ``password``) or a kubeconfig. ``keyPath``, ``keyEnvName`` and
# ``certificatePEM`` are not secret and do not match.
_SECRET_FIELDS = re.compile(r"(?i)(key|keypem|token|password|secret|client-key-data)$")


LONG = 256  # a secret this long is a key file (PEM), not a token typed into a URL


def encodings(secret: str) -> set[str]:
    """The forms ``secret`` may take in a log line (each at least 1 character long).

    base64 is given for each of the three byte alignments the secret can have inside a
    longer base64 stream: the characters that depend only on the secret's own bytes
    (``_base64_cores``). Every secret is indexed as is, JSON/Go-escaped and in base64
    (standard alphabet); short ones (tokens, S3 keys, passwords: under ``LONG``) also in
    hex, URL- and form-encoded, and in base64's URL-safe alphabet. Key files do not travel
    in URLs or hex dumps, and skipping those forms for them keeps learning a state's
    dozen keys cheap.
    """
    data = secret.encode()
    forms = {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        secret.replace("\n", "\\n"),
    }
    short = len(secret) < LONG
    if short:
        forms |= {
            data.hex(),
            data.hex().upper(),
            urllib.parse.quote(secret, safe=""),
            urllib.parse.quote_plus(secret),
        }
    for core in _base64_cores(data):
        forms.add(core)
        if short:
            forms.add(core.translate(str.maketrans("+/", "-_")))
    for line in secret.splitlines():  # a multi-line secret (PEM) printed line by line
        if len(line.strip()) >= EDGE:
            forms.add(line.strip())
    return {f for f in forms if f}


def _base64_cores(data: bytes) -> Iterator[str]:
    """For a prefix of 0, 1 and 2 bytes: the base64 characters of ``prefix + data`` that
    depend on ``data`` alone (first ones from the prefix, last ones from what follows)."""
    for shift in range(3):
        encoded = base64.b64encode(bytes(shift) + data).decode().rstrip("=")
        head = (0, 2, 3)[shift]  # characters that also carry prefix bits
        total_bits = 8 * (shift + len(data))
        full = total_bits // 6  # characters made of data bits only up to here
        core = encoded[head:full]
        if core:
            yield core


class Redactor:
    """Call it on each line: ``redactor(line) -> line`` with every secret piece replaced."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # indexed WINDOW-character piece -> the encodings holding it, and where
        self._windows: dict[str, tuple[tuple[str, int], ...]] = {}
        self._whole: set[str] = set()  # encodings shorter than SPAN
        self._starts: set[str] = set()  # prefixes of encodings, EDGE..SPAN-1 long
        self._ends: set[str] = set()  # suffixes of encodings, EDGE..SPAN-1 long
        self._known: set[str] = set()
        self.add(*secrets)

    @classmethod
    def from_values(cls, values: Iterable[str | None]) -> Redactor:
        return cls(values)

    def __len__(self) -> int:
        """How many distinct secrets it knows."""
        return len(self._known)

    def add(self, *values: str | None) -> None:
        """Learn more secrets (empty values and ones shorter than 4 characters are skipped:
        too short to tell from ordinary text)."""
        for value in values:
            secret = (value or "").strip()
            if len(secret) < 4 or secret in self._known:
                continue
            self._known.add(secret)
            windows, whole, starts, ends = _index(secret)
            shared = windows.keys() & self._windows.keys()
            merged = {piece: self._windows[piece] + windows[piece] for piece in shared}
            self._windows.update(windows)
            self._windows.update(merged)
            self._whole |= whole
            self._starts |= starts
            self._ends |= ends

    def learn_kubeconfig(self, text: str | None) -> None:
        """Every user's client key (as stored and decoded), token and password."""
        try:
            doc = yaml.safe_load(text or "") or {}
        except yaml.YAMLError:
            return
        for user in doc.get("users") or [] if isinstance(doc, dict) else []:
            auth = (user or {}).get("user") or {}
            for name in ("client-key-data", "token", "password"):
                value = auth.get(name)
                if isinstance(value, str):
                    # base64 of a PEM is one of the PEM's own encodings: learn the PEM
                    self.add(*(_decoded(value) or [value]))

    def learn_rkestate(self, text: str | None) -> None:
        """Every private key, token, password and encryption secret of an RKE state."""
        try:
            doc = json.loads(text or "{}")
        except ValueError:
            return
        for key, value in _walk(doc):
            if not isinstance(value, str):
                continue
            if _PEM_PRIVATE.search(value) or _SECRET_FIELDS.search(key):
                self.add(value)
            if key == "encryptionConfig":  # EncryptionConfiguration YAML: keys[].secret
                self.add(*re.findall(r"(?m)^\s*secret:\s*(\S+)\s*$", value))

    def __call__(self, line: str) -> str:
        if _PEM_PRIVATE.search(line):
            return "[redacted private key material]"
        spans = self._spans(line)
        if spans:
            out, last = [], 0
            for start, end in spans:
                out += [line[last:start], REDACTED]
                last = end
            line = "".join([*out, line[last:]])
        return _KEY_VALUE.sub(lambda m: m.group(1) + REDACTED, line)

    def _spans(self, line: str) -> list[tuple[int, int]]:
        marks: list[tuple[int, int]] = []
        covered = 0  # a hit inside a run already found adds nothing
        for i in range(len(line) - WINDOW + 1):
            if i < covered:
                continue
            for form, at in self._windows.get(line[i : i + WINDOW], ()):
                start, end = i, i + WINDOW
                while (
                    start > 0
                    and at - (i - start) > 0
                    and line[start - 1] == form[at - (i - start) - 1]
                ):
                    start -= 1
                while (
                    end < len(line)
                    and at + (end - i) < len(form)
                    and line[end] == form[at + (end - i)]
                ):
                    end += 1
                marks.append((start, end))
                covered = max(covered, end)
        for whole in self._whole:
            start = line.find(whole)
            while start != -1:
                marks.append((start, start + len(whole)))
                start = line.find(whole, start + 1)
        body_start = len(line) - len(line.lstrip(_EDGE_STRIP))
        body_end = len(line.rstrip(_EDGE_STRIP))
        for k in range(SPAN - 1, EDGE - 1, -1):
            if body_end - k >= body_start and line[body_end - k : body_end] in self._starts:
                marks.append((body_end - k, body_end))
                break
        for k in range(SPAN - 1, EDGE - 1, -1):
            if body_start + k <= body_end and line[body_start : body_start + k] in self._ends:
                marks.append((body_start, body_start + k))
                break
        merged: list[tuple[int, int]] = []
        for start, end in sorted(marks):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged


Index = tuple[
    dict[str, tuple[tuple[str, int], ...]],  # piece -> ((encoding, offset), ...)
    frozenset[str],  # whole encodings
    frozenset[str],  # starts
    frozenset[str],  # ends
]


@functools.lru_cache(maxsize=256)
def _index(secret: str) -> Index:
    """One secret's index (callers copy from it, never change it); cached, because a run
    learns the same state's keys again each time RKE rewrites the state."""
    windows: dict[str, tuple[tuple[str, int], ...]] = {}
    whole: set[str] = set()
    starts: set[str] = set()
    ends: set[str] = set()
    for form in encodings(secret):
        if len(form) < SPAN:
            if len(form) >= 4:
                whole.add(form)
            continue
        for at in range(0, len(form) - WINDOW + 1, STEP):
            piece = form[at : at + WINDOW]
            windows[piece] = (*windows.get(piece, ()), (form, at))
        starts.update(form[:k] for k in range(EDGE, SPAN))
        ends.update(form[-k:] for k in range(EDGE, SPAN))
    return windows, frozenset(whole), frozenset(starts), frozenset(ends)


def _decoded(value: str) -> list[str]:
    """``value`` base64-decoded, when it is base64 of text (a kubeconfig's PEM)."""
    try:
        return [base64.b64decode(value, validate=True).decode()]
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return []


def _walk(node: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield str(k), v
            yield from _walk(v, str(k))
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, key)

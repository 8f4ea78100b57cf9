"""Redaction: a table of encodings of known secrets, none survives; secrets the runner was
not told about (a kubeconfig's client key, an RKE state's keys) are learnt and go too."""

from __future__ import annotations

import base64
import functools
import json
import urllib.parse
from collections.abc import Callable

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from rke.redact import EDGE, LONG, Redactor, encodings

S3_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzEXAMPLEKEY"  # has / and +: URL and base64 differ
S3_ACCESS = "DO00QWERTYUIOPASDFGH"


def _pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


SSH_KEY = _pem()
# An RSA key, like RKE's certificate keys: long enough to be indexed as a key file (LONG).
RSA_KEY = (
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    .decode()
)
assert len(SSH_KEY) < LONG <= len(RSA_KEY)


def b64(data: bytes, prefix: bytes = b"", suffix: bytes = b"") -> str:
    return base64.b64encode(prefix + data + suffix).decode()


def logrus(msg: str) -> str:
    return f'time="2026-11-29T10:00:00Z" level=info msg="{msg}"'


def _split_at(at: int, text: str) -> list[str]:
    return [logrus(f"[etcd] using key {text[:at]}"), f"{text[at:]} and more"]


# (what, secret, lines as a tool printed them)
Case = tuple[str, str, Callable[[str], list[str]]]
CASES: list[Case] = [
    ("raw", S3_SECRET, lambda s: [logrus(f"[etcd] secret {s} in use")]),
    ("raw, glued to other text", S3_SECRET, lambda s: [f"xx{s}yy"]),
    ("access key as RKE logs it", S3_ACCESS, lambda s: [logrus(f"using accesskey [{s}]")]),
    ("base64, aligned", S3_SECRET, lambda s: [f"S3_SECRET_KEY={b64(s.encode())}"]),
    ("base64, 1 byte in", S3_SECRET, lambda s: [b64(s.encode(), b"x")]),
    ("base64, 2 bytes in", S3_SECRET, lambda s: [b64(s.encode(), b"xy", b"tail")]),
    (
        "base64 URL-safe",
        S3_SECRET,
        lambda s: [base64.urlsafe_b64encode(b"~" + s.encode()).decode()],
    ),
    ("base64 unpadded", S3_SECRET, lambda s: [b64(s.encode()).rstrip("=")]),
    ("URL-encoded", S3_SECRET, lambda s: [f"GET /?k={urllib.parse.quote(s, safe='')} 200"]),
    ("form-encoded", S3_SECRET, lambda s: [f"body: k={urllib.parse.quote_plus(s)}&x=1"]),
    ("hex", S3_SECRET, lambda s: [f"0x{s.encode().hex()}"]),
    ("HEX", S3_SECRET, lambda s: [s.encode().hex().upper()]),
    ("JSON string", S3_SECRET, lambda s: [json.dumps({"secret_key": s})]),
    *[
        (f"split after {at} characters", S3_SECRET, functools.partial(_split_at, at))
        for at in (EDGE, 10, 20, len(S3_SECRET) - EDGE)
    ],
    ("PEM as is", SSH_KEY, lambda s: s.splitlines()),
    ("PEM body lines only", SSH_KEY, lambda s: s.splitlines()[1:-1]),
    ("PEM JSON-escaped", SSH_KEY, lambda s: [logrus(json.dumps(s)[1:-1])]),
    ("PEM in base64, 1 byte in", SSH_KEY, lambda s: [b64(s.encode(), b"\n")]),
    (
        "PEM base64 wrapped at 76",
        SSH_KEY,
        lambda s: [b64(s.encode())[i : i + 76] for i in range(0, len(b64(s.encode())), 76)],
    ),
    ("PEM body hex", SSH_KEY, lambda s: [s.splitlines()[1].encode().hex()]),
    ("RSA key as is", RSA_KEY, lambda s: s.splitlines()[1:-1]),
    ("RSA key JSON-escaped", RSA_KEY, lambda s: [logrus(json.dumps(s)[1:-1])]),
    (
        "RSA key in base64 (a kubeconfig)",
        RSA_KEY,
        lambda s: [f"client-key-data: {b64(s.encode())}"],
    ),
    ("RSA key in base64, 2 bytes in", RSA_KEY, lambda s: [b64(s.encode(), b"ab")]),
    (
        "RSA key in base64 wrapped at 64",
        RSA_KEY,
        lambda s: [b64(s.encode(), b"x")[i : i + 64] for i in range(0, len(b64(s.encode())), 64)],
    ),
]


def pieces(text: str, size: int = EDGE) -> set[str]:
    return {text[i : i + size] for i in range(len(text) - size + 1)}


@pytest.mark.parametrize(("secret", "lines"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_no_encoding_of_a_known_secret_survives(
    secret: str, lines: Callable[[str], list[str]]
) -> None:
    redact = Redactor.from_values([S3_SECRET, S3_ACCESS, SSH_KEY, RSA_KEY])
    printed = lines(secret)
    output = [redact(line) for line in printed]
    shown = "\n".join(output)
    # no 12-character piece of any form of the secret, and no 6-character piece of it as is
    forms = pieces(secret, 12).union(*(pieces(f, 12) for f in encodings(secret)))
    assert not forms & pieces(shown, 12), output
    leaked = {p for p in pieces(secret) if p in shown}
    assert not leaked, (leaked, output)
    # every printed line that carried the secret changed
    assert all(a != b for a, b in zip(printed, output, strict=True) if a.strip()), output


def test_the_table_would_leak_without_the_redactor() -> None:
    # The cases are real: without redaction each one shows a 12-character piece of an
    # encoding of its secret (so the test above measures the redactor, not the table).
    from rke.redact import encodings

    for what, secret, lines in CASES:
        text = "\n".join(lines(secret))
        forms = encodings(secret)
        assert any(p in text for f in forms for p in pieces(f, 12)), what


def test_ordinary_progress_lines_pass_unchanged() -> None:
    redact = Redactor.from_values([S3_SECRET, S3_ACCESS, SSH_KEY, RSA_KEY])
    lines = [
        logrus("[dialer] Setup tunnel for host [203.0.113.7]"),
        logrus("[etcd] Successfully started etcd plane.. Checking etcd cluster health"),
        logrus("[network] Setting up network plugin: canal"),
        "node/mc-prod-home-worker-1 cordoned",
        "evicting pod longhorn-system/instance-manager-0f3b9c",
        logrus("Finished building Kubernetes cluster successfully"),
        "sha256:4e07b1d8f2c8b3e6a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8",
    ]
    assert [redact(line) for line in lines] == lines


def kubeconfig(key_pem: str, token: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "users": [
                {
                    "name": "kube-admin-mc",
                    "user": {
                        "client-certificate-data": b64(b"-----BEGIN CERTIFICATE-----\n"),
                        "client-key-data": b64(key_pem.encode()),
                        "token": token,
                    },
                }
            ],
        }
    )


def test_a_kubeconfigs_client_key_it_was_not_told_about_is_learnt() -> None:
    key, token = _pem(), "kubeconfig-user-token-0123456789abcdef"
    redact = Redactor.from_values([S3_SECRET])
    config = kubeconfig(key, token)
    data = yaml.safe_load(config)["users"][0]["user"]["client-key-data"]
    assert redact(data[100:160]) == data[100:160]  # unknown: passes
    redact.learn_kubeconfig(config)
    for line in (
        f"client-key-data: {data}",
        data[100:160],
        key.splitlines()[2],
        f"Authorization: Bearer {token}",
        b64(token.encode(), b"z"),
    ):
        out = redact(line)
        assert not (pieces(out, 12) & (pieces(data, 12) | pieces(key, 12) | pieces(token, 12))), out


def test_an_rkestates_keys_are_learnt() -> None:
    ca_key, sa_key = _pem(), _pem()
    state = {
        "desiredState": {
            "certificatesBundle": {
                "kube-ca": {
                    "certificatePEM": "-----BEGIN CERTIFICATE-----\nMIIB\n",
                    "keyPEM": ca_key,
                },
                "kube-service-account-token": {"keyPEM": sa_key},
            },
            "encryptionConfig": "apiVersion: apiserver.config.k8s.io/v1\n"
            "kind: EncryptionConfiguration\nresources:\n- resources:\n  - secrets\n"
            "  providers:\n  - aescbc:\n      keys:\n"
            "      - name: key-abc\n        secret: MzJCRjQxNEQyOEE0RjI5MDhERDI3N0I1NkI2Mjc2QjY=\n",
        }
    }
    redact = Redactor()
    redact.learn_rkestate(json.dumps(state))
    secret = "MzJCRjQxNEQyOEE0RjI5MDhERDI3N0I1NkI2Mjc2QjY="
    assert len(redact) >= 3
    assert "MzJCRjQx" not in redact(f"aescbc key {secret}")
    assert redact(ca_key.splitlines()[1]) == "[redacted]"
    assert redact(sa_key.splitlines()[1]) == "[redacted]"
    body = b64(ca_key.encode(), b"ab")[10:90]
    assert redact(body) == "[redacted]"

"""Real values where the real providers make them: random passwords and TLS keys.

random: terraform-provider-random v3.9.0 ``internal/random/string.go`` ``CreateString``: the
character set is upper + lower + numeric + special (each if enabled; special defaults to
``!@#$%&*()-_=+[]{}<>:?`` unless ``overrideSpecial``), ``min*`` characters of each class
first, the rest from the whole set, then shuffled with crypto/rand.
tls: terraform-provider-tls v4.2.1 ``internal/provider/resource_private_key.go`` ``Create`` and
``common_key.go`` ``setPublicKeyAttributes``: ``privateKeyPem`` is PKCS#1 for RSA, SEC1 for
ECDSA and PKCS#8 for ED25519; ``privateKeyPemPkcs8``; ``privateKeyOpenssh`` (empty for
ECDSA P224, which OpenSSH cannot encode); ``publicKeyPem`` (PKIX), ``publicKeyOpenssh``
(``ssh.MarshalAuthorizedKey``: no comment, a trailing newline), the two fingerprints, and
the id, the SHA-1 hex of the PKIX public key (``hashForState``).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

_NUMERIC = "0123456789"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_SPECIAL = "!@#$%&*()-_=+[]{}<>:?"


def _int(value: Any, default: int) -> int:
    return default if value is None else int(value)


def random_string(inputs: Mapping[str, Any]) -> str:
    """A RandomPassword/RandomString ``result`` for these (revealed) inputs."""
    special = inputs.get("overrideSpecial") or _SPECIAL
    classes = [
        (_UPPER, inputs.get("upper", True), _int(inputs.get("minUpper"), 0)),
        (_LOWER, inputs.get("lower", True), _int(inputs.get("minLower"), 0)),
        (
            _NUMERIC,
            inputs.get("numeric", inputs.get("number", True)),
            _int(inputs.get("minNumeric"), 0),
        ),
        (special, inputs.get("special", True), _int(inputs.get("minSpecial"), 0)),
    ]
    charset = "".join(chars for chars, enabled, _ in classes if enabled is not False)
    if not charset:
        raise ValueError("the character set specified is empty")
    chosen = [secrets.choice(chars) for chars, _, least in classes for _ in range(least)]
    length = _int(inputs.get("length"), 0)
    chosen += [secrets.choice(charset) for _ in range(max(length - len(chosen), 0))]
    secrets.SystemRandom().shuffle(chosen)
    return "".join(chosen)


_CURVES: dict[str, ec.EllipticCurve] = {
    "P224": ec.SECP224R1(),
    "P256": ec.SECP256R1(),
    "P384": ec.SECP384R1(),
    "P521": ec.SECP521R1(),
}


def private_key(inputs: Mapping[str, Any]) -> dict[str, str]:
    """A fresh key of ``algorithm`` (RSA, ECDSA or ED25519) in pulumi-tls's output encodings."""
    algorithm = inputs.get("algorithm")
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "RSA":
        key = rsa.generate_private_key(65537, _int(inputs.get("rsaBits"), 2048))
        traditional = serialization.PrivateFormat.TraditionalOpenSSL  # PKCS#1
    elif algorithm == "ECDSA":
        key = ec.generate_private_key(_CURVES[str(inputs.get("ecdsaCurve") or "P224")])
        traditional = serialization.PrivateFormat.TraditionalOpenSSL  # SEC1
    elif algorithm == "ED25519":
        key = ed25519.Ed25519PrivateKey.generate()
        traditional = serialization.PrivateFormat.PKCS8
    else:
        raise ValueError(f'Key Algorithm "{algorithm}" is not supported')
    pem, none = serialization.Encoding.PEM, serialization.NoEncryption()
    public = key.public_key()
    pkix = public.public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    openssh_ok = not (algorithm == "ECDSA" and inputs.get("ecdsaCurve", "P224") in (None, "P224"))
    out = {
        "privateKeyPem": key.private_bytes(pem, traditional, none).decode(),
        "privateKeyPemPkcs8": key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, none
        ).decode(),
        "privateKeyOpenssh": "",
        "publicKeyPem": pkix.decode(),
        "publicKeyOpenssh": "",
        "publicKeyFingerprintMd5": "",
        "publicKeyFingerprintSha256": "",
        "id": hashlib.sha1(der).hexdigest(),  # hashForState: the provider's own choice
    }
    if openssh_ok:
        ssh_public = public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        blob = base64.b64decode(ssh_public.split()[1])
        md5 = hashlib.md5(blob).hexdigest()  # ssh.FingerprintLegacyMD5
        sha256 = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
        out |= {
            "privateKeyOpenssh": key.private_bytes(
                pem, serialization.PrivateFormat.OpenSSH, none
            ).decode(),
            "publicKeyOpenssh": ssh_public.decode() + "\n",
            "publicKeyFingerprintMd5": ":".join(md5[i : i + 2] for i in range(0, 32, 2)),
            "publicKeyFingerprintSha256": f"SHA256:{sha256}",
        }
    return out

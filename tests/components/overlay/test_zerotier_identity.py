"""ZeroTier identities and interface names, against ZeroTier's own vectors."""

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from components.overlay.zerotier import identity as identity_module
from components.overlay.zerotier.identity import Identity, generate_identity, validate_identity
from components.overlay.zerotier.naming import interface_name, is_node_id, validate_network_id
from tests.support import reference

VECTORS = reference.load("zerotier-vectors.json")
VALID = VECTORS["valid_identities"]
KNOWN_GOOD = VALID["zerotierone_selftest_known_good"]
INTERFACE_NAMES = {k: v for k, v in VECTORS["interface_names"].items() if k != "about"}


def public_of(secret: str) -> str:
    return secret.rsplit(":", 1)[0]


def replace_hex(text: str, index: int) -> str:
    return text[:index] + ("0" if text[index] != "0" else "1") + text[index + 1 :]


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_vectors_are_accepted(name: str) -> None:
    assert validate_identity(VALID[name])


def test_public_form_is_accepted() -> None:
    assert validate_identity(public_of(KNOWN_GOOD))


def test_known_bad_address_is_rejected() -> None:
    [bad] = VECTORS["invalid_identities"].values()
    assert not validate_identity(bad)
    assert not validate_identity(public_of(bad))


def test_mutated_public_key_is_rejected() -> None:
    # Changes the public key only: the hash no longer passes (the private half no
    # longer matches either, so check the public form, which only the hash can reject).
    assert not validate_identity(replace_hex(public_of(KNOWN_GOOD), 20))


def test_private_half_from_another_identity_is_rejected() -> None:
    other = VALID["zerotier_idtool_generated_1"].rsplit(":", 1)[1]
    assert not validate_identity(f"{public_of(KNOWN_GOOD)}:{other}")


@pytest.mark.parametrize(
    "text",
    [
        "",
        KNOWN_GOOD.upper(),
        KNOWN_GOOD.replace(":0:", ":1:"),
        KNOWN_GOOD + "\n",
        KNOWN_GOOD[:-2],
        "8e4df28b72:0",
        f"0000000000:0:{KNOWN_GOOD.split(':', 2)[2]}",
        f"ff4df28b72:0:{KNOWN_GOOD.split(':', 2)[2]}",
    ],
)
def test_malformed_or_reserved_is_rejected(text: str) -> None:
    assert not validate_identity(text)


def test_batched_swap_walk_matches_a_plain_sequential_walk() -> None:
    """The walk as ZeroTier does it: swap, then encrypt the digest with the next block."""
    rng = np.random.default_rng(2026)
    words, steps = identity_module._GENMEM_WORDS, identity_module._STEPS
    genmem = rng.integers(0, 2**64, size=words, dtype=np.uint64)
    digest = rng.integers(0, 2**64, size=8, dtype=np.uint64)
    blocks = rng.integers(0, 2**64, size=(steps, 8), dtype=np.uint64)
    g, d = genmem.tolist(), digest.tolist()

    def ntoh(word: int) -> int:  # the walk reads its index words big-endian (Utils::ntoh)
        return int.from_bytes(word.to_bytes(8, sys.byteorder), "big")

    for j, block in enumerate(blocks.tolist()):
        i1, i2 = ntoh(g[2 * j]) % 8, ntoh(g[2 * j + 1]) % words
        g[i2], d[i1] = d[i1], g[i2]
        d = [w ^ k for w, k in zip(d, block, strict=True)]
    cumulative = np.zeros((steps + 1, 8), dtype=np.uint64)
    np.bitwise_xor.accumulate(blocks, axis=0, out=cumulative[1:])
    lazy = identity_module._swap_walk(digest, genmem, cumulative.reshape(-1))
    assert (lazy ^ cumulative[steps]).tolist() == d
    assert genmem.tolist() == g


def assert_keys_match(identity: Identity) -> None:
    address, zero, public_hex, private_hex = identity.secret.split(":")
    assert (address, zero) == (identity.address, "0")
    assert identity.public == f"{address}:0:{public_hex}"
    public, private = bytes.fromhex(public_hex), bytes.fromhex(private_hex)
    x25519 = X25519PrivateKey.from_private_bytes(private[:32]).public_key().public_bytes_raw()
    ed25519 = Ed25519PrivateKey.from_private_bytes(private[32:]).public_key().public_bytes_raw()
    assert x25519 + ed25519 == public
    assert is_node_id(identity.address)


def test_generated_identity_is_valid_and_helpers_are_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[subprocess.Popen[Any]] = []
    popen = subprocess.Popen

    def recording_popen(*args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
        started.append(popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(identity_module.subprocess, "Popen", recording_popen)
    identity = generate_identity(helpers=1)
    assert validate_identity(identity.secret)
    assert validate_identity(identity.public)
    assert_keys_match(identity)
    assert len(started) == 1
    assert all(helper.poll() is not None for helper in started)


def test_generation_survives_a_failing_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    known = Identity(KNOWN_GOOD[:10], public_of(KNOWN_GOOD), KNOWN_GOOD)
    results = iter([None, None, known])
    monkeypatch.setattr(identity_module, "_candidate", lambda: next(results))
    monkeypatch.setattr(identity_module.sys, "executable", "/bin/false")
    assert generate_identity(helpers=1) == known


def test_repr_hides_the_secret() -> None:
    address, _, public_hex, private_hex = KNOWN_GOOD.split(":")
    identity = Identity(address, public_of(KNOWN_GOOD), KNOWN_GOOD)
    assert private_hex not in repr(identity)
    assert private_hex not in str(identity)
    assert public_hex in repr(identity)


def test_a_helper_finds_identities_from_any_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Helpers load identity.py by path, so neither the cwd nor sys.path matters."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(identity_module, "_candidate", lambda: time.sleep(0.01))
    identity = generate_identity(helpers=1)
    assert validate_identity(identity.secret)
    assert_keys_match(identity)


@pytest.mark.parametrize(("network_id", "name"), sorted(INTERFACE_NAMES.items()))
def test_interface_name_vectors(network_id: str, name: str) -> None:
    assert interface_name(network_id) == name


@pytest.mark.parametrize("bad", ["", "8056C2E21C000001", "8056c2e21c00000", "8056c2e21c0000011"])
def test_network_id_must_be_16_lower_case_hex(bad: str) -> None:
    with pytest.raises(ValueError, match="16 lower-case hex"):
        validate_network_id(bad)
    with pytest.raises(ValueError):
        interface_name(bad)

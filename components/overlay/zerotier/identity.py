"""ZeroTier identities: generation and validation, checked against ZeroTier's vectors.

An identity is an X25519 key pair plus an Ed25519 key pair. Its 40-bit address is the
tail of a memory-hard hash of the 64-byte public key (``memory_hard_hash``), and only
keys whose hash starts with a byte below 17 are valid (a hashcash that makes address
collisions expensive): about 15 candidates, raced over every spare CPU
(``generate_identity``).
"""

import hashlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np
from Crypto.Cipher import Salsa20
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

_GENMEM_BLOCKS = 32768  # 2 MiB of 64-byte Salsa20 blocks
_GENMEM_WORDS = _GENMEM_BLOCKS * 8
_STEPS = _GENMEM_WORDS // 2  # one swap and one digest re-encryption per word pair
_FIRST_BYTE_LIMIT = 17
_BATCH = 384  # swap-walk steps tried at once; about the fastest size measured

_IDENTITY_RE = re.compile(r"([0-9a-f]{10}):0:([0-9a-f]{128})(?::([0-9a-f]{128}))?")


@dataclass(frozen=True)
class Identity:
    """A ZeroTier identity; ``secret`` is the content of ``identity.secret``."""

    address: str
    public: str
    secret: str = field(repr=False)


def memory_hard_hash(public_key: bytes) -> bytes:
    """ZeroTier's 64-byte memory-hard hash of a 64-byte public key.

    Per ZeroTier: SHA-512 the key; fill 2 MiB with Salsa20/20 keyed by the digest in a
    CBC-like chain; walk the buffer in word pairs, swapping one word into the digest and
    re-encrypting the digest after each swap. The keystream does not depend on the data,
    so it is computed up front (the fill becomes a prefix-XOR of keystream blocks, the
    re-encryptions one cumulative XOR applied lazily), and the walk runs in numpy a run
    of mostly independent steps at a time.
    """
    digest = hashlib.sha512(public_key).digest()
    # ZeroTier keys Salsa20/20 with the digest's first 32 bytes and its next 8 as the
    # nonce (node/Identity.cpp, _computeMemoryHardHash); encrypting zeros gives the stream
    # (in place: a second 10 MiB buffer costs a third of the cipher's time again).
    stream = bytearray(64 * (_GENMEM_BLOCKS + _STEPS))
    Salsa20.new(key=digest[:32], nonce=digest[32:40]).encrypt(stream, output=stream)
    raw = np.frombuffer(stream, dtype=np.uint64).reshape(-1, 8)
    # XOR and the swaps are byte-wise, so words stay in memory order (native uint64);
    # only the walk's index words are read big-endian, as ZeroTier does (Utils::ntoh).
    genmem = np.bitwise_xor.accumulate(raw[:_GENMEM_BLOCKS], axis=0).reshape(-1)
    # cumulative[j] = XOR of the first j phase-2 keystream blocks: what the digest has
    # been encrypted with before step j; computed in place, after a zeroed row 0.
    cumulative = raw[_GENMEM_BLOCKS - 1 :]
    cumulative[0] = 0
    np.bitwise_xor.accumulate(cumulative[1:], axis=0, out=cumulative[1:])
    digest_words = np.frombuffer(digest, dtype=np.uint64).copy()
    lazy = _swap_walk(digest_words, genmem, cumulative.reshape(-1))
    return (lazy ^ cumulative[_STEPS]).tobytes()


def _swap_walk(digest: np.ndarray, genmem: np.ndarray, cumulative: np.ndarray) -> np.ndarray:
    """The sequential phase, a batch of steps at a time; mutates and returns ``digest``.
    Words are in memory order: the index words are read big-endian.

    ``digest`` is kept lazily encrypted: word k before step j is really
    ``digest[k] ^ cumulative[8 * j + k]``, so step j swaps with key ``cumulative[8 * j + slot]``
    and the caller applies the last row. A batch of consecutive steps is done at once
    while no step reads a word an earlier step of the batch wrote (its index words, or the
    word it swaps in); within a batch, steps on the same digest slot form a chain, each
    writing what its predecessor swapped out. Batches average about 300 steps.
    """
    mask = _GENMEM_WORDS - 1
    steps = np.arange(_BATCH)
    first, last = np.empty(_BATCH, dtype=bool), np.empty(_BATCH, dtype=bool)
    before = np.empty(_BATCH, dtype=np.uint64)
    start = 0
    while start < _STEPS:
        n = min(_BATCH, _STEPS - start)
        words = genmem[2 * start : 2 * (start + n)].view(">u8").astype(np.uint64)  # ntoh
        target = (words[1::2] & mask).astype(np.intp)
        # Stop before a step whose index words an earlier step overwrites...
        hit = (target >> 1) - start
        clobbered = (hit > steps[:n]) & (hit < n)
        n = int(hit[clobbered].min()) if clobbered.any() else n
        # ...and before a step swapping in a word an earlier step wrote.
        ordered_targets = np.sort(target[:n])
        if (ordered_targets[1:] == ordered_targets[:-1]).any():
            by_target = np.argsort(target[:n], kind="stable")
            repeated = target[by_target[1:]] == target[by_target[:-1]]
            n = int(by_target[1:][repeated].min())
        slot = (words[0 : 2 * n : 2] & 7).astype(np.uint8)
        target = target[:n]
        keys = cumulative[(steps[:n] + start) * 8 + slot]
        after = genmem[target] ^ keys  # each step's slot value once it has swapped
        order = np.argsort(slot, kind="stable")  # chains: steps grouped by slot, in order
        chained = slot[order]
        is_first, is_last, value = first[:n], last[:n], before[:n]
        is_first[0] = True
        np.not_equal(chained[1:], chained[:-1], out=is_first[1:])
        is_last[:-1] = is_first[1:]
        is_last[-1] = True
        value[is_first] = digest[chained[is_first]]
        follows = ~is_first[1:]
        value[1:][follows] = after[order[:-1]][follows]
        genmem[target[order]] = value ^ keys[order]
        digest[chained[is_last]] = after[order[is_last]]
        start += n
    return digest


def _is_reserved(address: bytes) -> bool:
    return address == bytes(5) or address[0] == 0xFF


def _candidate() -> Identity | None:
    """One random key pair set; an Identity if its hash passes, else None."""
    x25519 = X25519PrivateKey.generate()
    ed25519 = Ed25519PrivateKey.generate()
    public = x25519.public_key().public_bytes_raw() + ed25519.public_key().public_bytes_raw()
    digest = memory_hard_hash(public)
    address = digest[59:64]
    if digest[0] >= _FIRST_BYTE_LIMIT or _is_reserved(address):
        return None
    private = x25519.private_bytes_raw() + ed25519.private_bytes_raw()
    public_text = f"{address.hex()}:0:{public.hex()}"
    return Identity(address.hex(), public_text, f"{public_text}:{private.hex()}")


def _search() -> Identity:
    while (found := _candidate()) is None:
        pass
    return found


# Helpers load this file by path, not through the ``components`` package, so that they
# start fast whatever the package's __init__ imports, and from any working directory.
_HELPER_CODE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("_zerotier_identity_helper", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
sys.stdout.write(module._search().secret)
"""


def _default_helpers() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux: honours CPU pinning and cgroups cpusets
        return max(len(os.sched_getaffinity(0)) - 1, 0)
    return max((os.cpu_count() or 1) - 1, 0)


def _start_helpers(count: int) -> list[subprocess.Popen[str]]:
    helpers = []
    for _ in range(count):
        try:
            helpers.append(
                subprocess.Popen(
                    [sys.executable, "-c", _HELPER_CODE, os.path.abspath(__file__)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
            )
        except OSError:
            break  # searching in this process alone still works
    return helpers


def _parse(text: str) -> tuple[str, str, str | None] | None:
    match = _IDENTITY_RE.fullmatch(text)
    return None if match is None else (match[1], match[2], match[3])


def _collect(helpers: list[subprocess.Popen[str]]) -> Identity | None:
    """An identity from a helper that has finished; drops helpers that failed."""
    for helper in [h for h in helpers if h.poll() is not None]:
        helpers.remove(helper)
        output, _ = helper.communicate()
        parsed = _parse(output) if helper.returncode == 0 else None
        if parsed is not None and parsed[2] is not None:
            address, public, _private = parsed
            return Identity(address, f"{address}:0:{public}", output)
    return None


def generate_identity(*, helpers: int | None = None) -> Identity:
    """Generate a new random identity: about half a CPU-second on average, spread over cores.

    ``helpers`` is the number of extra processes searching alongside this one; by
    default one per CPU beyond the first. They are killed before this returns or raises.
    """
    running = _start_helpers(_default_helpers() if helpers is None else helpers)
    try:
        while True:
            found = _collect(running) or _candidate()
            if found is not None:
                return found
    finally:
        for helper in running:
            helper.kill()
            helper.communicate()


def validate_identity(secret_or_public: str) -> bool:
    """True for a well-formed, valid identity.secret or identity.public string.

    Checks the format, that the address is not reserved, that a secret's private halves
    derive its public halves, and that the hash of the public key passes and ends with
    the address.
    """
    parsed = _parse(secret_or_public)
    if parsed is None:
        return False
    address_hex, public_hex, private_hex = parsed
    address, public = bytes.fromhex(address_hex), bytes.fromhex(public_hex)
    if _is_reserved(address):
        return False
    if private_hex is not None:
        private = bytes.fromhex(private_hex)
        x25519 = X25519PrivateKey.from_private_bytes(private[:32]).public_key()
        ed25519 = Ed25519PrivateKey.from_private_bytes(private[32:]).public_key()
        if x25519.public_bytes_raw() + ed25519.public_bytes_raw() != public:
            return False
    digest = memory_hard_hash(public)
    return digest[0] < _FIRST_BYTE_LIMIT and digest[59:64] == address

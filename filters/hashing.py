"""The project's two hashes: a seeded per-key hash (every "random" choice that must not depend on the rest of
the data) and a content fingerprint (every "did anything change?" check).

Rule-specific hashes that reproduce another tool stay with their rule: TFDS's md5 of URLs and lines (c4.py,
badwords.py, c4_stages.py) and the MinHash/xxhash shingle hashes (dedup.py, decontam.py).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def keyed_digest(seed: int, label: str, key: str | None = None) -> bytes:
    """8 bytes of blake2b over ``seed NUL label [NUL key]``: independent per (seed, label, key)."""
    text = f"{seed}\x00{label}" if key is None else f"{seed}\x00{label}\x00{key}"
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()


def keyed_hash(seed: int, label: str, key: str | None = None) -> int:
    """:func:`keyed_digest` as an unsigned 64-bit integer (big-endian, so integer order is byte order)."""
    return int.from_bytes(keyed_digest(seed, label, key), "big")


def keyed_unit(seed: int, label: str, key: str) -> float:
    """A uniform draw in (0, 1] from :func:`keyed_hash`."""
    return (keyed_hash(seed, label, key) + 1) / 2**64


def fingerprint(value: Any) -> str:
    """16 hex digits of sha256 over canonical JSON (sorted keys): equal for equal content, on any machine."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]

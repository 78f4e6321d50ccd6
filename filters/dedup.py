"""Deduplication math without Beam: text normalisation, shingles, MinHash signatures, LSH bands, clusters.

Signatures are datasketch's ``affine64`` MinHash (``MinHash(num_perm, seed, hashfunc=shingle_hash,
scheme="affine64")``) computed with numpy for a whole document at once: the 64-bit shingle hashes are pre-mixed
with MurmurHash3's 64-bit finaliser and permuted with ``a * h + b mod 2^64`` using datasketch's own permutation
parameters. We keep the high 32 bits of each value (the min of the high bits is the high bits of the min), so a
signature is 4 bytes per permutation and bit-for-bit ``MinHash.update_batch``'s ``hashvalues >> 32``. (The
``affine32`` scheme's estimates were measurably noisier on dedup_bench: 19% higher squared error than ideal
random permutations, against 2% for ``affine64``.) A shingle's hash combines 64-bit token hashes (``xxh3_64`` of a
word, or a mixed code point for character n-grams) with fixed odd multipliers, which lets the hashes of every
n-gram of a document be computed with ``n`` vector operations.

Settings: :class:`MinHashConfig` is the one MinHash config (the spec's ``dedup.minhash``, the ``minhash_dedup``
stage with :class:`MinHashDedupParams`, and ``mixlab dedup``'s flags); :class:`MinHashParams` is the signature scheme
one config resolves to (``config.scheme(norm)``).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
import regex
import xxhash
from pydantic import Field, model_validator

from filters.params import StrictModel, params_model

MAX_HASH = np.uint32(0xFFFFFFFF)  # signature value of an empty shingle set (high bits of datasketch's sentinel)
_NODE_MASK = (1 << 63) - 1  # node keys fit a signed 64-bit varint in Beam's coders
_ROW_CHUNK = 4096  # shingles permuted at once; bounds memory to 4096 x num_perm x 8 bytes per document
_MAX_NGRAM = 64
_MULTIPLIERS = np.random.RandomState(20240531).randint(
    0, 1 << 62, _MAX_NGRAM, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
_PUNCT = regex.compile(r"[\p{P}\p{S}]+")
_DIGIT = regex.compile(r"\d")
# datatrove's MinHash defaults: 14 bands x 8 rows (112 permutations) at threshold 0.72.
DATATROVE_BANDS, DATATROVE_ROWS, DATATROVE_THRESHOLD = 14, 8, 0.72
FAST_PATH_MAX_EDGES = 2_000_000  # up to this many candidate edges, components are found by one worker's union-find
MAX_ITERATIONS = 20  # large-star/small-star rounds unrolled in the distributed components


@dataclass(frozen=True, slots=True)
class TextNorm:
    """Which differences exact and near dedup ignore (datatrove's ``TextNormConfig`` options)."""

    lowercase: Annotated[bool, Field(description="case-fold")] = True
    whitespace: Annotated[bool, Field(description="collapse whitespace runs to one space")] = True
    punctuation: Annotated[bool, Field(description="replace punctuation and symbols by spaces")] = False
    digits: Annotated[bool, Field(description="map every digit to 0")] = False
    unicode: Annotated[bool, Field(description=(
        "NFKC: full-width forms, ligatures, compatibility characters fold together"))] = True
    diacritics: Annotated[bool, Field(description="drop combining accents (café == cafe)")] = False

    def __call__(self, text: str) -> str:
        """Normalise ``text`` according to the options."""
        if self.unicode:
            text = unicodedata.normalize("NFKC", text)
        if self.diacritics:
            text = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
        if self.lowercase:
            text = text.casefold()
        if self.punctuation:
            text = _PUNCT.sub(" ", text)
        if self.digits:
            text = _DIGIT.sub("0", text)
        if self.whitespace:
            text = " ".join(text.split())
        return text


def node_key(source: str, doc_id: str, text: str) -> int:
    """Stable 63-bit identity of a document (equal only for equal source, id and text)."""
    return xxhash.xxh3_64_intdigest(f"{source}\x1f{doc_id}\x1f{text}") & _NODE_MASK


def exact_key(normalised: str) -> int:
    """63-bit hash of normalised text: documents with equal keys are exact duplicates."""
    return xxhash.xxh3_64_intdigest(normalised) & _NODE_MASK


# ---------------------------------------------------------------------------------------------- shingles

def token_hashes(normalised: str, unit: str) -> np.ndarray:
    """64-bit hashes of the tokens (``unit="word"``) or code points (``unit="char"``) of a text."""
    if unit == "word":
        return np.fromiter((xxhash.xxh3_64_intdigest(w) for w in normalised.split()), dtype=np.uint64)
    if unit == "char":
        codes = np.frombuffer(normalised.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        return _fmix64(codes)
    raise ValueError(f"shingle unit must be 'word' or 'char', got {unit!r}")


def shingle_hashes(tokens: np.ndarray, n: int) -> np.ndarray:
    """64-bit hashes of every n-gram of the token hashes; fewer than ``n`` tokens make one shingle of them all."""
    if not 1 <= n <= _MAX_NGRAM:
        raise ValueError(f"n-gram size must be in 1..{_MAX_NGRAM}, got {n}")
    width = min(n, len(tokens))
    if width == 0:
        return np.empty(0, dtype=np.uint64)
    count = len(tokens) - width + 1
    acc = np.zeros(count, dtype=np.uint64)
    for k in range(width):
        acc += tokens[k:k + count] * _MULTIPLIERS[k]
    return acc


def shingle_hash(token_hashes_of_one_shingle: Sequence[int]) -> int:
    """Scalar reference of :func:`shingle_hashes` for one shingle (the ``hashfunc`` given to datasketch)."""
    acc = sum(int(h) * int(_MULTIPLIERS[k]) for k, h in enumerate(token_hashes_of_one_shingle))
    return acc % (1 << 64)


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


# ---------------------------------------------------------------------------------------------- MinHash

@lru_cache(maxsize=16)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's ``affine64`` permutation parameters ``(a, b)`` for ``num_perm`` and ``seed``."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine64").permutations
    return a.astype(np.uint64), b.astype(np.uint64)


def signature(shingles: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signature (``uint32[num_perm]``, high bits) of 64-bit shingle hashes; all ``MAX_HASH`` if empty."""
    a, b = permutations(num_perm, seed)
    sig = np.full(num_perm, np.uint64(2**64 - 1), dtype=np.uint64)
    mixed = _fmix64(shingles.astype(np.uint64, copy=False))
    for start in range(0, len(mixed), _ROW_CHUNK):
        block = a[:, None] * mixed[None, start:start + _ROW_CHUNK]  # permutations x shingles: rows reduce fast
        block += b[:, None]
        np.minimum(sig, block.min(axis=1), out=sig)
    return (sig >> np.uint64(32)).astype(np.uint32)


# ---------------------------------------------------------------------------------------------- settings

if TYPE_CHECKING:  # generated at run time from TextNorm's fields; type checkers see the base class
    NormaliseParams = StrictModel
else:
    NormaliseParams = params_model(TextNorm, "NormaliseParams")


class DedupParams(StrictModel):
    """What exact and near dedup share: the normalisation, the comparison scope and the survivor's source."""

    normalise: NormaliseParams = Field(default_factory=NormaliseParams, description=(
        "which differences are ignored (keys: lowercase, whitespace, punctuation, digits, unicode, diacritics)"))
    cross_source: bool = Field(True, description="false: documents are only compared within their own source")
    source_priority: list[str] = Field(default_factory=list, description=(
        "the survivor of a cluster comes from the first listed source (then the smallest stable hash)"))

    def text_norm(self) -> TextNorm:
        """The normaliser these settings describe."""
        return TextNorm(**self.normalise.model_dump())


class ExactDedupParams(DedupParams):
    """Exact dedup: documents whose normalised text is equal (empty normalised text is left alone)."""


class MinHashConfig(StrictModel):
    """MinHash LSH settings; bands/rows: 14 x 8 at 0.72 (datatrove), else datasketch's optimal split of num_perm."""

    threshold: float = Field(DATATROVE_THRESHOLD, gt=0.0, lt=1.0, description="Jaccard similarity of near-duplicates")
    bands: int | None = Field(None, ge=1, description="LSH bands (with rows); default from threshold and num_perm")
    rows: int | None = Field(None, ge=1, description="rows per band (with bands)")
    num_perm: int = Field(DATATROVE_BANDS * DATATROVE_ROWS, ge=2, le=1024, description=(
        "permutations when bands/rows are not given"))
    ngram: int = Field(5, ge=1, le=64, description="word n-gram size")
    unit: Literal["word", "char", "auto"] = Field("auto", description=(
        "shingle unit; `auto`: characters for text with almost no spaces (CJK, Thai, ...) and for `char_sources`"))
    char_ngram: int = Field(10, ge=1, le=64, description="character n-gram size")
    char_sources: list[str] = Field(default_factory=list, description="sources shingled by characters (code)")
    seed: int = Field(1, description="MinHash permutation seed")
    verify: bool = Field(True, description=(
        "a candidate pair must also have estimated Jaccard >= threshold (fewer false positives; best F1 measured, "
        "bench/RESULTS.md)"))
    components: Literal["auto", "single", "distributed"] = Field("auto", description=(
        "connected components: `single` (union-find), `distributed` (large-star/small-star), `auto` by edge count"))
    fast_path_max_edges: int = Field(FAST_PATH_MAX_EDGES, ge=0, description="`auto`: union-find up to this many edges")
    max_iterations: int = Field(MAX_ITERATIONS, ge=1, le=200, description="large-star/small-star rounds")

    @model_validator(mode="after")
    def _bands_rows(self) -> MinHashConfig:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give both bands and rows, or neither (then the threshold picks them)")
        return self

    def lsh(self) -> tuple[int, int]:
        """(bands, rows): as given; 14 x 8 for the defaults (datatrove); else datasketch's optimal split."""
        datatrove = (self.threshold, self.num_perm) == (DATATROVE_THRESHOLD, DATATROVE_BANDS * DATATROVE_ROWS)
        if self.bands is None and datatrove:
            return DATATROVE_BANDS, DATATROVE_ROWS
        return lsh_params(self.threshold, self.num_perm, self.bands, self.rows)

    def scheme(self, norm: TextNorm) -> MinHashParams:
        """The word-shingle signature scheme of this config (``unit`` is chosen per document by the stage)."""
        bands, rows = self.lsh()
        return MinHashParams(ngram=self.ngram, unit="word", bands=bands, rows=rows, seed=self.seed, norm=norm)


class MinHashDedupParams(DedupParams, MinHashConfig):
    """MinHash near-dedup: the MinHash config plus the settings every dedup stage shares."""


_CONFIG = MinHashConfig.model_fields


@dataclass(frozen=True, slots=True)
class MinHashParams:
    """A resolved signature scheme (see :meth:`MinHashConfig.scheme`); defaults: the config's, word shingles."""

    ngram: int = _CONFIG["ngram"].default
    unit: str = "word"
    bands: int = DATATROVE_BANDS
    rows: int = DATATROVE_ROWS
    seed: int = _CONFIG["seed"].default
    norm: TextNorm = TextNorm()

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows

    def shingles(self, text: str) -> np.ndarray:
        """The 64-bit shingle hashes of a document's text."""
        return shingle_hashes(token_hashes(self.norm(text), self.unit), self.ngram)

    def signature(self, text: str) -> np.ndarray:
        """The document's MinHash signature."""
        return signature(self.shingles(text), self.num_perm, self.seed)


def lsh_params(threshold: float, num_perm: int = 112, bands: int | None = None,
               rows: int | None = None) -> tuple[int, int]:
    """(bands, rows): as given, else datasketch's optimal split of ``num_perm`` for ``threshold``."""
    if bands is not None and rows is not None:
        return bands, rows
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    return _optimal(round(threshold, 6), num_perm)


@lru_cache(maxsize=64)
def _optimal(threshold: float, num_perm: int) -> tuple[int, int]:
    from datasketch.lsh import _optimal_param

    return tuple(_optimal_param(threshold, num_perm, 0.5, 0.5))


def band_keys(sig: np.ndarray, bands: int, rows: int) -> list[int]:
    """One 63-bit bucket key per band (band index mixed in), from the band's slice of the signature."""
    return [xxhash.xxh3_64_intdigest(sig[i * rows:(i + 1) * rows].tobytes(), seed=i) & _NODE_MASK
            for i in range(bands)]


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of equal signature positions (datasketch's ``MinHash.jaccard``)."""
    return float(np.count_nonzero(a == b)) / len(a)


def is_empty(sig: np.ndarray) -> bool:
    """True for the signature of a document without shingles."""
    return bool(np.all(sig == MAX_HASH))


# ---------------------------------------------------------------------------------------------- clusters

def connected_components(edges: Iterable[tuple[int, int]]) -> dict[int, int]:
    """Union-find over edges: every node that has an edge -> the smallest node of its component."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for u, v in edges:
        parent.setdefault(u, u)
        parent.setdefault(v, v)
        ru, rv = find(u), find(v)
        if ru != rv:
            parent[max(ru, rv)] = min(ru, rv)
    return {node: find(node) for node in parent}


def source_rank(source: str, priority: Sequence[str]) -> int:
    """Position of a source in the keep-priority list; unlisted sources rank after every listed one."""
    return priority.index(source) if source in priority else len(priority)


def survivor_order(source: str, node: int, priority: Sequence[str]) -> tuple[int, int]:
    """Sort key of a cluster member: the smallest is kept (preferred source first, then the stable hash)."""
    return source_rank(source, priority), node


def cluster_id(method: str, label: int) -> str:
    """Readable, stable cluster id, e.g. ``minhash-00a3...``."""
    return f"{method}-{label:016x}"


def norm_from(params: Mapping[str, bool] | None) -> TextNorm:
    """A :class:`TextNorm` from a mapping of option names (unknown names are an error)."""
    try:
        return TextNorm(**dict(params or {}))
    except TypeError as err:
        raise ValueError(f"unknown normalisation option in {dict(params or {})}: {err}") from None

"""Decontamination against evaluation sets: an n-gram index of eval items and the ``decontam`` filter.

The default follows GPT-3 (Brown et al. 2020, appendix C): text is lower-cased and split into words (``\\w+`` runs,
punctuation dropped), and a training document is contaminated by an eval item when they share one 13-gram.
An item's text is its query plus its gold choice (``item_text="gold"``) or plus each choice (``"all"``).

The index holds one 64-bit hash per distinct item n-gram, sorted, with the item it came from (a uint64 array
and a uint32 array: about 12 bytes per n-gram), plus a flag table on the hashes' top bits that rejects most
document n-grams with one array read; survivors are found with ``searchsorted``. Hashes are
xxh64 of each token combined by a polynomial over the n-gram, identical in every process, so an index built
once (``index_path`` or ``cache_dir``) is reused by every Beam worker. A mixture run builds it in the driver
into ``runs/<mix>/decontam/`` (see :func:`bind_run`).

Policies: ``drop`` removes the document (reason ``decontam.<task>``), ``remove_span`` cuts every matched span
plus ``margin_chars`` on each side (GPT-3: 200) and drops documents left in more than ``max_pieces`` pieces,
``tag`` only records. Every action leaves ``meta["contamination"]``: one record per (task, item) with the
number of shared n-grams, the character spans in the text the filter saw, and the action taken.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import numpy as np
import xxhash
from pydantic import Field

from filters.base import KEEP, Document, Verdict, drop
from filters.jsonl import iter_jsonl
from filters.params import internal, params_model

log = logging.getLogger(__name__)

DEFAULT_N = 13  # GPT-3's n-gram length
DEFAULT_MARGIN = 200  # characters removed on each side of a matched span (GPT-3)
DEFAULT_MAX_PIECES = 10  # GPT-3: a document cut into more pieces than this is dropped instead
Policy = Literal["drop", "remove_span", "tag"]
ItemText = Literal["gold", "all"]
POLICIES: tuple[str, ...] = get_args(Policy)
ITEM_TEXTS: tuple[str, ...] = get_args(ItemText)
SHARED_ENV = "MIXLAB_SHARED"
INDEX_VERSION = 1
_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier of the polynomial n-gram hash
_WORD = re.compile(r"\w+")
_NONSPACE = re.compile(r"\S+")
_NOT_WORD = re.compile(r"[^\w]+")

Spans = list[tuple[int, int]]


# --- normalisation: text -> tokens (and, when asked, each token's character span) -------------------------

def _words(text: str, spans: bool) -> tuple[list[str], Spans]:
    """Lower-cased ``\\w+`` runs (the rule of contamination_13gram.json)."""
    low = text.lower()
    if len(low) != len(text):  # a few characters grow when lower-cased; keep spans on the original text
        found = list(_WORD.finditer(text))
        return [m.group().lower() for m in found], [m.span() for m in found] if spans else []
    if not spans:
        return _WORD.findall(low), []
    found = list(_WORD.finditer(low))
    return [m.group() for m in found], [m.span() for m in found]


def _fold(token: str) -> str:
    decomposed = unicodedata.normalize("NFKD", token.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _folded_words(text: str, spans: bool) -> tuple[list[str], Spans]:
    """Words with compatibility forms, case and accents folded (``Café`` = ``cafe``, fullwidth = ASCII)."""
    found = list(re.finditer(r"[\w\u0300-\u036f]+", text))
    return [_fold(m.group()) for m in found], [m.span() for m in found] if spans else []


def _gpt3_words(text: str, spans: bool) -> tuple[list[str], Spans]:
    """Whitespace words with punctuation removed inside them (``don't`` = ``dont``), lower-cased."""
    tokens, out = [], []
    for m in _NONSPACE.finditer(text):
        word = _NOT_WORD.sub("", m.group()).lower()
        if word:
            tokens.append(word)
            if spans:
                out.append(m.span())
    return tokens, out


NORMALISERS: dict[str, Callable[[str, bool], tuple[list[str], Spans]]] = {
    "words": _words,
    "folded_words": _folded_words,
    "gpt3": _gpt3_words,
}
Normaliser = Literal["words", "folded_words", "gpt3"]  # the names a spec may give (validation and docs)
assert set(get_args(Normaliser)) == set(NORMALISERS)


def tokenize(text: str, normalise: str = "words", spans: bool = False) -> tuple[list[str], Spans]:
    """Normalised tokens of ``text`` (and their character spans when ``spans``)."""
    if normalise not in NORMALISERS:
        raise ValueError(f"decontam: unknown normalise {normalise!r}; choose from {', '.join(NORMALISERS)}")
    return NORMALISERS[normalise](text, spans)


# --- hashing ------------------------------------------------------------------------------------------------

class TokenHasher:
    """xxh64 of tokens with a bounded cache (a corpus repeats its vocabulary, so most tokens are hits)."""

    def __init__(self, max_cache: int = 2_000_000) -> None:
        self.cache: dict[str, int] = {}
        self.max_cache = max_cache

    def __call__(self, tokens: Sequence[str]) -> np.ndarray:
        cache = self.cache
        if len(cache) > self.max_cache:
            cache.clear()
        get = cache.get
        out = [get(tok) for tok in tokens]
        if None in out:
            for i, h in enumerate(out):
                if h is None:
                    out[i] = cache[tokens[i]] = xxhash.xxh64_intdigest(tokens[i])
        return np.array(out, dtype=np.uint64)


def ngram_hashes(token_hashes: np.ndarray, n: int) -> np.ndarray:
    """One uint64 per n-gram starting at each token (empty when there are fewer than ``n`` tokens)."""
    m = len(token_hashes) - n + 1
    if m <= 0:
        return np.empty(0, dtype=np.uint64)
    acc = token_hashes[:m].copy()
    for k in range(1, n):
        acc *= _MULT
        acc += token_hashes[k:k + m]
    return acc


# --- eval items and the index ---------------------------------------------------------------------------------

def default_eval_dir() -> Path:
    """``$MIXLAB_SHARED/corpora/evals`` if set, else ``../shared/corpora/evals`` next to the repository."""
    if os.environ.get(SHARED_ENV):
        return Path(os.environ[SHARED_ENV]) / "corpora" / "evals"
    return Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "evals"


def resolve_tasks(tasks: str | Sequence[str] | None) -> list[Path]:
    """Eval files to index: the given paths or globs, or every ``*.jsonl.gz`` of the shipped eval sets."""
    patterns = [str(default_eval_dir() / "*.jsonl.gz")] if tasks is None else (
        [tasks] if isinstance(tasks, str) else list(tasks))
    files: list[Path] = []
    for pattern in patterns:
        matched = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matched or not all(Path(p).is_file() for p in matched):
            raise FileNotFoundError(f"decontam: no eval file matches {pattern!r} (tasks param)")
        files.extend(Path(p) for p in matched)
    return sorted(set(files))


def task_name(path: Path) -> str:
    """``evals/boolq.jsonl.gz`` -> ``boolq``."""
    return path.name.split(".")[0]


def read_items(path: Path, item_text: str = "gold") -> Iterable[tuple[str, list[str]]]:
    """Yield ``(item id, texts)`` from a unified eval file ({id, query, choices, gold}); errors name the line."""
    for lineno, row in iter_jsonl(path):
        try:
            query, choices = row.get("query", ""), row["choices"]
            item_id = str(row.get("id", f"{task_name(path)}/{lineno - 1}"))
            chosen = [choices[int(row["gold"])]] if item_text == "gold" else list(choices)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as err:
            raise ValueError(f"{path}:{lineno}: not an eval item with query/choices/gold: {err}") from err
        yield item_id, [f"{query} {c}" for c in chosen]


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@dataclass(frozen=True)
class IndexConfig:
    """What an index depends on: eval files (by content), n, normalisation, item text, boilerplate cut."""

    files: tuple[str, ...]
    n: int = DEFAULT_N
    normalise: str = "words"
    item_text: str = "gold"
    max_items_per_ngram: int | None = None

    def key(self) -> str:
        """Content hash naming the cache file: changes when an eval file or a setting changes."""
        parts = [INDEX_VERSION, self.n, self.normalise, self.item_text, self.max_items_per_ngram,
                 [(task_name(Path(f)), _file_digest(Path(f))) for f in self.files]]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


@dataclass
class EvalIndex:
    """Sorted n-gram hashes of eval items, each with the item it came from."""

    hashes: np.ndarray  # uint64, sorted
    items: np.ndarray  # uint32 into item_ids, same order as hashes
    item_ids: np.ndarray  # str, one per indexed item
    item_tasks: np.ndarray  # uint16 into tasks
    tasks: np.ndarray  # str
    n: int
    normalise: str
    short_items: dict[str, int]  # per task: items with fewer than n tokens (cannot match)
    key: str = ""  # IndexConfig.key() it was built from

    def __post_init__(self) -> None:
        # Prefilter: one flag per value of a hash's top bits (about 8 slots per n-gram), so most document n-grams
        # are rejected by one array read instead of a binary search.
        self.shift = np.uint64(64 - int(np.clip(np.ceil(np.log2(max(len(self.hashes), 1) * 8)), 10, 24)))
        self.prefilter = np.zeros(1 << (64 - int(self.shift)), dtype=bool)
        self.prefilter[self.hashes >> self.shift] = True

    @property
    def nbytes(self) -> int:
        """Memory of the arrays (prefilter included), in bytes."""
        arrays = (self.hashes, self.items, self.item_ids, self.item_tasks, self.tasks, self.prefilter)
        return sum(a.nbytes for a in arrays)

    def items_of_task(self) -> dict[str, set[str]]:
        """Every item id per task (including short items that cannot match)."""
        out: dict[str, set[str]] = {str(t): set() for t in self.tasks}
        for item_id, t in zip(self.item_ids.tolist(), self.item_tasks.tolist(), strict=True):
            out[str(self.tasks[t])].add(item_id)
        return out

    def lookup(self, doc_hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions of ``doc_hashes`` found in the index and, for each, the matching item (one row per pair)."""
        candidates = np.flatnonzero(self.prefilter[doc_hashes >> self.shift])
        if len(candidates) == 0:
            return candidates, np.empty(0, dtype=np.uint32)
        left = np.searchsorted(self.hashes, doc_hashes[candidates])
        found = left < len(self.hashes)
        found[found] = self.hashes[left[found]] == doc_hashes[candidates][found]
        positions, starts = candidates[found], left[found]
        if len(positions) == 0:
            return positions, np.empty(0, dtype=np.uint32)
        ends = np.searchsorted(self.hashes, doc_hashes[positions], side="right")
        counts = ends - starts
        rows = np.repeat(positions, counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        return rows, self.items[np.repeat(starts, counts) + offsets]

    def save(self, path: Path) -> None:
        """Write the index as one ``.npz`` (written to a temporary name, then renamed)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        meta = json.dumps({"version": INDEX_VERSION, "n": self.n, "normalise": self.normalise,
                           "short_items": self.short_items, "key": self.key})
        np.savez(tmp, hashes=self.hashes, items=self.items, item_ids=self.item_ids, item_tasks=self.item_tasks,
                 tasks=self.tasks, meta=np.array(meta))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> EvalIndex:
        """Read an index written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("version") != INDEX_VERSION:
                raise ValueError(f"{path}: eval index version {meta.get('version')}, expected {INDEX_VERSION}")
            return cls(z["hashes"], z["items"], z["item_ids"], z["item_tasks"], z["tasks"], meta["n"],
                       meta["normalise"], meta["short_items"], meta["key"])


_BUILT: dict[str, EvalIndex] = {}  # the index last built in this process (a spec check, then the run, reuse it)


def build_index(config: IndexConfig) -> EvalIndex:
    """Hash every eval item's n-grams; drop n-grams shared by more than ``max_items_per_ngram`` items."""
    started, hasher = time.monotonic(), TokenHasher()
    hash_parts: list[np.ndarray] = []
    item_parts: list[np.ndarray] = []
    item_ids: list[str] = []
    item_tasks: list[int] = []
    tasks = [task_name(Path(f)) for f in config.files]
    short: dict[str, int] = {}
    for t, path in enumerate(config.files):
        short[tasks[t]] = 0
        for item_id, texts in read_items(Path(path), config.item_text):
            grams = [ngram_hashes(hasher(tokenize(text, config.normalise)[0]), config.n) for text in texts]
            grams_all = np.unique(np.concatenate(grams))
            if len(grams_all) == 0:
                short[tasks[t]] += 1
            hash_parts.append(grams_all)
            item_parts.append(np.full(len(grams_all), len(item_ids), dtype=np.uint32))
            item_ids.append(item_id)
            item_tasks.append(t)
    hashes = np.concatenate(hash_parts) if hash_parts else np.empty(0, dtype=np.uint64)
    items = np.concatenate(item_parts) if item_parts else np.empty(0, dtype=np.uint32)
    order = np.argsort(hashes, kind="stable")
    hashes, items = hashes[order], items[order]
    if config.max_items_per_ngram is not None and len(hashes):
        counts = np.unique(hashes, return_counts=True)[1]
        keep = np.repeat(counts <= config.max_items_per_ngram, counts)
        hashes, items = hashes[keep], items[keep]
    index = EvalIndex(hashes, items, np.array(item_ids, dtype=str), np.array(item_tasks, dtype=np.uint16),
                      np.array(tasks, dtype=str), config.n, config.normalise, short, config.key())
    log.info("decontam: indexed %d n-grams of %d items from %d eval files in %.1f s (%.1f MiB)",
             len(hashes), len(item_ids), len(tasks), time.monotonic() - started, index.nbytes / 2**20)
    return index


def load_or_build(config: IndexConfig, index_path: Path | None = None, cache_dir: Path | None = None) -> EvalIndex:
    """The index for ``config``: read from ``index_path`` or ``cache_dir/index-<key>.npz`` when that file was
    built from the same settings and eval files, else built (and written there)."""
    key = config.key()
    path = index_path or (cache_dir / f"index-{key}.npz" if cache_dir is not None else None)
    if path is not None and path.exists():
        index = EvalIndex.load(path)
        if index.key == key:
            return index
        log.info("decontam: %s was built from other eval files or settings; rebuilding", path)
    index = _BUILT.get(key) or build_index(config)
    _BUILT.clear()  # keep only the latest index in memory
    _BUILT[key] = index
    if path is not None:
        index.save(path)
    return index


# --- the filter ---------------------------------------------------------------------------------------------

def _merge(spans: Iterable[tuple[int, int]]) -> Spans:
    out: Spans = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


@dataclass
class Decontam:
    """Find eval-item n-grams in a document and drop it, cut the spans out, or tag it (see module doc)."""

    index: EvalIndex
    policy: str = "drop"
    margin_chars: int = DEFAULT_MARGIN
    max_pieces: int = DEFAULT_MAX_PIECES
    min_ngrams: int = 1
    name: str = "decontam"

    def __post_init__(self) -> None:
        check_policy(self.policy, self.margin_chars, self.max_pieces, self.min_ngrams)
        self.hasher = TokenHasher()

    def matches(self, text: str) -> list[dict[str, Any]]:
        """One record per contaminating (task, item): shared n-gram count and merged character spans."""
        tokens, _ = tokenize(text, self.index.normalise)
        rows, items = self.index.lookup(ngram_hashes(self.hasher(tokens), self.index.n))
        if len(rows) == 0:
            return []
        _, spans = tokenize(text, self.index.normalise, spans=True)
        n = self.index.n
        per_item: dict[int, list[int]] = {}
        for row, item in zip(rows.tolist(), items.tolist(), strict=True):
            per_item.setdefault(item, []).append(row)
        records = []
        for item, starts in per_item.items():
            if len(starts) < self.min_ngrams:
                continue
            char_spans = _merge((spans[s][0], spans[s + n - 1][1]) for s in starts)
            records.append({"task": str(self.index.tasks[self.index.item_tasks[item]]),
                            "item": str(self.index.item_ids[item]), "ngrams": len(starts),
                            "spans": [list(s) for s in char_spans]})
        return sorted(records, key=lambda r: (r["task"], r["item"]))

    def __call__(self, doc: Document) -> Verdict:
        records = self.matches(doc.text)
        if not records:
            return KEEP
        task = max(records, key=lambda r: r["ngrams"])["task"]
        reason = f"decontam.{task}"
        if self.policy == "tag":
            return Verdict(True, tags={"contamination": _with_action(records, "tag")})
        if self.policy == "remove_span":
            text, removed, pieces = self._cut(doc.text, records)
            if pieces <= self.max_pieces and text.strip():
                return Verdict(True, text=text, edits={reason: removed},
                               tags={"contamination": _with_action(records, "remove_span")})
        return drop(reason, contamination=_with_action(records, "drop"))

    def _cut(self, text: str, records: list[dict[str, Any]]) -> tuple[str, int, int]:
        """Text without every matched span and its margin; characters removed; pieces left."""
        cuts = _merge((max(0, s - self.margin_chars), min(len(text), e + self.margin_chars))
                      for r in records for s, e in r["spans"])
        pieces, last = [], 0
        for s, e in cuts:
            pieces.append(text[last:s])
            last = e
        pieces.append(text[last:])
        kept = [p for p in pieces if p.strip()]
        return "\n".join(kept), sum(e - s for s, e in cuts), len(kept)


def check_policy(policy: str, margin_chars: int, max_pieces: int, min_ngrams: int) -> None:
    """Raise ValueError on an unknown policy or a nonsensical margin, piece or n-gram count."""
    if policy not in POLICIES:
        raise ValueError(f"decontam: unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
    if margin_chars < 0 or max_pieces < 1 or min_ngrams < 1:
        raise ValueError("decontam: need margin_chars >= 0, max_pieces >= 1, min_ngrams >= 1")


def _with_action(records: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [{**r, "action": action} for r in records]


def index_config(tasks: str | Sequence[str] | None = None, n: int = DEFAULT_N, normalise: str = "words",
                 item_text: str = "gold", max_items_per_ngram: int | None = None) -> IndexConfig:
    """Validated index settings from filter params."""
    if n < 1:
        raise ValueError(f"decontam: n must be >= 1, got {n}")
    if normalise not in NORMALISERS:
        raise ValueError(f"decontam: unknown normalise {normalise!r}; choose from {', '.join(NORMALISERS)}")
    if item_text not in ITEM_TEXTS:
        raise ValueError(f"decontam: unknown item_text {item_text!r}; choose from {', '.join(ITEM_TEXTS)}")
    return IndexConfig(tuple(str(p) for p in resolve_tasks(tasks)), n, normalise, item_text, max_items_per_ngram)


def decontam(
    policy: Annotated[Policy, Field(description=(
        "`drop` the document (`decontam.<task>`), `remove_span` (cut matched spans plus `margin_chars`), or `tag`"
    ))] = "drop",
    tasks: Annotated[str | Sequence[str] | None, Field(description=(
        "eval files or globs (`{id, query, choices, gold}` JSON Lines); default every shipped eval set"))] = None,
    n: Annotated[int, Field(ge=1, description="n-gram length in tokens (GPT-3: 13)")] = DEFAULT_N,
    normalise: Annotated[Normaliser, Field(description=(
        "tokenisation: `words` (lower-cased `\\w+` runs), `gpt3`, `folded_words` (case, accents, width folded)"
    ))] = "words",
    item_text: Annotated[ItemText, Field(description=(
        "an item's text: query plus `gold` choice, or plus `all` choices"))] = "gold",
    max_items_per_ngram: Annotated[int | None, Field(ge=1, description=(
        "drop index n-grams shared by more items (template boilerplate)"))] = None,
    index_path: Annotated[str | None, internal("the index file the run built (`mixlab.jobs.bind_steps`)")] = None,
    cache_dir: Annotated[str | None, Field(description=(
        "where the index file is built and reused; default `runs/<mix>/decontam/`"))] = None,
    margin_chars: Annotated[int, Field(ge=0, description=(
        "`remove_span`: characters cut on each side of a match"))] = DEFAULT_MARGIN,
    max_pieces: Annotated[int, Field(ge=1, description=(
        "`remove_span`: a document cut into more pieces drops"))] = DEFAULT_MAX_PIECES,
    min_ngrams: Annotated[int, Field(ge=1, description="shared n-grams an item needs before it counts")] = 1,
) -> Decontam:
    """The ``decontam`` filter: index from ``index_path`` (if it exists), else ``cache_dir``, else built now."""
    check_policy(policy, margin_chars, max_pieces, min_ngrams)
    config = index_config(tasks, n, normalise, item_text, max_items_per_ngram)
    index = load_or_build(config, Path(index_path) if index_path else None,
                          Path(cache_dir) if cache_dir else None)
    return Decontam(index, policy, margin_chars, max_pieces, min_ngrams)


DecontamParams = params_model(decontam, "DecontamParams",
                              doc="Find eval-item n-grams in documents; drop, cut or tag (GPT-3's 13-gram rule).")


def bind_run(params: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Build the index once in the driver into ``<run_dir>/decontam/index-<key>.npz``; workers then load it."""
    if params.get("index_path"):
        return params
    settings = {k: params[k] for k in ("tasks", "n", "normalise", "item_text", "max_items_per_ngram")
                if k in params}
    config = index_config(**settings)
    cache_dir = Path(params.get("cache_dir") or run_dir / "decontam")
    path = cache_dir / f"index-{config.key()}.npz"
    load_or_build(config, path)
    return {**params, "index_path": str(path)}

"""The mixture build's contracts and decisions, without Beam: parts, held-out set, tokenizer sample, quotas, what a
worker does with one part, and what the driver writes from the workers' small summaries.

A source's cleaned Parquet (``runs/<mix>/docs/<source>/part-*.parquet``) is cut into *parts*: ranges of whole row
groups of one file (:func:`list_parts`), in file order, so a document's place in its source is (part, row). Workers
(``pipelines/build.py`` runs them on the spec's Beam runner) take one part each:

1. ``scan`` (BPE only): held-out hashes and character counts; reports the part's candidates for the tokenizer
   sample (highest hashes first, up to the per-source share of ``sample_chars``).
2. ``count``: tokenizes the part, caches its token ids, writes its per-document counts (``n_tokens``, held-out
   hash, the catalogue's columns) and reports totals plus its lowest held-out hashes (validation candidates).
3. ``write``: from the part's quota (the source's target split over its parts in whole sequences) it decides
   the part's epochs and partial epoch (:func:`mixtures.plan.part_schedule`), packs its own MDS shards into
   ``mds/train/<source>/part-NNNNN/`` and writes its rows of the catalogue's ``docs`` table. One task per source
   writes the held-out stream (at most ``max_docs`` documents plus what fills one sequence), one per removed part
   counts removed documents for the catalogue.

The driver (the functions under "driver" below, called by ``pipelines/build.py``) only ever holds per-part totals,
bounded candidate lists and per-stream shard lists: it merges candidates into the held-out set and the tokenizer
sample, plans targets from the aggregated counts (:func:`mixtures.plan.make_plan`), apportions them to parts, then
merges the parts' MDS indexes and writes ``streams.yaml``, ``plan.json``, the small catalogue tables and the
report. Every check (data present, epoch caps, quality scores) runs before any output of the run is replaced.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from filters.hashing import keyed_hash
from mixtures import catalogue
from mixtures.layout import RunLayout
from mixtures.mds import StreamStats, merge_indexes, samples_per_shard, shard_of, shard_table, write_stream
from mixtures.mixture_spec import MixtureSpec
from mixtures.plan import QUALITY_BINS, SourcePlan, apportion_parts, part_schedule, part_weights, quality_bins
from mixtures.spec import Spec, SpecError
from mixtures.streams_manifest import StreamsManifest, TrainStream
from mixtures.tokenizer import byte_table, count_tokens, prepare, tokenize

log = logging.getLogger(__name__)

DOC_COLUMNS = ["id", "url", "text", "lang", "lang_score", "quality_score", "n_chars", "dup_cluster_id"]
CATALOGUE_COLUMNS = [c for c in DOC_COLUMNS if c != "text"]
ROWS_PER_PART = 20_000  # a part is whole row groups (the cleaner writes 10,000 rows each) up to about this many rows
BATCH_ROWS = 512  # documents a worker tokenizes at once (texts never held for a whole part)
REPORT_MARK = "<!-- mixlab:mixture -->"


class MixtureError(SpecError):
    """A mixture that cannot be built from this run's data (raised before anything is written)."""


def heldout_keys(ids: Sequence[str], seed: int, source: str) -> np.ndarray:
    """Each id's held-out hash in [0, 2**64): depends only on (seed, source, id), never on the rest of the mix."""
    return np.fromiter((keyed_hash(seed, f"{source}/valid", i) for i in ids), dtype=np.uint64, count=len(ids))


def in_bucket(keys: np.ndarray, fraction: float) -> np.ndarray:
    """Which keys fall in the held-out bucket: ``key / 2**64 < fraction`` (exact integer comparison)."""
    return keys < np.uint64(min(int(fraction * 2**64), 2**64 - 1))


# ---- parts -------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Part:
    """A range of whole row groups of one Parquet file of a source: one worker's unit of work."""

    source: str
    kind: str  # "kept" (docs/) or "removed" (removed/)
    index: int  # position among the source's parts of this kind
    path: str
    row_groups: tuple[int, ...]
    first_row: int  # the part's first row within the source (file order)
    rows: int

    @property
    def name(self) -> str:
        return f"{self.index:05d}"


def list_parts(folder: Path, source: str, kind: str, rows_per_part: int = ROWS_PER_PART) -> list[Part]:
    """The parts of a source's Parquet folder, from file metadata only (no row is read)."""
    parts: list[Part] = []
    first = 0
    for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        meta = pq.ParquetFile(path).metadata
        groups: list[int] = []
        rows = 0
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            if not n:
                continue
            groups.append(g)
            rows += n
            if rows >= rows_per_part:
                parts.append(Part(source, kind, len(parts), str(path), tuple(groups), first, rows))
                first, groups, rows = first + rows, [], 0
        if groups:
            parts.append(Part(source, kind, len(parts), str(path), tuple(groups), first, rows))
            first += rows
    return parts


def read_part(part: Part, columns: list[str]) -> pa.Table:
    """The part's rows (only ``columns``; for small columns: texts are read in batches, :func:`part_batches`)."""
    return pq.ParquetFile(part.path).read_row_groups(list(part.row_groups), columns=columns)


def part_batches(part: Part, columns: list[str], rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """The part's rows in batches of ``rows``: at most one row group is decoded at a time."""
    yield from pq.ParquetFile(part.path).iter_batches(batch_size=rows, row_groups=list(part.row_groups),
                                                      columns=columns, use_threads=False)


# ---- what workers share ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BuildSettings:
    """Everything a worker needs, picklable: where the run is, the mixture's settings, the tokenizer's JSON."""

    root: str
    seed: int
    seq_len: int
    fraction: float
    candidates: int  # validation candidates each part reports: max_docs + seq_len (enough for any growth)
    prefer_quality: bool
    count_removed: bool
    shard_size: str
    share_chars: int = 0  # per-source share of the BPE sample (scan)
    tokenizer: str = ""  # tokenizers JSON (count, write)
    eos: int = -1

    @property
    def layout(self) -> RunLayout:
        return RunLayout(Path(self.root))

    def work(self, *names: str) -> Path:
        """A scratch path under ``_work/build``."""
        return self.layout.build_work.joinpath(*names)


def settings_for(spec: Spec, layout: RunLayout) -> BuildSettings:
    mix = spec.mixture
    assert mix is not None
    return BuildSettings(root=str(layout.root.resolve()), seed=spec.seed if mix.seed is None else mix.seed,
                         seq_len=mix.max_seq_len, fraction=mix.validation.fraction,
                         candidates=mix.validation.max_docs + mix.max_seq_len, prefer_quality=mix.prefer_quality,
                         count_removed=mix.count_removed, shard_size=mix.shard_size)


@dataclass(frozen=True)
class WriteTask:
    """One write-pass element: a kept part's training stream and catalogue rows, a source's held-out stream, or
    a removed part's catalogue rows."""

    kind: str  # "train" | "valid" | "removed"
    source: str
    part: Part | None = None
    quota: int = 0  # train: tokens this part writes (whole sequences)
    heldout: tuple[int, ...] = ()  # train: the part's rows that are held out (written by the valid task)
    valid_parts: tuple[tuple[Part, tuple[int, ...]], ...] = ()  # valid: (part, rows) in source order
    samples_per_shard: int = 0


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield None


def _memmap(path: Path) -> np.ndarray:
    """A token cache file (raw int32) as a read-only array, without reading it."""
    if not path.stat().st_size:
        return np.zeros(0, dtype=np.int32)
    return np.memmap(path, dtype=np.int32, mode="r")


def _write_json(path: Path, value: Any) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, sort_keys=True), encoding="utf-8")
    tmp.replace(path)
    return str(path)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def summary_path(settings: BuildSettings, step: str, task: Any) -> Path:
    """Where a task of a pass writes its summary, last of its files: the task is done when the file exists."""
    if step == "scan":
        return settings.work("scan", task.source, f"{task.name}.json")
    if step == "count":
        return settings.work("counts", task.source, f"{task.name}.json")
    if task.kind == "valid":
        return settings.work("written", "valid", f"{task.source}.json")
    return settings.work("written", task.kind, task.source, f"{task.part.name}.json")


# ---- workers -----------------------------------------------------------------------------------------------------

class Worker:
    """The per-part steps, run inside Beam workers (the tokenizer is built once per worker)."""

    def __init__(self, settings: BuildSettings) -> None:
        self.s = settings
        self._tok: Any = None
        self._table: np.ndarray | None = None

    @property
    def tok(self) -> Any:
        if self._tok is None:
            from tokenizers import Tokenizer

            self._tok = prepare(Tokenizer.from_str(self.s.tokenizer))
            self._table = byte_table(self._tok)
        return self._tok

    def scan(self, part: Part) -> str:
        """Tokenizer-sample candidates of a part: highest held-out hashes first until the share of chars."""
        t = read_part(part, ["id", "n_chars"])
        keys = heldout_keys(t["id"].to_pylist(), self.s.seed, part.source)
        order = np.argsort(keys, kind="stable")[::-1]  # highest first; equal keys: later row first
        chars = t["n_chars"].to_numpy(zero_copy_only=False).astype(np.int64)[order]
        take = min(int(np.searchsorted(np.cumsum(chars), self.s.share_chars)) + 1, len(order))
        return _write_json(summary_path(self.s, "scan", part), {
            "keys": keys[order[:take]].tolist(), "rows": (order[:take] + part.first_row).tolist(),
            "chars": chars[:take].tolist()})

    def count(self, part: Part) -> str:
        """Tokenize a part batch by batch: append its ids to the token cache, write its counts table, report
        totals and validation candidates."""
        tok = self.tok
        folder = self.s.work("tokens", part.source)
        folder.mkdir(parents=True, exist_ok=True)
        tables, lengths = [], []
        with open(folder / f"{part.name}.ids", "wb") as ids_out, \
                open(folder / f"{part.name}.bytes", "wb") if self._table is None else _nothing() as bytes_out:
            for batch in part_batches(part, DOC_COLUMNS):
                encoded = tokenize(tok, batch.column("text").to_pylist())
                ids_out.write(encoded.ids.tobytes())
                if bytes_out is not None:
                    bytes_out.write(encoded.n_bytes.tobytes())
                lengths.append(encoded.lengths)
                tables.append(pa.Table.from_batches([batch]).drop_columns(["text"]))
        lengths_all = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
        t = pa.concat_tables(tables) if tables else pa.table({c: [] for c in CATALOGUE_COLUMNS})
        keys = heldout_keys(t["id"].to_pylist(), self.s.seed, part.source)
        counts = t.append_column("n_tokens", pa.array(lengths_all, pa.int64())) \
            .append_column("heldout_key", pa.array(keys, pa.uint64()))
        path = self.s.work("counts", part.source, f"{part.name}.parquet")
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(counts, path, compression="zstd")
        lowest = np.argsort(keys, kind="stable")[: self.s.candidates]
        bins = quality_bins(t["quality_score"].to_pylist()) if self.s.prefer_quality else np.zeros(len(t), np.int64)
        hist = np.bincount(bins, weights=lengths_all + 1, minlength=QUALITY_BINS + 1).astype(np.int64)
        return _write_json(summary_path(self.s, "count", part), {
            "rows": part.rows, "tokens": int(lengths_all.sum()) + part.rows, "token_ids": int(lengths_all.sum()),
            "bucket": int(in_bucket(keys, self.s.fraction).sum()),
            "quality": len(t) - t["quality_score"].null_count,
            "quality_hist": hist.tolist() if self.s.prefer_quality else None,
            "candidates": {"keys": keys[lowest].tolist(), "rows": (lowest + part.first_row).tolist(),
                           "lengths": (lengths_all[lowest] + 1).tolist(), "bins": bins[lowest].tolist()}})

    def _doc_tokens(self, part: Part) -> tuple[np.ndarray, np.ndarray | None]:
        folder = self.s.work("tokens", part.source)
        ids = _memmap(folder / f"{part.name}.ids")
        nbytes = None if self._table is not None else _memmap(folder / f"{part.name}.bytes")
        return ids, nbytes

    def _slices(self, part: Part, counts: pa.Table, rows: np.ndarray,
                number: Iterator[int] | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(index, ids, bytes)`` of the part's rows in the given order, read from the token cache."""
        _ = self.tok  # the byte table
        ids, nbytes = self._doc_tokens(part)
        offsets = np.concatenate([[0], np.cumsum(counts["n_tokens"].to_numpy())])
        for i in rows:
            lo, hi = int(offsets[i]), int(offsets[i + 1])
            doc = np.asarray(ids[lo:hi], dtype=np.int32)
            if self._table is not None:
                per = self._table[doc]
            else:
                assert nbytes is not None  # written beside the ids when there is no byte table
                per = np.asarray(nbytes[lo:hi], dtype=np.int32)
            yield (next(number) if number is not None else int(i)), doc, per

    def _counts(self, part: Part) -> pa.Table:
        return pq.read_table(self.s.work("counts", part.source, f"{part.name}.parquet"))

    def write(self, task: WriteTask) -> str:
        """Run one write task; returns the path of its summary."""
        if task.kind == "train":
            return self._write_train(task)
        if task.kind == "valid":
            return self._write_valid(task)
        return self._write_removed(task)

    def _write_train(self, task: WriteTask) -> str:
        part = task.part
        assert part is not None
        counts = self._counts(part)
        n = counts.num_rows
        lengths = counts["n_tokens"].to_numpy() + 1
        train = np.setdiff1d(np.arange(n), np.asarray(task.heldout, dtype=np.int64))
        ids = counts["id"].to_pylist()
        quality = counts["quality_score"].to_pylist() if self.s.prefer_quality else None
        epochs = part_schedule(part.source, [ids[i] for i in train], lengths[train], task.quota, self.s.seed,
                               [quality[i] for i in train] if quality is not None else None)
        order = train[np.concatenate(epochs)] if epochs else train[:0]
        stats, shards, folder = StreamStats(), [], None
        if task.quota:
            stream = self.s.layout.stream("train", part.source)
            out = RunLayout.stream_part(stream, part.index)
            self.s.layout.remove(out)  # a retried task starts over (strictly inside the run)
            folder = out.name
            stats = write_stream(out, self._slices(part, counts, order), self.s.eos, self.s.seq_len, task.quota,
                                 self.s.shard_size, task.samples_per_shard)
            shards = shard_table(out)
        uses = np.bincount(order, minlength=n)
        shard = [f"{folder}/{shard_of(shards, stats.first_sample[i])}" if uses[i] else None for i in train]
        self._catalogue_rows(f"{part.source}.kept.{part.name}", counts.take(pa.array(train)), part.source,
                             split="train", epochs=uses[train], shard=shard)
        return _write_json(summary_path(self.s, "write", task), {
            "folder": folder, "samples": stats.samples, "tokens": stats.tokens, "n_bytes": stats.n_bytes,
            "docs": int((uses > 0).sum())})

    def _write_valid(self, task: WriteTask) -> str:
        tables, docs = [], []
        number = iter(range(1 << 62))
        for part, rows in task.valid_parts:
            counts = self._counts(part)
            take = np.asarray(rows, dtype=np.int64)
            tables.append(counts.take(pa.array(take)))
            docs.append(self._slices(part, counts, take, number))
        stream = self.s.layout.stream("valid", task.source)
        self.s.layout.remove(stream)  # a retried task starts over (strictly inside the run)
        chained = (d for part_docs in docs for d in part_docs)
        stats = write_stream(stream, chained, self.s.eos, self.s.seq_len, None, self.s.shard_size,
                             task.samples_per_shard)
        shards = shard_table(stream)
        table = pa.concat_tables(tables)
        shard = [shard_of(shards, stats.first_sample[i]) if i in stats.first_sample else None
                 for i in range(table.num_rows)]
        self._catalogue_rows(f"{task.source}.valid", table, task.source, split="valid",
                             epochs=np.zeros(table.num_rows, dtype=np.int64), shard=shard)
        return _write_json(summary_path(self.s, "write", task), {
            "samples": stats.samples, "tokens": stats.tokens, "n_bytes": stats.n_bytes, "docs": table.num_rows,
            "dropped": stats.dropped_tokens})

    def _write_removed(self, task: WriteTask) -> str:
        part = task.part
        assert part is not None
        t = read_part(part, [*CATALOGUE_COLUMNS, "reason"])
        n_tokens = None
        if self.s.count_removed:
            n_tokens = np.concatenate([np.zeros(0, dtype=np.int64), *(
                count_tokens(self.tok, b.column("text").to_pylist()) for b in part_batches(part, ["text"]))])
        rows = {c: t[c] for c in CATALOGUE_COLUMNS}
        catalogue.write_docs_part(self.s.layout.catalogue_docs / f"{part.source}.removed.{part.name}.parquet", {
            **rows, "source": [part.source] * t.num_rows,
            "n_tokens": pa.array(n_tokens, pa.int64()) if n_tokens is not None else pa.nulls(t.num_rows, pa.int64()),
            "kept": [False] * t.num_rows, "reason": t["reason"], "split": pa.nulls(t.num_rows, pa.string()),
            "epochs": np.zeros(t.num_rows, dtype=np.int32), "shard": pa.nulls(t.num_rows, pa.string())})
        return _write_json(summary_path(self.s, "write", task), {"rows": t.num_rows})

    def _catalogue_rows(self, name: str, counts: pa.Table, source: str, split: str, epochs: np.ndarray,
                        shard: list[str | None]) -> None:
        n = counts.num_rows
        catalogue.write_docs_part(self.s.layout.catalogue_docs / f"{name}.parquet", {
            **{c: counts[c] for c in CATALOGUE_COLUMNS}, "source": [source] * n, "n_tokens": counts["n_tokens"],
            "kept": [True] * n, "reason": pa.nulls(n, pa.string()), "split": [split] * n,
            "epochs": np.asarray(epochs, dtype=np.int32), "shard": pa.array(shard, pa.string())})


# ---- driver: merging the workers' reports ------------------------------------------------------------------------

def tokenizer_sample(settings: BuildSettings, parts: dict[str, list[Part]]) -> Iterator[str]:
    """The BPE's training texts: per source (sorted) the highest held-out hashes, at most half the source, until
    the share of characters; merged from the parts' scan reports, then read part by part (bounded memory)."""
    for source in sorted(parts):
        n = sum(p.rows for p in parts[source])
        keys, rows, chars = np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        for part in parts[source]:
            got = _read_json(summary_path(settings, "scan", part))
            keys = np.concatenate([keys, np.array(got["keys"], dtype=np.uint64)])
            rows = np.concatenate([rows, np.array(got["rows"], dtype=np.int64)])
            chars = np.concatenate([chars, np.array(got["chars"], dtype=np.int64)])
            order = np.lexsort((rows, keys))[::-1]  # key descending, then row descending
            keys, rows, chars = keys[order], rows[order], chars[order]
            take = min(int(np.searchsorted(np.cumsum(chars), settings.share_chars)) + 1, len(keys))
            keys, rows, chars = keys[:take], rows[:take], chars[:take]
        rows = rows[: n // 2]  # never the lower half (held-out documents are among the lowest hashes)
        texts = _texts_at(parts[source], rows)
        for r in rows:
            yield texts[int(r)]


def _texts_at(parts: list[Part], rows: np.ndarray) -> dict[int, str]:
    """The texts of the given source rows, reading each part holding some in batches."""
    wanted = np.sort(rows)
    out: dict[int, str] = {}
    for part in parts:
        local = wanted[(wanted >= part.first_row) & (wanted < part.first_row + part.rows)] - part.first_row
        start = 0
        for batch in part_batches(part, ["text"]) if len(local) else ():
            inside = local[(local >= start) & (local < start + batch.num_rows)]
            if len(inside):
                texts = batch.column("text").take(pa.array(inside - start)).to_pylist()
                out.update(zip((inside + part.first_row).tolist(), texts, strict=True))
            start += batch.num_rows
    return out


@dataclass
class SourceCounts:
    """A source's aggregated counts (from its parts' reports) and, once chosen, its held-out documents."""

    name: str
    parts: list[Part]
    rows: int = 0
    tokens: int = 0  # with one EOS per document
    token_ids: int = 0
    bucket: int = 0
    quality: int = 0
    part_tokens: list[int] = field(default_factory=list)
    part_hists: list[np.ndarray] | None = None  # prefer_quality: tokens per quality bin, per part
    valid_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # sorted, source rows
    valid_tokens: int = 0
    candidates: tuple[np.ndarray, ...] | None = None  # keys, rows, lengths, quality bins: lowest keys first

    @property
    def train_docs(self) -> int:
        return self.rows - len(self.valid_rows)

    @property
    def train_tokens(self) -> int:
        return self.tokens - self.valid_tokens

    def heldout_in(self, part: Part) -> np.ndarray:
        """The part's local rows that are held out."""
        lo = np.searchsorted(self.valid_rows, part.first_row)
        hi = np.searchsorted(self.valid_rows, part.first_row + part.rows)
        return self.valid_rows[lo:hi] - part.first_row

    def _held(self, part: Part) -> tuple[np.ndarray, np.ndarray]:
        """Token lengths and quality bins of the part's held-out documents (from the candidates)."""
        assert self.candidates is not None
        _, rows, lengths, bins = self.candidates
        at = np.searchsorted(rows, self.heldout_in(part) + part.first_row, sorter=np.argsort(rows, kind="stable"))
        order = np.argsort(rows, kind="stable")[at]
        return lengths[order], bins[order]

    def part_train_tokens(self) -> list[int]:
        """Training tokens (with EOS) per part: the part's tokens minus its held-out documents'."""
        return [tokens - int(self._held(part)[0].sum()) for part, tokens in zip(self.parts, self.part_tokens,
                                                                                 strict=True)]

    def part_train_hists(self) -> list[np.ndarray] | None:
        """Training tokens per quality bin per part (prefer_quality), held-out documents taken out."""
        if self.part_hists is None:
            return None
        out: list[Any] = []
        for part, hist in zip(self.parts, self.part_hists, strict=True):
            lengths, bins = self._held(part)
            out.append(hist - np.bincount(bins, weights=lengths, minlength=len(hist)).astype(np.int64))
        return out


def aggregate_counts(settings: BuildSettings, source: str, parts: list[Part]) -> SourceCounts:
    """Sum a source's part reports; keep its ``settings.candidates`` lowest held-out hashes (merged per part)."""
    agg = SourceCounts(source, parts)
    keys, rows, lengths = np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    bins = np.zeros(0, dtype=np.int64)
    for part in parts:
        got = _read_json(summary_path(settings, "count", part))
        agg.rows += got["rows"]
        agg.tokens += got["tokens"]
        agg.token_ids += got["token_ids"]
        agg.bucket += got["bucket"]
        agg.quality += got["quality"]
        agg.part_tokens.append(got["tokens"])
        if got["quality_hist"] is not None:
            agg.part_hists = [*(agg.part_hists or []), np.array(got["quality_hist"], dtype=np.int64)]
        c = got["candidates"]
        keys = np.concatenate([keys, np.array(c["keys"], dtype=np.uint64)])
        rows = np.concatenate([rows, np.array(c["rows"], dtype=np.int64)])
        lengths = np.concatenate([lengths, np.array(c["lengths"], dtype=np.int64)])
        bins = np.concatenate([bins, np.array(c["bins"], dtype=np.int64)])
        order = np.lexsort((rows, keys))[: settings.candidates]  # key ascending, then row ascending
        keys, rows, lengths, bins = keys[order], rows[order], lengths[order], bins[order]
    agg.candidates = (keys, rows, lengths, bins)
    return agg


def choose_validation(src: SourceCounts, mix: MixtureSpec, required: bool) -> None:
    """Hold out the bucket of documents with the lowest hashes, adjusted as before (docs/mixture.md):

    grown to ``min_docs``, cut to ``max_docs`` and half the source, then grown (next-lowest hashes) until the held-out
    documents fill one sequence; if half the source cannot, an error (or no validation at weight 0).
    """
    if not src.rows:
        return
    n, seq_len = src.rows, mix.max_seq_len
    want = min(max(src.bucket, mix.validation.min_docs), mix.validation.max_docs, n // 2)
    if want < src.bucket:
        log.warning("mixture: %s: %d documents fall in the held-out bucket but max_docs / half the source allow "
                    "%d; the other %d are trained on (other mixes may hold them out)", src.name, src.bucket, want,
                    src.bucket - want)
    assert src.candidates is not None
    _, rows, lengths, _ = src.candidates
    cum = np.concatenate([[0], np.cumsum(lengths)])
    k = want
    while cum[k] < seq_len and k < n // 2:
        k += 1
    if cum[k] < seq_len and not required:
        log.warning("mixture: %s (weight 0) is too small for a validation sequence; it gets no streams", src.name)
        k = 0
    elif cum[k] < seq_len:
        raise MixtureError(f"source {src.name!r}: {n} documents, {src.tokens:,} tokens: too little "
                           f"to hold out one validation sequence of {seq_len} tokens from half of it")
    src.valid_rows = np.sort(rows[:k])
    src.valid_tokens = int(cum[k])


def check_quality(src: SourceCounts, plan: SourcePlan, mix: MixtureSpec) -> None:
    if mix.prefer_quality and plan.partial_tokens and not src.quality:
        raise MixtureError(f"source {src.name!r}: prefer_quality is set but no document has a quality_score "
                           "(add a quality classifier to its chain, or set prefer_quality: false)")


def write_tasks(srcs: dict[str, SourceCounts], plans: list[SourcePlan], removed: dict[str, list[Part]],
                seq_len: int, per_shard: int) -> list[WriteTask]:
    """Every write-pass element: a train task per kept part (its quota), a valid task per source, removed parts."""
    tasks: list[WriteTask] = []
    for p in plans:
        src = srcs[p.source]
        weights = part_weights(p.full_epochs, p.partial_tokens, src.part_train_tokens(), src.part_train_hists())
        quotas = apportion_parts(p.target_tokens, seq_len, weights) if src.parts else []
        for part, quota in zip(src.parts, quotas, strict=True):
            tasks.append(WriteTask("train", p.source, part, quota, tuple(src.heldout_in(part).tolist()),
                                   samples_per_shard=per_shard))
        if len(src.valid_rows):
            held = tuple((part, tuple(src.heldout_in(part).tolist())) for part in src.parts
                         if len(src.heldout_in(part)))
            tasks.append(WriteTask("valid", p.source, valid_parts=held, samples_per_shard=per_shard))
        tasks.extend(WriteTask("removed", p.source, part) for part in removed.get(p.source, []))
    return tasks


@dataclass
class Written:
    """A written stream: its stats, shard table and how many documents it used."""

    split: str
    source: str
    path: Path
    stats: StreamStats
    shards: list[dict[str, object]]
    docs: int
    parts: int = 1


def merge_train(settings: BuildSettings, source: str, parts: list[Part]) -> Written | None:
    """Merge a source's part streams into one MDS folder (its ``index.json``); None when nothing was written."""
    stats, folders, docs = StreamStats(), [], 0
    for part in parts:
        got = _read_json(summary_path(settings, "write", WriteTask("train", source, part)))
        docs += got["docs"]
        if got["folder"]:
            folders.append(got["folder"])
            stats.samples += got["samples"]
            stats.tokens += got["tokens"]
            stats.n_bytes += got["n_bytes"]
    if not folders:
        return None
    path = settings.layout.stream("train", source)
    index = merge_indexes(path, folders)
    return Written("train", source, path, stats, shard_table(path, index), docs, len(folders))


def valid_written(settings: BuildSettings, source: str) -> Written:
    got = _read_json(summary_path(settings, "write", WriteTask("valid", source)))
    path = settings.layout.stream("valid", source)
    stats = StreamStats(samples=got["samples"], tokens=got["tokens"], n_bytes=got["n_bytes"],
                        dropped_tokens=got["dropped"])
    return Written("valid", source, path, stats, shard_table(path), got["docs"])


def per_shard_samples(plans: list[SourcePlan], seq_len: int) -> int:
    """Samples per MDS shard, the same for every stream (mixtures.mds.samples_per_shard)."""
    return samples_per_shard(sum(p.target_tokens for p in plans) // seq_len)


def clear_outputs(layout: RunLayout) -> None:
    """Remove what a mixture build replaces (only called once every check has passed)."""
    for path in layout.mixture_outputs:
        layout.remove(path)  # strictly inside the run: a symlinked output is unlinked, its target kept


# ---- driver: manifests, plan, catalogue, report ------------------------------------------------------------------

def print_plan(plans: list[SourcePlan], srcs: dict[str, SourceCounts], mix: MixtureSpec) -> None:
    print(f"mixture plan: {sum(p.target_tokens for p in plans):,} training tokens in sequences of "
          f"{mix.max_seq_len} (tokens include one EOS per document)")
    print(f"  {'source':<14}{'weight':>8}{'available':>14}{'target':>14}{'epochs':>8}{'cap':>6}{'valid docs':>12}")
    for p in plans:
        print(f"  {p.source:<14}{p.weight:>8.4g}{p.available_tokens:>14,}{p.target_tokens:>14,}{p.epochs:>8.3f}"
              f"{p.epoch_cap:>6g}{len(srcs[p.source].valid_rows):>12,}")


def write_manifests(layout: RunLayout, spec: Spec, plans: list[SourcePlan], srcs: dict[str, SourceCounts],
                    written: list[Written], vocab_size: int, eos: int, seed: int) -> dict[str, Any]:
    """Write ``streams.yaml`` (llm-foundry's ``streams`` verbatim, ``choose`` per stream) and ``plan.json``."""
    mix = spec.mixture
    assert mix is not None
    total = sum(p.target_tokens for p in plans)
    train = {w.source: w for w in written if w.split == "train"}
    samples = sum(w.stats.samples for w in train.values())
    StreamsManifest(
        max_seq_len=mix.max_seq_len, vocab_size=vocab_size, eos_token_id=eos, tokenizer=layout.tokenizer.resolve(),
        streams={s: TrainStream.chosen(w.path.resolve(), w.stats.samples, samples) for s, w in train.items()},
        validation={w.source: w.path.resolve() for w in written if w.split == "valid"},
    ).write(layout.streams)
    valid = {w.source: w for w in written if w.split == "valid"}
    lines = []
    for p in plans:
        w, v = train.get(p.source), valid.get(p.source)
        lines.append({**p.as_dict(), "docs_used": w.docs if w else 0, "written_tokens": w.stats.tokens if w else 0,
                      "samples": w.stats.samples if w else 0, "parts": w.parts if w else 0,
                      "valid_docs": len(srcs[p.source].valid_rows), "valid_tokens": v.stats.tokens if v else 0})
    plan_doc = {"spec": spec.name, "seed": seed, "tokenizer": mix.tokenizer.name, "vocab_size": vocab_size,
                "max_seq_len": mix.max_seq_len, "budget_tokens": mix.total_tokens, "total_tokens": total,
                "on_shortfall": mix.on_shortfall, "prefer_quality": mix.prefer_quality, "sources": lines}
    layout.plan.write_text(json.dumps(plan_doc, indent=2) + "\n")
    return plan_doc


def write_catalogue_tables(layout: RunLayout, written: list[Written], epochs: dict[str, float]) -> None:
    """The small tables: one row per shard and per stream (``docs`` is written by the workers, in parts)."""
    catalogue.write_table(layout.root, "shards", [{"split": w.split, "source": w.source, **sh} for w in written
                                                  for sh in w.shards])
    total = sum(x.stats.tokens for x in written if x.split == "train")
    catalogue.write_table(layout.root, "streams", [
        {"split": w.split, "source": w.source, "path": str(w.path.relative_to(layout.root)), "samples": w.stats.samples,
         "tokens": w.stats.tokens, "n_bytes": w.stats.n_bytes, "docs": w.docs,
         "proportion": w.stats.tokens / total if w.split == "train" else None,
         "epochs": epochs.get(w.source, 0.0) if w.split == "train" else 1.0, "shards": len(w.shards)}
        for w in written])


def report_section(layout: RunLayout, plan: dict[str, Any]) -> None:
    """Replace the mixture section of ``report.md`` (everything after the marker) with this plan."""
    lines = [REPORT_MARK, "## Mixture", "",
             f"{plan['total_tokens']:,} training tokens, sequences of {plan['max_seq_len']}, tokenizer "
             f"`{plan['tokenizer']}` (vocab {plan['vocab_size']:,}), seed {plan['seed']}. Streams: `streams.yaml`; "
             "plan: `plan.json`; catalogue: `mixlab tokens` over `catalogue/`.", "",
             "| source | weight | available tokens | target tokens | share | epochs | docs used | valid docs "
             "| valid tokens |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in plan["sources"]:
        share = s["target_tokens"] / plan["total_tokens"]
        lines.append(f"| {s['source']} | {s['weight']:g} | {s['available_tokens']:,} | {s['target_tokens']:,} | "
                     f"{share:.2%} | {s['epochs']:.3f} | {s['docs_used']:,} | {s['valid_docs']:,} | "
                     f"{s['valid_tokens']:,} |")
    report = layout.report
    head = report.read_text(encoding="utf-8").split(REPORT_MARK)[0].rstrip() if report.exists() else "# Report"
    report.write_text(head + "\n\n" + "\n".join(lines) + "\n", encoding="utf-8")


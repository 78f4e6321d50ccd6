"""Beam transforms shared by every pipeline: reading, the fused filter chain, accounting and sorted writing.

Stage contract: a corpus-level stage factory ``factory(stage=i, **params)`` returns a ``PTransform`` from a
``PCollection[Document]`` to a dict with ``"kept"`` (documents), ``"removed"`` (``(Document, reason, stage)``)
and optionally ``"edits"`` (``((source, reason), chars)`` for line-level removals). Document-level filters
are fused into one :class:`ApplyFilters` ``ParDo`` per run of consecutive filters.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq
import xxhash

from filters.base import Document, run_chain
from filters.registry import build_filter
from mixtures import progress
from pipelines.readers import Quarantined, ReaderOptions, read_located

log = logging.getLogger(__name__)

QUARANTINE = "quarantine"
REMOVED = "removed"
EDITS = "edits"
KEPT = "kept"
Event = tuple[tuple[str, str], tuple[int, int]]


def split_tagged(pcoll: beam.PCollection, tags: Sequence[str], label: str) -> dict[str, beam.PCollection]:
    """Split ``(tag, value)`` pairs into one PCollection per tag.

    Used instead of ``ParDo.with_outputs`` because not every runner routes tagged outputs (DaskRunner sends
    them all to every output), and a Mixlab pipeline must run unchanged on any runner.
    """
    return {
        tag: pcoll | f"{label}/{tag}" >> beam.FlatMap(lambda item, t=tag: [item[1]] if item[0] == t else [])
        for tag in tags
    }


def sum_pairs(values: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """Add (documents, characters) pairs; associative, so Beam may combine partial sums anywhere."""
    docs = chars = 0
    for d, c in values:
        docs += d
        chars += c
    return docs, chars


class ReadRecords(beam.DoFn):
    """Read one path; emit ``("kept", (location, Document))`` and ``("quarantine", Quarantined)`` pairs."""

    def __init__(self, opts: ReaderOptions, reader: str | None, limit: int | None) -> None:
        self.opts, self.reader, self.limit = opts, reader, limit

    def process(self, path: str) -> Iterator[Any]:
        started, n = time.monotonic(), 0
        for location, record in read_located(path, self.opts, self.reader):
            if isinstance(record, Quarantined):
                yield QUARANTINE, record
                continue
            n += 1
            if n % 20_000 == 0:
                log.info("%s: read %d documents from %s (%.0f docs/s)", self.opts.source, n, path,
                         n / max(time.monotonic() - started, 1e-9))
            progress.count("read", self.opts.source, 1, len(record.text))
            yield KEPT, (location, record)
            if self.limit is not None and n >= self.limit:
                log.info("%s: stopped at limit=%d in %s", self.opts.source, self.limit, path)
                return


class ApplyFilters(beam.DoFn):
    """Run consecutive document-level filters; filters (and their models) are built once per worker."""

    def __init__(self, steps: Sequence[tuple[str, dict[str, Any]]], first_stage: int) -> None:
        self.steps, self.first_stage = list(steps), first_stage
        self.chain: list[Any] = []

    def setup(self) -> None:
        self.chain = [build_filter(name, params) for name, params in self.steps]

    def process(self, doc: Document) -> Iterator[Any]:
        source = doc.source
        if self.first_stage == 0:
            progress.count("filter", source)
        outcome = run_chain(doc, self.chain)
        for reason, chars in outcome.edits.items():
            yield EDITS, ((source, reason), chars)
        if outcome.doc is None:
            assert outcome.stage is not None and outcome.reason is not None
            yield REMOVED, (doc, outcome.reason, self.first_stage + outcome.stage)
        else:
            yield KEPT, outcome.doc


class FilterChain(beam.PTransform):
    """A corpus stage made of fused document-level filters (same outputs as any corpus stage)."""

    def __init__(self, steps: Sequence[tuple[str, dict[str, Any]]], first_stage: int) -> None:
        super().__init__()
        self.steps, self.first_stage = list(steps), first_stage

    def expand(self, docs: beam.PCollection) -> dict[str, beam.PCollection]:
        tagged = docs | "Apply" >> beam.ParDo(ApplyFilters(self.steps, self.first_stage))
        return split_tagged(tagged, (KEPT, REMOVED, EDITS), "Split")


def removed_events(item: tuple[Document, str, int]) -> Event:
    doc, reason, stage = item
    return (doc.source, f"removed\t{stage}\t{reason}"), (1, len(doc.text))


def sort_key(row: dict[str, Any]) -> tuple[str, str]:
    """Total order on rows: by id, then by a text hash so duplicate ids still sort the same way every run."""
    return row["id"], hashlib.md5(row.get("text", "").encode("utf-8")).hexdigest()


def shard_of(row_id: str, shards: int) -> int:
    return int(hashlib.md5(row_id.encode("utf-8")).hexdigest()[:8], 16) % shards


def partition_of(key: str, parts: int) -> int:
    """The partition of a grouping key (a stage's key rendered as text): stable on every machine and runner."""
    return xxhash.xxh3_64_intdigest(key) % parts if parts > 1 else 0


# ---- parts on disk: every intermediate and final file is written under a temporary name, then renamed -----------

SPILL_SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string()), ("url", pa.string()), ("text", pa.string()),
                          ("meta", pa.binary()), ("location", pa.string())])
SPILL_COMPRESSION = "lz4"  # intermediate files: cheap to write and read; the outputs use zstd
BATCH_BYTES = 32 << 20  # rows are written in batches of about this much text, so no part is held whole


def spill_row(doc: Document, location: str | None = None) -> dict[str, Any]:
    """A document as an intermediate row (meta pickled, so every value survives exactly)."""
    return {"id": doc.id, "source": doc.source, "url": doc.url, "text": doc.text,
            "meta": pickle.dumps(doc.meta, protocol=5), "location": location}


def spill_doc(row: dict[str, Any]) -> Document:
    return Document(id=row["id"], text=row["text"], source=row["source"], url=row["url"],
                    meta=pickle.loads(row["meta"]))


def _row_bytes(row: dict[str, Any]) -> int:
    text = row.get("text") or row.get("raw") or ""
    return len(text) + 64


def replace_atomically(tmp: Path, final: Path) -> None:
    """Move a finished temporary file into place (readers never see a half-written part)."""
    os.replace(tmp, final)


def temporary(path: Path) -> Path:
    """A temporary name next to ``path``; readers glob ``*.parquet`` and never see it."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


class PartFiles:
    """Rows into ``<root>/<dest>/<producer>.parquet``, one file per destination, in bounded batches.

    Nothing is visible until :meth:`close`, which renames every finished file into place; destinations that got
    no row get no file.
    """

    def __init__(self, root: str | Path, producer: str, schema: pa.Schema, compression: str = SPILL_COMPRESSION,
                 batch_bytes: int = BATCH_BYTES) -> None:
        self.root, self.producer, self.schema = Path(root), producer, schema
        self.compression, self.batch_bytes = compression, batch_bytes
        self._rows: dict[str, list[dict[str, Any]]] = {}
        self._size: dict[str, int] = {}
        self._writers: dict[str, tuple[pq.ParquetWriter, Path, Path]] = {}

    def add(self, dest: str, row: dict[str, Any]) -> None:
        self._rows.setdefault(dest, []).append(row)
        self._size[dest] = self._size.get(dest, 0) + _row_bytes(row)
        if self._size[dest] >= self.batch_bytes:
            self._flush(dest)

    def _flush(self, dest: str) -> None:
        rows = self._rows.pop(dest, [])
        self._size.pop(dest, None)
        if not rows:
            return
        if dest not in self._writers:
            final = self.root / dest / f"{self.producer}.parquet"
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = temporary(final)
            self._writers[dest] = (pq.ParquetWriter(tmp, self.schema, compression=self.compression), tmp, final)
        self._writers[dest][0].write_table(pa.Table.from_pylist(rows, schema=self.schema))

    def close(self) -> list[str]:
        for dest in list(self._rows):
            self._flush(dest)
        out = []
        for writer, tmp, final in self._writers.values():
            writer.close()
            replace_atomically(tmp, final)
            out.append(str(final))
        self._writers.clear()
        return sorted(out)


class _WriteGroup(beam.DoFn):
    def __init__(self, root: str, producer: str, schema: pa.Schema, compression: str) -> None:
        self.root, self.producer, self.schema, self.compression = root, producer, schema, compression

    def process(self, item: tuple[str, Iterable[dict[str, Any]]]) -> Iterator[str]:
        dest, rows = item
        files = PartFiles(self.root, self.producer, self.schema, self.compression)
        for row in rows:
            files.add(dest, row)
        yield from files.close()


class WriteParts(beam.PTransform):
    """``(dest, row)`` pairs -> ``<root>/<dest>/<producer>.parquet`` (one GroupByKey: one file per destination).

    The file set and the rows in each file depend only on the rows, never on bundles or workers, so a retried
    or resumed part rewrites exactly the same files. Yields the paths written.
    """

    def __init__(self, root: str | Path, producer: str, schema: pa.Schema,
                 compression: str = SPILL_COMPRESSION) -> None:
        super().__init__()
        self.root, self.producer, self.schema, self.compression = str(root), producer, schema, compression

    def expand(self, pairs: beam.PCollection) -> beam.PCollection:
        return (pairs
                | "Group" >> beam.GroupByKey()
                | "Write" >> beam.ParDo(_WriteGroup(self.root, self.producer, self.schema, self.compression)))


def part_files(root: str | Path, dest: str) -> list[str]:
    """The finished files of one destination (temporary files are never listed)."""
    return sorted(str(p) for p in (Path(root) / dest).glob("*.parquet"))


def iter_part_rows(paths: Iterable[str], columns: list[str] | None = None,
                   batch_rows: int = 2048) -> Iterator[dict[str, Any]]:
    """Rows of part files in file order, read in batches (memory stays flat)."""
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns):
            yield from batch.to_pylist()


class ReadParts(beam.DoFn):
    """A part file -> its documents (``with_location``: ``(location, Document)`` pairs, as the readers give)."""

    def __init__(self, with_location: bool = False) -> None:
        self.with_location = with_location

    def process(self, path: str) -> Iterator[Any]:
        for row in iter_part_rows([path]):
            doc = spill_doc(row)
            yield (row["location"], doc) if self.with_location else doc


def _md5_column(table: pa.Table) -> pa.Array:
    if "text" not in table.column_names:
        return pa.array([hashlib.md5(b"").hexdigest()] * len(table), pa.string())
    out: list[str] = []
    for chunk in table["text"].chunks:
        for start in range(0, len(chunk), 4096):
            out.extend(hashlib.md5((t or "").encode("utf-8")).hexdigest()
                       for t in chunk.slice(start, 4096).to_pylist())
    return pa.array(out, pa.string())


def write_sorted_part(paths: Sequence[str], out: str | Path, schema: pa.Schema, row_group_size: int = 10_000) -> int:
    """Gather one output shard from its part files, sort it by :func:`sort_key`, write it under a temporary name
    and rename it into place; returns the number of rows (no file when there are none).

    Rows stay Arrow columns: only the ids and text hashes are compared, and the table is reordered with ``take``.
    """
    tables = [pq.read_table(p, schema=schema) for p in paths]
    table = pa.concat_tables(tables).combine_chunks() if tables else schema.empty_table()
    if not len(table):
        return 0
    keys = pa.table({"id": table["id"], "md5": _md5_column(table)})
    order = pa.compute.sort_indices(keys, sort_keys=[("id", "ascending"), ("md5", "ascending")])
    table = table.take(order)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary(out)
    pq.write_table(table, tmp, compression="zstd", row_group_size=row_group_size)
    replace_atomically(tmp, out)
    return len(table)


def write_sorted_lines(path: str, lines: Iterable[str]) -> str:
    """Write lines, sorted, to a file (small side outputs: the combined events, the list of outputs)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(f"{line}\n" for line in sorted(lines)), encoding="utf-8")
    return path


def event_line(item: Event) -> str:
    (source, kind), (docs, chars) = item
    return json.dumps({"source": source, "kind": kind, "docs": docs, "chars": chars}, sort_keys=True)

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
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq

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


class _WriteShard(beam.DoFn):
    def __init__(self, directory: str, schema: pa.Schema, shards: int) -> None:
        self.directory, self.schema, self.shards = directory, schema, shards

    def process(self, item: tuple[tuple[str, int], Iterable[dict[str, Any]]]) -> Iterator[str]:
        (group, shard), rows = item
        ordered = sorted(rows, key=sort_key)
        path = f"{self.directory}/{group}/part-{shard:05d}-of-{self.shards:05d}.parquet"
        Path(path).parent.mkdir(parents=True, exist_ok=True)  # every group's folder exists, maybe empty
        if not ordered:  # no 0-row parts: Hugging Face datasets cannot load them (the set of files stays data-only)
            return
        progress.count(Path(self.directory).name, group, len(ordered))  # "docs", "removed", "quarantine"
        table = pa.Table.from_pylist(ordered, schema=self.schema)
        pq.write_table(table, path, compression="zstd", row_group_size=10_000)
        yield path


class WriteSortedParquet(beam.PTransform):
    """Write rows as ``<dir>/<group>/part-NNNNN-of-MMMMM.parquet``, each shard sorted: byte-identical reruns.

    Rows are hashed to shards by id; every shard that holds rows is written (empty shards are not: 0-row Parquet
    files break Hugging Face ``datasets``), so the set of files depends only on the data, never on the runner,
    the worker count or bundle boundaries.
    """

    def __init__(self, directory: str, schema: pa.Schema, groups: Sequence[str], shards: int,
                 group_of: Callable[[dict[str, Any]], str]) -> None:
        super().__init__()
        self.directory, self.schema, self.groups, self.shards = directory, schema, list(groups), shards
        self.group_of = group_of

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        shards, group_of = self.shards, self.group_of
        keyed = rows | "Key" >> beam.Map(lambda r: ((group_of(r), shard_of(r["id"], shards)), r))
        empty = (rows.pipeline | "AllShards" >> beam.Create(
            [((g, s), None) for g in self.groups for s in range(shards)]))
        return (
            (keyed, empty)
            | "Flatten" >> beam.Flatten()
            | "Group" >> beam.GroupByKey()
            | "DropMarkers" >> beam.MapTuple(lambda k, rs: (k, [r for r in rs if r is not None]))
            | "Write" >> beam.ParDo(_WriteShard(self.directory, self.schema, shards))
        )


def write_sorted_lines(path: str, lines: Iterable[str]) -> str:
    """Write lines, sorted, to a file (small side outputs: the combined events, the list of outputs)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(f"{line}\n" for line in sorted(lines)), encoding="utf-8")
    return path


def event_line(item: Event) -> str:
    (source, kind), (docs, chars) = item
    return json.dumps({"source": source, "kind": kind, "docs": docs, "chars": chars}, sort_keys=True)

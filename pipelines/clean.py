"""The cleaning pipeline of a mixture spec, run with Apache Beam as a sequence of resumable parts on disk.

read -> quarantine malformed -> per-source filter chain (document filters fused, corpus stages in between)
-> global stages -> sorted Parquet per source and size-based shard (kept, removed, quarantined) + event counts.

It takes a :class:`CleanJob`: the spec plus each source's chain already bound to the run's resources (quality
model, eval index) by the orchestrator (``mixlab.jobs``); this module only plans, builds and runs the graphs.

**Parts.** A chain is cut at every corpus stage into *segments*: a segment starts with one corpus stage (the first
with the id check :class:`UniqueIds`) and runs the document filters after it. Documents between segments live in
``_work/data`` as Parquet files split into *partitions* by the key of the next segment's stage: the id for the id
check, the normalised URL for URL dedup, the normalised text hash for exact dedup. Every group such a stage forms
then falls in one partition, so each partition runs through the stage's own Beam transform alone, in a pipeline
of its own that holds only that partition (about ``pipeline.partition_mb`` of text). Line dedup, MinHash dedup and
the quality stage group documents by keys that link them across any partition (lines, LSH bands, a source's
scores): the segment before them also writes those small keys, a *reduce* part turns the keys of one key bucket
into per-document decisions, and the stage is applied per partition from the decisions. Removed, quarantined and
finally kept documents are written as rows for their output shard; the last parts sort each shard
(:func:`pipelines.stages.write_sorted_part`) into ``docs|removed|quarantine/<source>/part-NNNNN-of-MMMMM.parquet``.

**Resuming.** Every file is written under a temporary name and renamed when complete; each part then writes a
record (``_work/parts/<part>.json``: the run's fingerprint and the part's event counts). A rerun of the same run
skips every part with a record, so a killed run redoes only what was unfinished. The outputs do not depend on the
partition count, the runner or the worker count (tests/test_pipeline.py, tests/test_resume.py).
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.transforms import environments

from filters import registry
from filters.base import Document
from filters.c4 import normalize_url, url_hash
from filters.hashing import keyed_hash
from mixtures import progress, schema
from mixtures.chains import GLOBAL_STAGE_BASE, StepList
from mixtures.layout import RunLayout
from mixtures.spec import Spec
from pipelines import dedup
from pipelines.beam_worker import VERBOSE_ENV
from pipelines.c4_stages import _RemoveLines, _SelectNewest, line_hash
from pipelines.quality import Decide, ScoreBatch
from pipelines.readers import Quarantined, ReaderOptions
from pipelines.stages import (
    EDITS,
    KEPT,
    QUARANTINE,
    REMOVED,
    SPILL_SCHEMA,
    FilterChain,
    PartFiles,
    ReadParts,
    ReadRecords,
    WriteParts,
    event_line,
    iter_part_rows,
    part_files,
    partition_of,
    removed_events,
    shard_of,
    spill_row,
    split_tagged,
    sum_pairs,
    write_sorted_lines,
    write_sorted_part,
)
from pipelines.unique_ids import UniqueIds, pick_first

log = logging.getLogger(__name__)

RUNNER_ALIASES = {"DaskRunner": "apache_beam.runners.dask.dask_runner.DaskRunner"}
QUARANTINE_SCHEMA = schema.pa.schema(
    [("id", schema.pa.string()), ("source", schema.pa.string()), ("reason", schema.pa.string()),
     ("raw", schema.pa.string())]
)
OUTPUT_SCHEMAS = {"docs": schema.DOC_SCHEMA, "removed": schema.REMOVED_SCHEMA, "quarantine": QUARANTINE_SCHEMA}
COMPRESSED = (".gz", ".zst", ".zstd", ".bz2", ".xz", ".parquet")
EXPANSION = 3  # estimated text bytes per stored byte of a compressed input (web.jsonl.gz: 2.8)
GLOBAL = "_global"  # the scope of the cross-source stages
SAMPLE_LABEL = "clean-sample"
LINES_SCHEMA = pa.schema([("h", pa.string()), ("url_hash", pa.string()), ("source", pa.string()),
                          ("id", pa.string()), ("part", pa.int32())])
NOT_OWNED_SCHEMA = pa.schema([("source", pa.string()), ("id", pa.string()), ("h", pa.string())])
SCORES_SCHEMA = pa.schema([("source", pa.string()), ("score", pa.float64())])
Event = tuple[tuple[str, str], tuple[int, int]]


@dataclass(frozen=True)
class CleanJob:
    """What one cleaning run executes: the spec, its bound chains and where the outputs go.

    ``fingerprint``: the run's identity; part records of another fingerprint are never reused. ``sample_docs``:
    clean only the documents with the smallest keyed hashes of each source (at most that many; the quality
    classifier's training run).
    """

    spec: Spec
    steps: dict[str, StepList]  # per source, expanded, with run resources filled in
    global_steps: StepList
    layout: RunLayout
    fingerprint: str = ""
    sample_docs: int | None = None


# ---- sizes ------------------------------------------------------------------------------------------------------

def estimated_text_bytes(paths: Iterable[str]) -> int:
    """Text bytes of input files, estimated from their stored sizes (known before reading; deterministic)."""
    total = 0
    for path in paths:
        p = Path(path)
        if p.is_file():
            size = p.stat().st_size
            total += size * EXPANSION if p.name.lower().endswith(COMPRESSED) else size
    return total


def shards_of(spec: Spec, source: str) -> int:
    """Output shards of a source: ``shards_per_source`` when set, else one per ``shard_mb`` of input text."""
    pipe = spec.pipeline
    if pipe.shards_per_source is not None:
        return pipe.shards_per_source
    return max(1, math.ceil(estimated_text_bytes(spec.resolve_paths(source)) / (pipe.shard_mb * 2**20)))


def _parts_for(size: int, partition_mb: float) -> int:
    return 1 if partition_mb <= 0 else max(1, math.ceil(size / (partition_mb * 2**20)))


def _dest(p: int) -> str:
    return f"p{p:05d}"


# ---- segments: a chain cut at its corpus stages ----------------------------------------------------------------

def _page_key(doc: Document) -> str:
    return f"{doc.source}\x1f{doc.id}"


@dataclass
class Head:
    """How a segment starts: the id check, a corpus stage grouped per partition, or a keyed stage (decisions)."""

    kind: str  # unique | grouped | lines | minhash | quality
    name: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    stage: int = 0
    transform: Any = None  # the built stage: its settings give the partition key and the keyed steps

    def key(self, doc: Document) -> str:
        """The partition key of a document entering this segment (equal keys: same partition)."""
        if self.kind == "grouped" and self.name == "c4_url_dedup":
            return f"\x1e{normalize_url(doc.url)}" if doc.url else _page_key(doc)
        if self.kind == "grouped" and self.name == "exact_dedup":
            text = self.transform.norm(doc.text)
            if text:
                key = str(dedup.dd.exact_key(text))
                return f"\x1e{key}" if self.transform.cross_source else f"\x1e{doc.source}\x1f{key}"
        return _page_key(doc)


GROUPED = ("c4_url_dedup", "exact_dedup")  # corpus stages whose groups share one key: run per partition as they are
LINES = ("c4_line_dedup", "mc4_line_dedup")


def _head(name: str, params: dict[str, Any], stage: int) -> Head:
    built = registry.load_factory(registry.CORPUS_STAGES[name])(stage=stage, **params)
    if name in GROUPED:
        return Head("grouped", name, params, stage, built)
    if name in LINES:
        return Head("lines", name, params, stage, built)
    if name == "minhash_dedup":
        return Head("minhash", name, params, stage, built)
    if name == "quality":
        return Head("quality", name, params, stage, built)
    raise ValueError(f"{name}: a corpus stage the clean job cannot partition; add it to pipelines/clean.py")


@dataclass
class Segment:
    scope: str  # a source, or GLOBAL
    index: int
    head: Head
    filters: StepList  # document filters after the head
    first_filter: int  # stage number of the first of them
    parts: int

    @property
    def name(self) -> str:
        return f"{self.scope}.{self.index}"


def _segments(scope: str, steps: StepList, base: int, parts: int, unique: bool) -> list[Segment]:
    out: list[Segment] = []
    head, start, i = (Head("unique") if unique else None), 0, 0
    while i <= len(steps):
        if i == len(steps) or steps[i][0] not in registry.DOC_FILTERS:
            if head is not None:
                out.append(Segment(scope, len(out), head, steps[start:i], base + start, parts))
            elif steps[start:i]:
                raise AssertionError("document filters before the first stage of a global chain")
            if i < len(steps):
                head, start = _head(steps[i][0], steps[i][1], base + i), i + 1
        i += 1
    return out


# ---- the plan -----------------------------------------------------------------------------------------------------

class Plan:
    """Every part of a job, in order, and where their files go; :meth:`run` runs the unfinished ones."""

    def __init__(self, job: CleanJob, runner: str | None, extra: list[str] | None) -> None:
        self.job, self.spec, self.layout = job, job.spec, job.layout
        self.runner, self.extra = runner, extra
        self.data, self.records = self.layout.part_data, self.layout.part_records
        pipe = self.spec.pipeline
        self.sources = sorted(self.spec.sources)
        sizes = {s: estimated_text_bytes(self.spec.resolve_paths(s)) for s in self.sources}
        self.shards = {s: shards_of(self.spec, s) for s in self.sources}
        self.segments: dict[str, list[Segment]] = {
            s: _segments(s, job.steps[s], 0, _parts_for(sizes[s], pipe.partition_mb), True) for s in self.sources}
        self.segments[GLOBAL] = _segments(GLOBAL, job.global_steps, GLOBAL_STAGE_BASE,
                                          _parts_for(sum(sizes.values()), pipe.partition_mb), False)

    # -- records
    def record_path(self, part: str) -> Path:
        return self.records / f"{part}.json"

    def done(self, part: str) -> dict[str, Any] | None:
        path = self.record_path(part)
        if not path.is_file():
            return None
        record = json.loads(path.read_text(encoding="utf-8"))
        return record if record.get("fingerprint") == self.job.fingerprint else None

    # -- datasets
    def docs_dir(self, seg: Segment) -> Path:
        return self.data / "docs" / seg.name

    def keys_dir(self, seg: Segment) -> Path:
        return self.data / "keys" / seg.name

    def decisions_dir(self, seg: Segment) -> Path:
        return self.data / "decisions" / seg.name

    @property
    def final_dir(self) -> Path:
        return self.data / "final"

    def next_of(self, seg: Segment) -> Segment | None:
        chain = self.segments[seg.scope]
        if seg.index + 1 < len(chain):
            return chain[seg.index + 1]
        if seg.scope != GLOBAL and self.segments[GLOBAL]:
            return self.segments[GLOBAL][0]
        return None

    def sink(self, seg: Segment) -> Sink:
        """Where a segment's kept documents go: the next segment's partitions (and keys), or the output shards."""
        nxt = self.next_of(seg)
        if nxt is None:
            return Sink(None, "", 1, str(self.final_dir), self.shards)
        keys = str(self.keys_dir(nxt)) if nxt.head.kind in ("lines", "minhash", "quality") else ""
        return Sink(nxt.head, str(self.docs_dir(nxt)), nxt.parts, str(self.final_dir), self.shards, keys)

    # -- running
    def options(self) -> PipelineOptions:
        return pipeline_options(self.spec, self.runner, self.extra)

    def run(self) -> None:
        thresholds = self._sample() if self.job.sample_docs else None
        self._ingest(thresholds)
        for scope in (*self.sources, GLOBAL):
            for seg in self.segments[scope]:
                self._reduce(seg)
                self._segment(seg)
        self._write_outputs()

    def _pending(self, parts: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
        return [(name, arg) for name, arg in parts if self.done(name) is None]

    def _run_units(self, label: str, fn: Callable[..., dict[str, Any]], units: Sequence[tuple[str, Any]],
                   quiet: bool = False) -> None:
        """Run independent units (one function call each) as one Beam pipeline; each unit records itself."""
        todo = self._pending(units)
        if not todo:
            return
        if not quiet:
            log.info("clean: %s: %d of %d parts to run", label, len(todo), len(units))
        with run_graph(self.options()) as p:
            _ = (p | f"{label}/Units" >> beam.Create(todo)
                 | f"{label}/Run" >> beam.ParDo(_RunUnit(fn, str(self.records), self.job.fingerprint))
                 | f"{label}/All" >> beam.combiners.Count.Globally())

    # -- sample (the quality classifier's training run)
    def _sample(self) -> dict[str, int]:
        units = [(f"sample.{s}.{i:05d}", (s, path)) for s in self.sources
                 for i, path in enumerate(self.spec.resolve_paths(s))]
        n = int(self.job.sample_docs or 0)
        self._run_units("sample", _SampleUnit(self.spec, n), units)
        smallest: dict[str, list[int]] = {s: [] for s in self.sources}
        for name, (source, _) in units:
            smallest[source].extend(self._info(name)["hashes"])
        return {s: (heapq.nsmallest(n, h)[-1] if len(h) >= n else 2**64) for s, h in smallest.items()}

    # -- ingest
    def _ingest(self, thresholds: dict[str, int] | None) -> None:
        units = []
        for source in self.sources:
            seg = self.segments[source][0]
            for i, path in enumerate(self.spec.resolve_paths(source)):
                name = f"ingest.{source}.{i:05d}"
                units.append((name, (name, source, path, str(self.docs_dir(seg)), seg.parts)))
        self._run_units("ingest", _IngestUnit(self.spec, str(self.final_dir), self.shards, thresholds), units)

    # -- reduce parts of keyed stages
    def _reduce(self, seg: Segment) -> None:
        kind, keys, out = seg.head.kind, self.keys_dir(seg), str(self.decisions_dir(seg))
        buckets = sorted(p.name for p in keys.iterdir()) if keys.is_dir() else []
        units: list[tuple[str, Any]]
        if kind == "lines":
            units = [(f"{seg.name}.lines.{b}", (str(keys), b, out)) for b in buckets]
            self._run_units(f"{seg.name}/lines", _reduce_lines, units)
        elif kind == "minhash":
            edges = str(self.data / "edges" / seg.name)
            units = [(f"{seg.name}.buckets.{b}", (str(keys), b, edges)) for b in buckets]
            self._run_units(f"{seg.name}/buckets", _BucketUnit(seg.head.transform), units)
            n_edges = sum(self._info(u)["edges"] for u, _ in units)
            name = f"{seg.name}.components"
            if dedup.uses_union_find(seg.head.transform, n_edges):
                self._run_units(f"{seg.name}/components", dedup.union_find_decisions, [(name, (edges, out))])
            elif self.done(name) is None:
                log.info("clean: %s: %d edges, distributed components", seg.name, n_edges)
                with run_graph(self.options()) as p:
                    dedup.star_decisions(p, seg.head.transform, edges, out)
                self._write_record(name, [], {"edges": n_edges})
        elif kind == "quality" and seg.head.transform.rule.mode == "top_percentile":
            units = [(f"{seg.name}.cutoffs", (str(keys), buckets))]
            self._run_units(f"{seg.name}/cutoffs", _Cutoffs(seg.head.transform.rule.top_percent), units)

    def _info(self, part: str) -> dict[str, Any]:
        record = self.done(part)
        assert record is not None, f"{part} has no record"
        return record["info"]

    def cutoffs(self, seg: Segment) -> dict[str, float] | None:
        record = self.done(f"{seg.name}.cutoffs")
        return record["info"]["cutoffs"] if record else None

    # -- the partitions of one segment
    def _segment(self, seg: Segment) -> None:
        """Each partition as one unit (bounded memory, any number per pipeline); ``partition_mb: 0``: the whole
        corpus through the stages' own Beam transforms in one pipeline."""
        what = " then ".join([seg.head.name or "id check", *(["+".join(n for n, _ in seg.filters)]
                                                               if seg.filters else [])])
        if self.spec.pipeline.partition_mb > 0:
            units = [(f"{seg.name}.{_dest(p)}", (p,)) for p in range(seg.parts)]
            todo = self._pending(units)
            if todo:
                log.info("clean: segment %s (%s), %d of %d partitions", seg.name, what, len(todo), seg.parts)
            self._run_units(seg.name, _SegmentUnit(self, seg), units, quiet=True)
            return
        name = f"{seg.name}.{_dest(0)}"
        if self.done(name) is not None:
            return
        inputs = part_files(self.docs_dir(seg), _dest(0))
        if not inputs:
            self._write_record(name, [], {})
            return
        log.info("clean: segment %s (%s), 1 of 1 partitions", seg.name, what)
        with run_graph(self.options()) as pipeline:
            build_segment(pipeline, self, seg, 0, inputs, name)

    def _write_record(self, name: str, events: list[Any], info: dict[str, Any]) -> None:
        write_record(self.records / f"{name}.json", self.job.fingerprint, events, info)

    # -- outputs
    def _write_outputs(self) -> None:
        units = []
        for kind in OUTPUT_SCHEMAS:
            for source in self.sources:
                for s in range(self.shards[source]):
                    dest = f"{kind}/{source}/s{s:05d}"
                    out = self.layout.root / kind / source / f"part-{s:05d}-of-{self.shards[source]:05d}.parquet"
                    units.append((f"write.{kind}.{source}.s{s:05d}", (kind, str(self.final_dir / dest), str(out))))
        self._run_units("write", _write_output, units)
        for kind in OUTPUT_SCHEMAS:  # present even when empty: "nothing removed" reads as an empty folder
            for source in self.sources:
                (self.layout.root / kind / source).mkdir(parents=True, exist_ok=True)
        events: dict[tuple[str, str], list[int]] = {}
        outputs: list[str] = []
        for path in sorted(self.records.glob("*.json")):
            record = json.loads(path.read_text(encoding="utf-8"))
            if record.get("fingerprint") != self.job.fingerprint:
                continue
            for source, kind, docs, chars in record["events"]:
                total = events.setdefault((source, kind), [0, 0])
                total[0] += docs
                total[1] += chars
            outputs.extend(record["info"].get("outputs", []))
        write_sorted_lines(str(self.layout.events),
                           [event_line(((s, k), (d, c))) for (s, k), (d, c) in events.items()])
        write_sorted_lines(str(self.layout.outputs), outputs)


def write_record(path: Path, fingerprint: str, events: Iterable[Any], info: dict[str, Any]) -> None:
    """A part's record, written last (temporary name, then rename): the part is done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"fingerprint": fingerprint, "events": sorted(map(list, events)), "info": info},
                              sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _flat_events(events: Iterable[Event]) -> list[list[Any]]:
    return [[source, kind, docs, chars] for (source, kind), (docs, chars) in events]


class _RunUnit(beam.DoFn):
    """Run one unit and write its record; the unit's files are already in place when it returns."""

    def __init__(self, fn: Callable[..., dict[str, Any]], records: str, fingerprint: str) -> None:
        self.fn, self.records, self.fingerprint = fn, records, fingerprint

    def process(self, unit: tuple[str, Any]) -> Iterator[str]:
        name, arg = unit
        result = self.fn(*arg)
        write_record(Path(self.records) / f"{name}.json", self.fingerprint, result.pop("events", []), result)
        yield name


# ---- units -------------------------------------------------------------------------------------------------------

def _reader_options(spec: Spec, source: str) -> ReaderOptions:
    src = spec.sources[source]
    return ReaderOptions(source, src.text_field, src.id_field, src.url_field, src.max_doc_chars,
                         src.hf_split, tuple(src.hf_data_files))


def _read(spec: Spec, source: str, path: str) -> Iterator[tuple[str, Any]]:
    """The records of one input path as :class:`pipelines.stages.ReadRecords` yields them (limit included)."""
    src = spec.sources[source]
    return ReadRecords(_reader_options(spec, source), src.reader, src.limit).process(path)


def sample_hash(seed: int, doc: Document) -> int:
    return keyed_hash(seed, SAMPLE_LABEL, f"{doc.source}/{doc.id}")


class _SampleUnit:
    """The ``n`` smallest keyed hashes of the documents of one input file (a bounded heap)."""

    def __init__(self, spec: Spec, n: int) -> None:
        self.spec, self.n = spec, n

    def __call__(self, source: str, path: str) -> dict[str, Any]:
        heap: list[int] = []  # negated: the largest kept hash on top
        for tag, item in _read(self.spec, source, path):
            if tag == KEPT:
                h = -sample_hash(self.spec.seed, item[1])
                if len(heap) < self.n:
                    heapq.heappush(heap, h)
                elif h > heap[0]:
                    heapq.heapreplace(heap, h)
        return {"hashes": sorted(-h for h in heap)}


def _final_dest(kind: str, source: str, row_id: str, shards: dict[str, int]) -> str:
    return f"{kind}/{source}/s{shard_of(row_id, shards[source]):05d}"


def _quarantine_row(q: Quarantined) -> dict[str, Any]:
    return {"id": q.location, "source": q.source, "reason": q.reason, "raw": q.raw}


def _quarantine_event(q: Quarantined) -> Event:
    return (q.source, f"quarantine\t{q.reason.split(':')[0]}"), (1, 0)


class _IngestUnit:
    """Read one input file: documents to the id check's partitions, malformed records to the quarantine shards."""

    def __init__(self, spec: Spec, final: str, shards: dict[str, int], thresholds: dict[str, int] | None) -> None:
        self.spec, self.final, self.shards, self.thresholds = spec, final, shards, thresholds

    def __call__(self, producer: str, source: str, path: str, docs_dir: str, parts: int) -> dict[str, Any]:
        docs = PartFiles(docs_dir, producer, SPILL_SCHEMA)
        quarantine = PartFiles(self.final, producer, QUARANTINE_SCHEMA, compression="lz4")
        events: dict[str, int] = {}
        limit = self.thresholds[source] if self.thresholds else None
        for tag, item in _read(self.spec, source, path):
            if tag == QUARANTINE:
                quarantine.add(_final_dest("quarantine", source, item.location, self.shards), _quarantine_row(item))
                kind = _quarantine_event(item)[0][1]
                events[kind] = events.get(kind, 0) + 1
            else:
                location, doc = item
                if limit is not None and sample_hash(self.spec.seed, doc) > limit:
                    continue
                docs.add(_dest(partition_of(_page_key(doc), parts)), spill_row(doc, location))
        files = docs.close() + quarantine.close()
        return {"events": [[source, kind, n, 0] for kind, n in events.items()], "files": len(files)}


def _reduce_lines(keys: str, bucket: str, out: str) -> dict[str, Any]:
    """TFDS line dedup for one bucket of line hashes: each line belongs to the page with the smallest
    ``(md5(url), source, id)``; every other page holding it gets a "not owned" decision in its partition."""
    owners: dict[str, tuple[str, str, str]] = {}
    holders: dict[str, list[tuple[str, str, int]]] = {}
    paths = part_files(keys, bucket)
    for row in iter_part_rows(paths):
        owner = (row["url_hash"], row["source"], row["id"])
        h = row["h"]
        if h not in owners or owner < owners[h]:
            owners[h] = owner
        holders.setdefault(h, []).append((row["source"], row["id"], row["part"]))
    decisions = PartFiles(out, f"lines.{bucket}", NOT_OWNED_SCHEMA)
    n = 0
    for h, pages in holders.items():
        _, src, doc_id = owners[h]
        for source, page_id, part in pages:
            if (source, page_id) != (src, doc_id):
                decisions.add(_dest(part), {"source": source, "id": page_id, "h": h})
                n += 1
    decisions.close()
    return {"lines": len(owners), "not_owned": n}


class _BucketUnit:
    def __init__(self, stage: dedup.MinHashDedup) -> None:
        self.stage = stage

    def __call__(self, keys: str, bucket: str, edges: str) -> dict[str, Any]:
        return dedup.bucket_edges_of_part(self.stage, part_files(keys, bucket), edges, f"edges.{bucket}")


class _Cutoffs:
    """Each source's top-percentile cutoff from all of its scores (8 bytes a document, in a numpy array)."""

    def __init__(self, top_percent: float) -> None:
        self.top_percent = top_percent

    def __call__(self, keys: str, buckets: list[str]) -> dict[str, Any]:
        import pyarrow.parquet as pq

        scores: dict[str, list[np.ndarray]] = {}
        for bucket in buckets:
            for path in part_files(keys, bucket):
                table = pq.read_table(path)
                for source in set(table["source"].to_pylist()):
                    mask = pa.compute.equal(table["source"], source)
                    scores.setdefault(source, []).append(table.filter(mask)["score"].to_numpy())
        return {"cutoffs": {s: top_percent_cutoff(np.concatenate(a), self.top_percent) for s, a in scores.items()}}


def top_percent_cutoff(scores: np.ndarray, top_percent: float) -> float:
    """:func:`filters.quality.top_percent_cutoff` on a numpy array (the same k-th largest score)."""
    k = max(1, -(-len(scores) * top_percent // 100))
    return float(np.sort(scores)[::-1][int(k) - 1])


def _write_output(kind: str, folder: str, out: str) -> dict[str, Any]:
    paths = part_files(Path(folder).parent, Path(folder).name)
    Path(out).unlink(missing_ok=True)
    rows = write_sorted_part(paths, out, OUTPUT_SCHEMAS[kind]) if paths else 0
    progress.count(kind, Path(out).parent.name, rows)  # "docs", "removed", "quarantine"
    return {"rows": rows, "outputs": [out] if rows else []}


# ---- one partition of one segment, as one unit ------------------------------------------------------------------

class _Outputs:
    """Everything one partition writes: kept documents onwards (and the next stage's keys), or the output rows;
    removed and quarantined rows; the event counts."""

    def __init__(self, producer: str, sink: Sink, final: str) -> None:
        self.sink, self.shards = sink, sink.shards
        head = sink.head
        self.next = PartFiles(sink.docs, producer, SPILL_SCHEMA) if head is not None else None
        key_schema = {"lines": LINES_SCHEMA, "minhash": dedup.BAND_SCHEMA, "quality": SCORES_SCHEMA}
        self.keys = PartFiles(sink.keys, producer, key_schema[head.kind]) if head is not None and sink.keys else None
        self.final = {kind: PartFiles(final, producer, schema_, compression="lz4")
                      for kind, schema_ in OUTPUT_SCHEMAS.items()}
        self.events: dict[tuple[str, str], list[int]] = {}
        self.bands = (dedup.BandRecords(head.transform, sink.parts, lambda d: partition_of(_page_key(d), sink.parts))
                      if head is not None and head.kind == "minhash" else None)
        self.scorer: Any = None
        self.batch: list[Document] = []
        if head is not None and head.kind == "quality":
            rule = head.transform.rule
            self.scorer = ScoreBatch(str(rule.model), rule.max_chars, head.transform.cross_fit)
            self.scorer.setup()
            self.batch_size, self.top = rule.batch_size, rule.mode == "top_percentile"

    def event(self, source: str, kind: str, docs: int, chars: int) -> None:
        total = self.events.setdefault((source, kind), [0, 0])
        total[0] += docs
        total[1] += chars

    def tagged(self, tag: str, value: Any) -> None:
        if tag == KEPT:
            self.kept(value)
        elif tag == REMOVED:
            self.removed(value)
        elif tag == EDITS:
            (source, reason), chars = value
            self.event(source, f"edit\t{reason}", 0, chars)
        else:
            self.quarantine(value)

    def kept(self, doc: Document) -> None:
        if self.next is None:
            self.event(doc.source, "kept", 1, len(doc.text))
            self.final["docs"].add(_final_dest("docs", doc.source, doc.id, self.shards), schema.doc_row(doc))
            return
        if self.scorer is not None:
            self.batch.append(doc)
            if len(self.batch) >= self.batch_size:
                self._score()
            return
        self._onwards(doc)

    def _score(self) -> None:
        for doc in self.scorer.process(self.batch):
            if self.top and self.keys is not None:
                self.keys.add(_dest(0), {"source": doc.source, "score": doc.meta["quality_score"]})
            self._onwards(doc)
        self.batch = []

    def _onwards(self, doc: Document) -> None:
        head, parts = self.sink.head, self.sink.parts
        assert head is not None and self.next is not None
        if head.kind == "lines":
            assert self.keys is not None
            for dest, row in _line_keys(doc, parts, parts):
                self.keys.add(dest, row)
        elif self.bands is not None:
            assert self.keys is not None
            for dest, row in self.bands.process(doc):
                self.keys.add(dest, row)
        self.next.add(_dest(partition_of(head.key(doc), parts)), spill_row(doc))

    def removed(self, item: tuple[Document, str, int]) -> None:
        (source, kind), (n, chars) = removed_events(item)
        self.event(source, kind, n, chars)
        doc = item[0]
        self.final["removed"].add(_final_dest("removed", doc.source, doc.id, self.shards), schema.removed_row(*item))

    def quarantine(self, q: Quarantined) -> None:
        (source, kind), _ = _quarantine_event(q)
        self.event(source, kind, 1, 0)
        self.final["quarantine"].add(_final_dest("quarantine", q.source, q.location, self.shards), _quarantine_row(q))

    def close(self) -> dict[str, Any]:
        if self.batch:
            self._score()
        files = [f for w in (self.next, self.keys, *self.final.values()) if w is not None for f in w.close()]
        return {"events": [[s, k, n, c] for (s, k), (n, c) in self.events.items()], "files": len(files)}


class _SegmentUnit:
    """One partition of one segment in one call: its documents, the head stage, the document filters, the outputs.

    The head runs on the partition alone: the id check and the grouped stages hold the partition's documents
    (its groups are all inside it), the keyed stages read the partition's decisions; the filters stream.
    """

    def __init__(self, plan: Plan, seg: Segment) -> None:
        self.seg, self.sink = seg, plan.sink(seg)
        self.docs_dir, self.decisions = str(plan.docs_dir(seg)), str(plan.decisions_dir(seg))
        self.final = str(plan.final_dir)
        self.cutoffs = plan.cutoffs(seg) if seg.head.kind == "quality" else None
        self._chain: Any = None

    def chain(self) -> Any:
        if self._chain is None:
            from pipelines.stages import ApplyFilters

            self._chain = ApplyFilters(self.seg.filters, self.seg.first_filter)
            self._chain.setup()
        return self._chain

    def __call__(self, p: int) -> dict[str, Any]:
        seg = self.seg
        out = _Outputs(f"{seg.name}.{_dest(p)}", self.sink, self.final)
        inputs = part_files(self.docs_dir, _dest(p))
        chain = self.chain() if seg.filters else None
        for tag, value in self.head(p, inputs, out):
            if tag != KEPT or chain is None:
                out.tagged(tag, value)
                continue
            for tag2, value2 in chain.process(value):
                out.tagged(tag2, value2)
        return out.close()

    def head(self, p: int, inputs: list[str], out: _Outputs) -> Iterator[tuple[str, Any]]:
        head = self.seg.head
        read = ReadParts(with_location=head.kind == "unique")
        docs = (item for path in inputs for item in read.process(path))
        if head.kind == "unique":
            copies: dict[tuple[str, str], list[Any]] = {}
            for location, doc in docs:
                copies.setdefault((doc.source, doc.id), []).append((location, doc))
            for key, group in copies.items():
                for tag, value in pick_first((key, group)):
                    if tag == KEPT:
                        out.event(value.source, "input", 1, len(value.text))
                    yield tag, value
        elif head.kind == "grouped" and head.name == "c4_url_dedup":
            pages: dict[str, list[Document]] = {}
            for doc in docs:
                if doc.url:
                    pages.setdefault(normalize_url(doc.url), []).append(doc)
                else:
                    yield KEPT, doc
            newest = _SelectNewest(head.transform.stage, head.transform.date_key)
            for item in pages.items():
                yield from newest.process(item)
        elif head.kind == "grouped":
            yield from dedup.exact_local(docs, head.transform)
        elif head.kind == "lines":
            not_owned: dict[tuple[str, str], set[str]] = {}
            for row in iter_part_rows(part_files(self.decisions, _dest(p))):
                not_owned.setdefault((row["source"], row["id"]), set()).add(row["h"])
            remove = _RemoveLines(head.stage, head.transform.min_num_sentences)
            for doc in docs:
                theirs = not_owned.get((doc.source, doc.id), set())
                yield from remove.dedup_page(doc, {line_hash(line) for line in doc.text.split("\n")} - theirs)
        elif head.kind == "minhash":
            decisions = {row["node"]: row for row in iter_part_rows(part_files(self.decisions, _dest(p)))}
            yield from dedup.apply_local(docs, decisions, "minhash", head.stage)
        else:
            decide = Decide(head.transform.rule, head.stage)
            for doc in docs:
                yield from decide.process(doc, self.cutoffs)


# ---- the graph of one partition of one segment ----------------------------------------------------------------

@dataclass
class Sink:
    """Where a segment's kept documents go."""

    head: Head | None  # the next segment's head (None: the output shards)
    docs: str
    parts: int
    final: str
    shards: dict[str, int]
    keys: str = ""


def _apply_steps(docs: beam.PCollection, steps: StepList, first: int, label: str,
                 removed: list[beam.PCollection], edits: list[beam.PCollection]) -> beam.PCollection:
    """Apply a chain: runs of document filters become one fused ParDo, corpus stages their own transform."""
    i = 0
    while i < len(steps):
        j = i
        while j < len(steps) and steps[j][0] in registry.DOC_FILTERS:
            j += 1
        if j > i:
            names = "+".join(name for name, _ in steps[i:j])
            out = docs | f"{label}/{first + i}:{names}" >> FilterChain(steps[i:j], first + i)
            i = j
        else:
            name, params = steps[i]
            stage = registry.load_factory(registry.CORPUS_STAGES[name])(stage=first + i, **params)
            out = docs | f"{label}/{first + i}:{name}" >> stage
            i += 1
        docs = out[KEPT]
        removed.append(out[REMOVED])
        if EDITS in out:
            edits.append(out[EDITS])
    return docs


class _ReadRows(beam.DoFn):
    def process(self, path: str) -> Iterator[dict[str, Any]]:
        yield from iter_part_rows([path])


def _decisions(p: beam.Pipeline, files: list[str], label: str) -> beam.PCollection:
    return p | f"{label}/Files" >> beam.Create(files or [], reshuffle=False) | f"{label}/Read" >> beam.ParDo(
        _ReadRows())


class _ApplyLines(beam.DoFn):
    """Line dedup from decisions: a page keeps the lines no other page owns (then TFDS's page rules)."""

    def __init__(self, stage: int, min_num_sentences: int) -> None:
        self.remove = _RemoveLines(stage, min_num_sentences)

    def process(self, item: tuple[str, dict[str, list[Any]]]) -> Iterator[Any]:
        joined = item[1]
        not_owned = set(joined["not_owned"])
        for doc in joined["docs"]:
            keep = {line_hash(line) for line in doc.text.split("\n")} - not_owned
            yield from self.remove.dedup_page(doc, keep)


def _head_outputs(p: beam.Pipeline, plan: Plan, seg: Segment, p_index: int, docs: beam.PCollection,
                  removed: list[beam.PCollection], edits: list[beam.PCollection],
                  quarantined: list[beam.PCollection], events: list[beam.PCollection]) -> beam.PCollection:
    head, label = seg.head, seg.name
    if head.kind == "unique":
        unique = docs | f"{label}/UniqueIds" >> UniqueIds()
        quarantined.append(unique[QUARANTINE])
        kept = unique[KEPT]
        events.append(kept | f"{label}/CountInput" >> beam.Map(lambda d: ((d.source, "input"), (1, len(d.text)))))
        return kept
    if head.kind == "grouped":
        out = docs | f"{label}/{head.stage}:{head.name}" >> head.transform
        removed.append(out[REMOVED])
        if EDITS in out:
            edits.append(out[EDITS])
        return out[KEPT]
    files = part_files(plan.decisions_dir(seg), _dest(p_index))
    decisions = _decisions(p, files, f"{label}/Decisions")
    if head.kind == "lines":
        keyed = docs | f"{label}/ByPage" >> beam.Map(lambda d: (_page_key(d), d))
        not_owned = decisions | f"{label}/NotOwned" >> beam.Map(lambda r: (f"{r['source']}\x1f{r['id']}", r["h"]))
        tagged = ({"docs": keyed, "not_owned": not_owned} | f"{label}/JoinLines" >> beam.CoGroupByKey()
                  | f"{label}/{head.stage}:{head.name}" >> beam.ParDo(
                      _ApplyLines(head.stage, head.transform.min_num_sentences)))
        out = split_tagged(tagged, (KEPT, REMOVED, EDITS), f"{label}/SplitLines")
        removed.append(out[REMOVED])
        edits.append(out[EDITS])
        return out[KEPT]
    if head.kind == "minhash":
        out = dedup.apply_clusters(docs, decisions, "minhash", head.stage, f"{label}/{head.stage}:{head.name}")
        removed.append(out[REMOVED])
        return out[KEPT]
    assert head.kind == "quality"
    cutoffs = plan.cutoffs(seg)
    side = {"cutoffs": beam.pvalue.AsDict(p | f"{label}/Cutoffs" >> beam.Create(sorted(cutoffs.items())))} \
        if cutoffs is not None else {}
    out = split_tagged(docs | f"{label}/{head.stage}:quality" >> beam.ParDo(
        Decide(head.transform.rule, head.stage), **side), (KEPT, REMOVED), f"{label}/SplitQuality")
    removed.append(out[REMOVED])
    return out[KEPT]


def _line_keys(doc: Document, parts: int, key_parts: int) -> Iterator[tuple[str, dict[str, Any]]]:
    owner = url_hash(doc)
    page_part = partition_of(_page_key(doc), parts)
    for h in sorted({line_hash(line) for line in doc.text.split("\n")}):  # sorted: the same bytes in every process
        yield _dest(partition_of(h, key_parts)), {"h": h, "url_hash": owner, "source": doc.source, "id": doc.id,
                                                  "part": page_part}


def _sink_outputs(docs: beam.PCollection, sink: Sink, producer: str, label: str,
                  written: list[beam.PCollection], events: list[beam.PCollection]) -> None:
    """Write a segment's kept documents to the next segment (and its keys), or as kept rows of the outputs."""
    head, parts, shards = sink.head, sink.parts, sink.shards
    if head is None:
        events.append(docs | f"{label}/CountKept" >> beam.Map(lambda d: ((d.source, "kept"), (1, len(d.text)))))
        written.append(docs | f"{label}/KeptRows" >> beam.Map(
            lambda d: (_final_dest("docs", d.source, d.id, shards), schema.doc_row(d)))
            | f"{label}/WriteKept" >> WriteParts(sink.final, producer, schema.DOC_SCHEMA, compression="lz4"))
        return
    if head.kind == "quality":
        rule, cross_fit = head.transform.rule, head.transform.cross_fit
        docs = (docs
                | f"{label}/Batch" >> beam.BatchElements(min_batch_size=min(16, rule.batch_size),
                                                        max_batch_size=rule.batch_size)
                | f"{label}/Score" >> beam.ParDo(ScoreBatch(str(rule.model), rule.max_chars, cross_fit)))
        if rule.mode == "top_percentile":
            written.append(docs | f"{label}/Scores" >> beam.Map(
                lambda d: (_dest(0), {"source": d.source, "score": d.meta["quality_score"]}))
                | f"{label}/WriteScores" >> WriteParts(sink.keys, producer, SCORES_SCHEMA))
    elif head.kind == "lines":
        written.append(docs | f"{label}/LineKeys" >> beam.FlatMap(_line_keys, parts, parts)
                       | f"{label}/WriteLineKeys" >> WriteParts(sink.keys, producer, LINES_SCHEMA))
    elif head.kind == "minhash":
        written.append(dedup.band_records(docs, head.transform, parts, lambda d: partition_of(_page_key(d), parts),
                                          f"{label}/Bands")
                       | f"{label}/WriteBands" >> WriteParts(sink.keys, producer, dedup.BAND_SCHEMA))
    key = head.key
    written.append(docs | f"{label}/ToNext" >> beam.Map(lambda d: (_dest(partition_of(key(d), parts)), spill_row(d)))
                   | f"{label}/WriteNext" >> WriteParts(sink.docs, producer, SPILL_SCHEMA))


def build_segment(p: beam.Pipeline, plan: Plan, seg: Segment, p_index: int, inputs: list[str], producer: str) -> None:
    """Add one partition of one segment to ``p``: read, the head stage, the document filters, then every output."""
    label, shards = seg.name, plan.shards
    removed: list[beam.PCollection] = []
    edits: list[beam.PCollection] = []
    quarantined: list[beam.PCollection] = []
    events: list[beam.PCollection] = []
    written: list[beam.PCollection] = []
    docs = (p | f"{label}/Files" >> beam.Create(inputs, reshuffle=False)
            | f"{label}/Read" >> beam.ParDo(ReadParts(with_location=seg.head.kind == "unique")))
    docs = _head_outputs(p, plan, seg, p_index, docs, removed, edits, quarantined, events)
    docs = _apply_steps(docs, seg.filters, seg.first_filter, label, removed, edits)
    _sink_outputs(docs, plan.sink(seg), producer, label, written, events)
    final = str(plan.final_dir)
    if removed:
        removed_all = tuple(removed) | f"{label}/AllRemoved" >> beam.Flatten(pipeline=p)
        events.append(removed_all | f"{label}/CountRemoved" >> beam.Map(removed_events))
        written.append(removed_all | f"{label}/RemovedRows" >> beam.MapTuple(
            lambda d, reason, stage: (_final_dest("removed", d.source, d.id, shards),
                                      schema.removed_row(d, reason, stage)))
            | f"{label}/WriteRemoved" >> WriteParts(final, producer, schema.REMOVED_SCHEMA, compression="lz4"))
    if quarantined:
        quarantine_all = tuple(quarantined) | f"{label}/AllQuarantined" >> beam.Flatten(pipeline=p)
        events.append(quarantine_all | f"{label}/CountQuarantine" >> beam.Map(_quarantine_event))
        written.append(quarantine_all | f"{label}/QuarantineRows" >> beam.Map(
            lambda q: (_final_dest("quarantine", q.source, q.location, shards), _quarantine_row(q)))
            | f"{label}/WriteQuarantine" >> WriteParts(final, producer, QUARANTINE_SCHEMA, compression="lz4"))
    if edits:
        events.append(tuple(edits) | f"{label}/AllEdits" >> beam.Flatten(pipeline=p) | f"{label}/EditEvents"
                      >> beam.MapTuple(lambda key, chars: ((key[0], f"edit\t{key[1]}"), (0, chars))))
    summed = (tuple(events) | f"{label}/AllEvents" >> beam.Flatten(pipeline=p)
              | f"{label}/SumEvents" >> beam.CombinePerKey(sum_pairs) | f"{label}/EventRows" >> beam.Map(
                  lambda e: ("event", e)))
    paths = (tuple(written) | f"{label}/AllWritten" >> beam.Flatten(pipeline=p)
             | f"{label}/PathRows" >> beam.Map(lambda path: ("file", path)))
    # One final node that depends on every output: runners that evaluate only the last node of the graph
    # (Beam's DaskRunner does) still compute everything, and the record is written only after every file.
    record, fingerprint = str(plan.record_path(producer)), plan.job.fingerprint
    ((summed, paths) | f"{label}/Everything" >> beam.Flatten(pipeline=p)
     | f"{label}/Collect" >> beam.combiners.ToList()  # one event per (source, kind) and one path per file
     | f"{label}/Record" >> beam.Map(lambda items: write_record(
         Path(record), fingerprint, _flat_events(v for t, v in items if t == "event"),
         {"files": len([v for t, v in items if t == "file"])})))


# ---- runners ----------------------------------------------------------------------------------------------------

def pipeline_options(spec: Spec, runner: str | None = None, extra: list[str] | None = None) -> PipelineOptions:
    """Beam options from the spec, with a CLI runner and flags taking precedence.

    Worker processes log at WARNING unless a flag says otherwise (Beam's INFO chatter from every harness would
    bury Mixlab's own progress lines).
    """
    pipe = spec.pipeline
    worker_level = "INFO" if os.environ.get(VERBOSE_ENV) == "1" else "WARNING"
    return PipelineOptions(
        # the spec's settings first, so that its `options` and the command line's flags override them
        flags=[f"--default_sdk_harness_log_level={worker_level}", f"--direct_num_workers={pipe.direct_num_workers}",
               f"--direct_running_mode={pipe.direct_running_mode}", *pipe.options, *(extra or [])],
        runner=RUNNER_ALIASES.get(runner or pipe.runner, runner or pipe.runner),
    )


def make_pipeline(options: PipelineOptions) -> beam.Pipeline:
    """A pipeline on the chosen runner; local multi-process runs start quiet workers (``pipelines.beam_worker``)."""
    direct = options.view_as(DirectOptions)
    runner = options.view_as(StandardOptions).runner
    if runner in (None, "FnApiRunner", "DirectRunner") and direct.direct_running_mode == "multi_processing":
        command = f"{sys.executable} -m pipelines.beam_worker"
        environment = environments.SubprocessSDKEnvironment.from_command_string(command_string=command)
        direct.direct_running_mode = "in_memory"  # the environment already runs each of the workers in a process
        return beam.Pipeline(runner=FnApiRunner(default_environment=environment), options=options)
    return beam.Pipeline(options=options)


@contextlib.contextmanager
def run_graph(options: PipelineOptions) -> Iterator[beam.Pipeline]:
    """``with run_graph(options) as p:`` builds a pipeline, then runs it to the end (as ``with beam.Pipeline``) and
    closes the Dask client a DaskRunner run opens (DaskRunner never closes it; one per graph would pile up)."""
    pipeline = make_pipeline(options)
    yield pipeline
    result = pipeline.run()
    try:
        result.wait_until_finish()
    finally:
        client = getattr(result, "client", None)
        if client is not None:
            client.close()


def _flag_given(flags: Sequence[str], name: str) -> bool:
    return any(f == name or f.startswith(f"{name}=") for f in flags)


@contextlib.contextmanager
def shared_cluster(spec: Spec, runner: str | None, extra: list[str] | None) -> Iterator[list[str] | None]:
    """The job's flags; on DaskRunner without ``--dask_client_address``, one local cluster for every graph of the
    job (Beam would start a new one per graph and never stop it), stopped when the job ends."""
    name = runner or spec.pipeline.runner
    flags = [*spec.pipeline.options, *(extra or [])]
    if "DaskRunner" not in name or _flag_given(flags, "--dask_client_address"):
        yield extra
        return
    from distributed import LocalCluster

    with LocalCluster(processes=True, dashboard_address=None) as cluster:
        log.info("dask: a local cluster for this job at %s", cluster.scheduler_address)
        yield [*(extra or []), f"--dask_client_address={cluster.scheduler_address}"]


def run_pipeline(job: CleanJob, runner: str | None = None, extra: list[str] | None = None) -> float:
    """Run the job's unfinished parts to completion; return the wall time in seconds."""
    started = time.monotonic()
    stages = ["read", "filter", *(["quality"] if _has(job, "quality") else []),
              *(["minhash"] if _has(job, "minhash_dedup") else []), "docs", "removed"]
    with progress.Watch(job.layout.work / "progress", f"clean {job.spec.name}", stages), \
            shared_cluster(job.spec, runner, extra) as flags:
        Plan(job, runner, flags).run()
    return time.monotonic() - started


def _has(job: CleanJob, step: str) -> bool:
    return any(name == step for steps in (*job.steps.values(), job.global_steps) for name, _ in steps)

"""Build and run the cleaning pipeline of a mixture spec with Apache Beam.

read -> quarantine malformed -> per-source filter chain (document filters fused, corpus stages in between)
-> global stages -> sorted Parquet per source (kept, removed, quarantined) + event counts -> stats and report.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from filters import registry
from filters.base import Document
from mixtures.spec import Spec, SpecError
from pipelines import schema
from pipelines.readers import Quarantined, ReaderOptions
from pipelines.stages import (
    EDITS,
    KEPT,
    QUARANTINE,
    REMOVED,
    FilterChain,
    ReadRecords,
    WriteSortedParquet,
    event_line,
    removed_events,
    split_tagged,
    sum_pairs,
    write_json_lines,
)

log = logging.getLogger(__name__)

RUNNER_ALIASES = {"DaskRunner": "apache_beam.runners.dask.dask_runner.DaskRunner"}
GLOBAL_STAGE_BASE = 1000  # stage numbers of cross-source stages start here
QUARANTINE_SCHEMA = schema.pa.schema(
    [("id", schema.pa.string()), ("source", schema.pa.string()), ("reason", schema.pa.string()),
     ("raw", schema.pa.string())]
)


@dataclass(frozen=True)
class RunLayout:
    """Where a run's files go; the one place that knows the run directory's shape."""

    root: Path

    @property
    def docs(self) -> Path:
        return self.root / "docs"

    @property
    def removed(self) -> Path:
        return self.root / "removed"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def events(self) -> Path:
        return self.root / "_work" / "events.jsonl"

    @property
    def outputs(self) -> Path:
        return self.root / "_work" / "outputs.txt"

    @property
    def stats(self) -> Path:
        return self.root / "stats.json"

    @property
    def manifest(self) -> Path:
        return self.root / "clean.json"

    @property
    def dedup_clusters(self) -> Path:
        return self.root / "dedup" / "clusters.parquet"


def source_steps(spec: Spec, source: str) -> list[tuple[str, dict[str, Any]]]:
    """The expanded filter chain of a source (chain names replaced by their members)."""
    return registry.expand([(s.name, s.params) for s in spec.sources[source].filters])


def global_steps(spec: Spec) -> list[tuple[str, dict[str, Any]]]:
    """Cross-source stages run after every source's own chain (dedup plugs in here)."""
    if spec.dedup is None:
        return []
    try:
        return spec.dedup.steps(sorted(spec.sources))
    except ValueError as err:
        raise SpecError(f"{spec.spec_path}: {err}") from None


def _stage_transform(name: str, params: dict[str, Any], stage: int) -> beam.PTransform:
    return registry.load_factory(registry.CORPUS_STAGES[name])(stage=stage, **params)


def _apply_steps(docs: beam.PCollection, steps: list[tuple[str, dict[str, Any]]], first: int, label: str,
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
            out = docs | f"{label}/{first + i}:{name}" >> _stage_transform(name, params, first + i)
            i += 1
        docs = out["kept"]
        removed.append(out[REMOVED])
        if EDITS in out:
            edits.append(out[EDITS])
    return docs


def _quarantine_row(q: Quarantined) -> dict[str, Any]:
    return {"id": q.location, "source": q.source, "reason": q.reason, "raw": q.raw}


def build_pipeline(p: beam.Pipeline, spec: Spec, layout: RunLayout) -> None:
    """Add every stage of the spec's cleaning pipeline to ``p``."""
    kept, removed, edits, quarantined, events = [], [], [], [], []
    for name, src in spec.sources.items():
        opts = ReaderOptions(name, src.text_field, src.id_field, src.url_field, src.max_doc_chars,
                             src.hf_split, tuple(src.hf_data_files))
        records = (
            p
            | f"{name}/Paths" >> beam.Create(spec.resolve_paths(name))
            | f"{name}/Read" >> beam.ParDo(ReadRecords(opts, src.reader, src.limit))
        )
        read = split_tagged(records, (KEPT, QUARANTINE), f"{name}/Split")
        docs = read[KEPT] | f"{name}/Reshuffle" >> beam.Reshuffle()
        events.append(docs | f"{name}/CountInput" >> beam.Map(lambda d: ((d.source, "input"), (1, len(d.text)))))
        quarantined.append(read[QUARANTINE])
        kept.append(_apply_steps(docs, source_steps(spec, name), 0, name, removed, edits))

    docs = tuple(kept) | "AllSources" >> beam.Flatten(pipeline=p)
    docs = _apply_steps(docs, global_steps(spec), GLOBAL_STAGE_BASE, "global", removed, edits)

    sources = sorted(spec.sources)
    shards = spec.pipeline.shards_per_source
    events.append(docs | "CountKept" >> beam.Map(lambda d: ((d.source, "kept"), (1, len(d.text)))))
    written = [
        docs | "KeptRows" >> beam.Map(schema.doc_row)
        | "WriteKept" >> WriteSortedParquet(str(layout.docs), schema.DOC_SCHEMA, sources, shards, _source_of)
    ]

    removed_all = tuple(removed) | "AllRemoved" >> beam.Flatten(pipeline=p)
    events.append(removed_all | "CountRemoved" >> beam.Map(removed_events))
    written.append(removed_all | "RemovedRows" >> beam.MapTuple(schema.removed_row)
                   | "WriteRemoved" >> WriteSortedParquet(str(layout.removed), schema.REMOVED_SCHEMA, sources, 1,
                                                          _source_of))

    quarantine_all = tuple(quarantined) | "AllQuarantined" >> beam.Flatten(pipeline=p)
    events.append(quarantine_all | "CountQuarantine" >> beam.Map(
        lambda q: ((q.source, f"quarantine\t{q.reason.split(':')[0]}"), (1, 0))))
    written.append(quarantine_all | "QuarantineRows" >> beam.Map(_quarantine_row)
                   | "WriteQuarantine" >> WriteSortedParquet(str(layout.quarantine), QUARANTINE_SCHEMA, sources, 1,
                                                             _source_of))

    edit_events = tuple(edits) | "AllEdits" >> beam.Flatten(pipeline=p) | "EditEvents" >> beam.MapTuple(
        lambda key, chars: ((key[0], f"edit\t{key[1]}"), (0, chars)))
    events.append(edit_events)
    written.append(
        tuple(events)
        | "AllEvents" >> beam.Flatten(pipeline=p)
        | "SumEvents" >> beam.CombinePerKey(sum_pairs)
        | "EventLines" >> beam.Map(event_line)
        | "CollectEvents" >> beam.combiners.ToList()
        | "WriteEvents" >> beam.Map(lambda lines: write_json_lines(str(layout.events), lines))
    )
    # One final node that depends on every output: runners that evaluate only the last node of the graph
    # (Beam's DaskRunner does) still compute everything, and the run records which files it wrote.
    (tuple(written)
     | "AllWritten" >> beam.Flatten(pipeline=p)
     | "CollectWritten" >> beam.combiners.ToList()
     | "WriteOutputList" >> beam.Map(lambda paths: write_json_lines(str(layout.outputs), map(str, paths))))


def _source_of(row: dict[str, Any]) -> str:
    return row["source"]


def pipeline_options(spec: Spec, runner: str | None = None, extra: list[str] | None = None) -> PipelineOptions:
    """Beam options from the spec, with a CLI runner and flags taking precedence.

    Worker processes log at WARNING unless a flag says otherwise (Beam's INFO chatter from every harness would
    bury Mixlab's own progress lines).
    """
    pipe = spec.pipeline
    return PipelineOptions(
        flags=["--default_sdk_harness_log_level=WARNING", *pipe.options, *(extra or [])],
        runner=RUNNER_ALIASES.get(runner or pipe.runner, runner or pipe.runner),
        direct_num_workers=pipe.direct_num_workers,
        direct_running_mode=pipe.direct_running_mode,
    )


def preflight(spec: Spec) -> None:
    """Build every document filter once so bad parameters or missing models fail before any work starts."""
    for source in spec.sources:
        for name, params in source_steps(spec, source):
            if name in registry.DOC_FILTERS:
                try:
                    registry.build_filter(name, params)
                except (ValueError, TypeError, OSError) as err:
                    raise SpecError(f"{spec.spec_path}: sources.{source}.filters: {name}: {err}") from err


def run_clean(spec: Spec, runner: str | None = None, extra: list[str] | None = None,
              force: bool = False) -> RunLayout:
    """Run the cleaning pipeline into ``spec.run_dir``; a finished run with the same fingerprint is reused."""
    from pipelines.decontam import prepare_decontam
    from pipelines.dedup_report import write_clusters
    from pipelines.quality_train import prepare_models
    from pipelines.report import write_stats_and_report

    preflight(spec)
    spec = prepare_models(spec, runner)
    spec = prepare_decontam(spec)
    layout = RunLayout(spec.run_dir)
    fingerprint = spec.fingerprint()
    if not force and layout.manifest.exists():
        done = json.loads(layout.manifest.read_text())
        if done.get("fingerprint") == fingerprint:
            log.info("clean: %s is up to date (fingerprint %s); use --force to rebuild", layout.root, fingerprint)
            return layout
    for path in (layout.docs, layout.removed, layout.quarantine, layout.events.parent):
        shutil.rmtree(path, ignore_errors=True)
    layout.root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log.info("clean: running %s with %s into %s", spec.name, runner or spec.pipeline.runner, layout.root)
    with beam.Pipeline(options=pipeline_options(spec, runner, extra)) as p:
        build_pipeline(p, spec, layout)
    seconds = time.monotonic() - started
    write_clusters(layout)
    write_stats_and_report(spec, layout, seconds)
    layout.manifest.write_text(json.dumps({"fingerprint": fingerprint, "spec": spec.spec_path}, indent=2) + "\n")
    log.info("clean: done in %.1f s; report at %s", seconds, layout.root / "report.md")
    return layout


def kept_documents(layout: RunLayout, source: str) -> list[Document]:
    """Read back a source's kept documents in their stored (sorted) order."""
    import pyarrow.parquet as pq

    docs: list[Document] = []
    for path in sorted((layout.docs / source).glob("*.parquet")):
        docs.extend(schema.row_doc(row) for row in pq.read_table(path).to_pylist())
    return docs

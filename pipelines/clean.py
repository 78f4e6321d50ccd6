"""The cleaning pipeline of a mixture spec, built and run with Apache Beam.

read -> quarantine malformed -> per-source filter chain (document filters fused, corpus stages in between)
-> global stages -> sorted Parquet per source (kept, removed, quarantined) + event counts.

It takes a :class:`CleanJob`: the spec plus each source's chain already bound to the run's resources (quality
model, eval index) by the orchestrator (``mixlab.jobs``); this module only builds and runs the graph.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.transforms import environments

from filters import registry
from mixtures import progress, schema
from mixtures.chains import GLOBAL_STAGE_BASE, StepList
from mixtures.layout import RunLayout
from mixtures.spec import Spec
from pipelines.beam_worker import VERBOSE_ENV
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
    write_sorted_lines,
)
from pipelines.unique_ids import UniqueIds

log = logging.getLogger(__name__)

RUNNER_ALIASES = {"DaskRunner": "apache_beam.runners.dask.dask_runner.DaskRunner"}
QUARANTINE_SCHEMA = schema.pa.schema(
    [("id", schema.pa.string()), ("source", schema.pa.string()), ("reason", schema.pa.string()),
     ("raw", schema.pa.string())]
)


@dataclass(frozen=True)
class CleanJob:
    """What one cleaning run executes: the spec, its bound chains and where the outputs go."""

    spec: Spec
    steps: dict[str, StepList]  # per source, expanded, with run resources filled in
    global_steps: StepList
    layout: RunLayout


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


def build_pipeline(p: beam.Pipeline, job: CleanJob) -> None:
    """Add every stage of the job's cleaning pipeline to ``p``."""
    spec, layout = job.spec, job.layout
    kept: list[beam.PCollection] = []
    removed: list[beam.PCollection] = []
    edits: list[beam.PCollection] = []
    quarantined: list[beam.PCollection] = []
    events: list[beam.PCollection] = []
    for name, src in spec.sources.items():
        opts = ReaderOptions(name, src.text_field, src.id_field, src.url_field, src.max_doc_chars,
                             src.hf_split, tuple(src.hf_data_files))
        records = (
            p
            | f"{name}/Paths" >> beam.Create(spec.resolve_paths(name))
            | f"{name}/Read" >> beam.ParDo(ReadRecords(opts, src.reader, src.limit))
        )
        read = split_tagged(records, (KEPT, QUARANTINE), f"{name}/Split")
        unique = read[KEPT] | f"{name}/UniqueIds" >> UniqueIds()  # a full shuffle by id, so no Reshuffle
        docs = unique[KEPT]
        quarantined.append(unique[QUARANTINE])
        events.append(docs | f"{name}/CountInput" >> beam.Map(lambda d: ((d.source, "input"), (1, len(d.text)))))
        quarantined.append(read[QUARANTINE])
        kept.append(_apply_steps(docs, job.steps[name], 0, name, removed, edits))

    docs = tuple(kept) | "AllSources" >> beam.Flatten(pipeline=p)
    docs = _apply_steps(docs, job.global_steps, GLOBAL_STAGE_BASE, "global", removed, edits)

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
        | "WriteEvents" >> beam.Map(lambda lines: write_sorted_lines(str(layout.events), lines))
    )
    # One final node that depends on every output: runners that evaluate only the last node of the graph
    # (Beam's DaskRunner does) still compute everything, and the run records which files it wrote.
    (tuple(written)
     | "AllWritten" >> beam.Flatten(pipeline=p)
     | "CollectWritten" >> beam.combiners.ToList()
     | "WriteOutputList" >> beam.Map(lambda paths: write_sorted_lines(str(layout.outputs), map(str, paths))))


def _source_of(row: dict[str, Any]) -> str:
    return row["source"]


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


def run_pipeline(job: CleanJob, runner: str | None = None, extra: list[str] | None = None) -> float:
    """Run the job's pipeline to completion; return its wall time in seconds."""
    started = time.monotonic()
    stages = ["read", "filter", *(["quality"] if _has(job, "quality") else []),
              *(["minhash"] if _has(job, "minhash_dedup") else []), "docs", "removed"]
    with progress.Watch(job.layout.work / "progress", f"clean {job.spec.name}", stages), \
            make_pipeline(pipeline_options(job.spec, runner, extra)) as p:
        build_pipeline(p, job)
    return time.monotonic() - started


def _has(job: CleanJob, step: str) -> bool:
    return any(name == step for steps in (*job.steps.values(), job.global_steps) for name, _ in steps)

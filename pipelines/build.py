"""The mixture build as Beam work on the spec's runner: scan -> tokenizer -> count -> plan -> write -> merge.

Three pipelines, each ``Create(tasks) -> Reshuffle -> ParDo(one task) -> one final node`` (the node collects the
paths the workers wrote, so runners that evaluate only the last node, such as DaskRunner, run everything):

1. ``scan`` (a trained BPE only): per kept part, the tokenizer-sample candidates;
2. ``count``: per kept part, token ids cached and counts written under ``_work/build``;
3. ``write``: per kept part its quota of the training stream (``mds/train/<source>/part-NNNNN/``) and its rows
   of the catalogue, per source the held-out stream, per removed part its catalogue rows.

Between them the driver (:mod:`mixtures.build`) merges the workers' small reports: the tokenizer sample, the
held-out set, the plan from per-source totals, each part's quota; at the end it merges every stream's part
indexes into one ``index.json`` and writes ``streams.yaml``, ``plan.json``, the small catalogue tables and the
report. Every task's output depends only on the task and the run's data, never on which worker ran it or on
bundle boundaries, so the outputs are byte-identical on any runner and worker count.

**Resuming.** A task writes its summary last (temporary name, then rename): a task with a summary is done. The
build's fingerprint (the cleaned run's and the mixture section's) is kept in ``_work/build/build.json``; a rerun
with the same fingerprint keeps ``_work/build`` (and the trained tokenizer there), runs only the tasks without a
summary and leaves the write pass's finished parts in place. Any other build starts over.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

import apache_beam as beam
from tokenizers import Tokenizer

from filters.hashing import fingerprint
from mixtures import build as mb
from mixtures import progress
from mixtures.layout import RunLayout
from mixtures.plan import PlanError, make_plan
from mixtures.spec import Spec
from mixtures.tokenizer import TokenizerError, eos_id, load_tokenizer, prepare, save_folder, train_bpe
from pipelines.clean import pipeline_options, run_graph, shared_cluster, write_record
from pipelines.stages import write_sorted_lines

log = logging.getLogger(__name__)
BUILD_FORMAT = 1  # the layout of _work/build; a change makes unfinished builds of older versions start over


class _Run(beam.DoFn):
    """One task of a pass, through :class:`mixtures.build.Worker` (built once per worker)."""

    def __init__(self, settings: mb.BuildSettings, step: str) -> None:
        self.settings, self.step = settings, step
        self.worker: mb.Worker | None = None

    def setup(self) -> None:
        self.worker = mb.Worker(self.settings)

    def process(self, task: Any) -> Any:
        assert self.worker is not None
        summary = getattr(self.worker, self.step)(task)
        progress.count(self.step, getattr(task, "source", "-"))
        yield summary


def run_pass(spec: Spec, runner: str | None, extra: list[str] | None, settings: mb.BuildSettings, step: str,
             tasks: Sequence[Any]) -> None:
    """Run ``Worker.<step>`` over every task without a summary on the spec's runner; then every task has one."""
    pending = [t for t in tasks if not mb.summary_path(settings, step, t).is_file()]
    if len(pending) < len(tasks):
        log.info("mixture: %s: %d of %d tasks already done, resuming", step, len(tasks) - len(pending), len(tasks))
    if pending:
        done = settings.work("done", f"{step}.txt")
        with run_graph(pipeline_options(spec, runner, extra)) as p:
            (p
             | f"{step}/Tasks" >> beam.Create(pending, reshuffle=False)
             | f"{step}/Spread" >> beam.Reshuffle()
             | f"{step}/Run" >> beam.ParDo(_Run(settings, step))
             | f"{step}/Collect" >> beam.combiners.ToList()
             | f"{step}/Done" >> beam.Map(lambda paths: write_sorted_lines(str(done), paths)))
    missing = sum(not mb.summary_path(settings, step, t).is_file() for t in tasks)
    if missing:
        raise RuntimeError(f"mixture build: pass {step} finished {len(tasks) - missing} of {len(tasks)} tasks")


def build_key(spec: Spec, layout: RunLayout, settings: mb.BuildSettings) -> str | None:
    """The build's identity: the finished cleaning it reads and the mixture settings; None without a finished
    cleaning (``clean.json``), and then a build never resumes."""
    cleaned = json.loads(layout.manifest.read_text(encoding="utf-8")).get("fingerprint") \
        if layout.manifest.is_file() else None
    if not cleaned or spec.mixture is None:
        return None
    return fingerprint([BUILD_FORMAT, cleaned, spec.mixture.model_dump(mode="json"), asdict(settings)])


def _start_or_resume(layout: RunLayout, key: str | None) -> None:
    """Keep ``_work/build`` when it holds the same build; else empty it and record ``key`` (written atomically)."""
    record = layout.build_record
    kept = json.loads(record.read_text(encoding="utf-8")).get("fingerprint") if record.is_file() else None
    if key is not None and kept == key:
        log.info("mixture: resuming the build in %s (fingerprint %s): finished tasks are kept", layout.build_work, key)
        return
    layout.remove(layout.build_work)
    if key is not None:
        write_record(record, key, [], {})


def _tokenizer(spec: Spec, runner: str | None, extra: list[str] | None, settings: mb.BuildSettings,
               parts: dict[str, list[mb.Part]]) -> Any:
    mix = spec.mixture
    assert mix is not None
    if mix.tokenizer.name != "bpe":
        try:
            return prepare(load_tokenizer(mix.tokenizer.name))
        except TokenizerError as err:
            raise mb.MixtureError(f"{spec.spec_path}: mixture.tokenizer.name: {err}") from None
    having = {s: p for s, p in parts.items() if p}
    settings = replace(settings, share_chars=mix.tokenizer.sample_chars // max(len(having), 1))
    run_pass(spec, runner, extra, settings, "scan", [p for ps in having.values() for p in ps])
    trained = settings.work("tokenizer.json")  # kept for a resumed build
    if trained.is_file():
        return prepare(Tokenizer.from_file(str(trained)))
    log.info("mixture: training a byte-level BPE (vocab %d) on %d chars of the run's data",
             mix.tokenizer.vocab_size, mix.tokenizer.sample_chars)
    tok = prepare(train_bpe(mb.tokenizer_sample(settings, having), mix.tokenizer.vocab_size,
                            mix.tokenizer.eos_token))
    tmp = trained.with_name(trained.name + ".tmp")
    tok.save(str(tmp))
    os.replace(tmp, trained)
    return tok


def build_mixture(spec: Spec, layout: RunLayout, runner: str | None = None,
                  extra: list[str] | None = None) -> dict[str, Any]:
    """Build the spec's mixture from the cleaned run in ``layout`` on the spec's runner; returns the plan."""
    with shared_cluster(spec, runner, extra) as flags:
        return _build_mixture(spec, layout, runner, flags)


def _build_mixture(spec: Spec, layout: RunLayout, runner: str | None, extra: list[str] | None) -> dict[str, Any]:
    mix = spec.mixture
    if mix is None:
        raise mb.MixtureError(f"{spec.spec_path}: no mixture: section")
    settings = mb.settings_for(spec, layout)
    timings: dict[str, float] = {}
    clock = time.monotonic()
    _start_or_resume(layout, build_key(spec, layout, settings))

    sources = sorted(spec.sources)
    parts = {s: mb.list_parts(layout.docs_of(s), s, "kept") for s in sources}
    removed = {s: mb.list_parts(layout.removed_of(s), s, "removed") for s in sources}
    weights = {s: float(m.weight if m.weight is not None else m.tokens or 0) for s, m in mix.sources.items()}
    for s in sources:
        if not parts[s] and weights[s] > 0:
            raise mb.MixtureError(f"source {s!r} has no documents left after filtering (see {layout.report}); "
                                  "give it weight 0 or loosen its filters")
    timings["parts"] = time.monotonic() - clock

    clock = time.monotonic()
    tok = _tokenizer(spec, runner, extra, settings, parts)
    try:
        eos = eos_id(tok, mix.tokenizer.eos_token)
    except TokenizerError as err:
        raise mb.MixtureError(f"{spec.spec_path}: mixture.tokenizer.eos_token: {err}") from None
    settings = replace(settings, tokenizer=tok.to_str(), eos=eos)
    timings["tokenizer"] = time.monotonic() - clock

    clock = time.monotonic()
    run_pass(spec, runner, extra, settings, "count", [p for s in sources for p in parts[s]])
    counts = {s: mb.aggregate_counts(settings, s, parts[s]) for s in sources}
    for s, src in counts.items():
        mb.choose_validation(src, mix, required=weights[s] > 0)
        log.info("mixture: %s: %d documents in %d parts, %d tokens", s, src.rows, len(src.parts), src.token_ids)
    timings["count"] = time.monotonic() - clock

    available = {s: (src.train_docs, src.train_tokens) for s, src in counts.items()}
    try:
        plans = make_plan(weights, available, {s: mix.cap(s) for s in weights}, mix.total_tokens,
                          mix.max_seq_len, mix.on_shortfall == "redistribute")
    except PlanError as err:
        raise mb.MixtureError(f"{spec.spec_path}: mixture: {err}") from None
    for p in plans:
        mb.check_quality(counts[p.source], p, mix)
    mb.print_plan(plans, counts, mix)

    clock = time.monotonic()
    cleared = settings.work("outputs_cleared")  # a resumed write pass keeps its finished parts
    if not cleared.is_file():
        mb.clear_outputs(layout)  # every check passed: from here on the run's mixture outputs are replaced
        cleared.parent.mkdir(parents=True, exist_ok=True)
        cleared.touch()
    save_folder(tok, layout.tokenizer, mix.tokenizer.eos_token)
    per_shard = mb.per_shard_samples(plans, mix.max_seq_len)
    tasks = mb.write_tasks(counts, plans, removed, mix.max_seq_len, per_shard)
    run_pass(spec, runner, extra, settings, "write", tasks)
    timings["write"] = time.monotonic() - clock

    clock = time.monotonic()
    written: list[mb.Written] = []
    for p in plans:
        train = mb.merge_train(settings, p.source, parts[p.source]) if p.target_tokens else None
        if train is not None:
            if train.stats.tokens != p.target_tokens:
                raise RuntimeError(f"{train.path}: wrote {train.stats.tokens} tokens, planned {p.target_tokens}")
            written.append(train)
        if len(counts[p.source].valid_rows):
            written.append(mb.valid_written(settings, p.source))
    plan_doc = mb.write_manifests(layout, spec, plans, counts, written, tok.get_vocab_size(), eos, settings.seed)
    mb.write_catalogue_tables(layout, written, {p.source: p.epochs for p in plans})
    mb.report_section(layout, plan_doc)
    timings["merge"] = time.monotonic() - clock
    layout.remove(layout.build_work)
    layout.work.mkdir(parents=True, exist_ok=True)
    layout.mixture_timings.write_text(json.dumps(
        {**timings, "tokens_tokenized": sum(c.token_ids for c in counts.values()),
         "parts": sum(len(p) for p in parts.values()), "samples_per_shard": per_shard}, indent=2) + "\n")
    log.info("mixture: built in %s", ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    return plan_doc

"""The ``quality`` corpus stage: score every document with the quality classifier, then keep by the rule.

Scoring is batched (``beam.BatchElements`` -> one fastText ``predict`` per batch) and the model is loaded once
per worker in ``DoFn.setup``. When the model's ``manifest.json`` names fold models (a spec-trained classifier),
both are loaded and each document is scored by the model of its fold, which never saw it (cross-fitting);
a model file without them scores every document itself. ``top_percentile`` computes each source's cutoff with a
``CombinePerKey`` over all scores and applies it as a side input. Outputs follow the
corpus-stage contract of ``pipelines.stages``.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import apache_beam as beam

from filters.base import Document
from filters.params import given, resolve
from filters.quality import (
    CrossFitModel,
    QualityModel,
    QualityParams,
    QualityRule,
    fold_model_paths,
    top_percent_cutoff,
)
from mixtures import progress
from pipelines.stages import KEPT, REMOVED, split_tagged

QUALITY_MODEL_ENV = "MIXLAB_QUALITY_MODEL"


class ScoreBatch(beam.DoFn):
    """Add ``quality_score`` to each document of a batch (models loaded once per worker, batched predicts).

    ``cross_fit``: the fold models and the fold seed, or None to score with ``model`` alone.
    """

    def __init__(self, model: str, max_chars: int, cross_fit: tuple[tuple[str, ...], int] | None = None) -> None:
        self.model_path, self.max_chars, self.cross_fit = model, max_chars, cross_fit
        self.model: QualityModel | CrossFitModel | None = None

    def setup(self) -> None:
        if self.cross_fit is None:
            self.model = QualityModel(self.model_path, self.max_chars)
        else:
            self.model = CrossFitModel(self.cross_fit[0], self.cross_fit[1], self.max_chars)

    def process(self, batch: list[Document]) -> Iterator[Document]:
        assert self.model is not None
        if batch:
            progress.count("quality", batch[0].source, len(batch))
        for doc, score in zip(batch, self.model.score_docs(batch), strict=True):
            yield replace(doc, meta={**doc.meta, "quality_score": score})


class Decide(beam.DoFn):
    """Keep or remove a scored document by the rule; removals carry the rule's reason and the stage."""

    def __init__(self, rule: QualityRule, stage: int) -> None:
        self.rule, self.stage = rule, stage

    def process(self, doc: Document, cutoffs: dict[str, float] | None = None) -> Iterator[Any]:
        cutoff = (cutoffs or {}).get(doc.source)
        reason = self.rule.reason(doc.source, doc.id, doc.meta["quality_score"], cutoff)
        if reason is None:
            yield KEPT, doc
        else:
            yield REMOVED, (doc, reason, self.stage)


class TopPercentCutoff(beam.CombineFn):
    """Exact per-source cutoff: collects the source's scores (8 bytes each) and picks the top-percent one."""

    def __init__(self, top_percent: float) -> None:
        self.top_percent = top_percent

    def create_accumulator(self) -> list[float]:
        return []

    def add_input(self, acc: list[float], score: float) -> list[float]:
        acc.append(score)
        return acc

    def merge_accumulators(self, accs: Iterable[list[float]]) -> list[float]:
        return [s for acc in accs for s in acc]

    def extract_output(self, acc: list[float]) -> float:
        return top_percent_cutoff(acc, self.top_percent) if acc else 1.0


class QualityStage(beam.PTransform):
    """Score, then keep by threshold, top percentile per source, Pareto sampling, or keep all (tag)."""

    def __init__(self, rule: QualityRule, stage: int, cross_fit: tuple[tuple[str, ...], int] | None = None) -> None:
        super().__init__()
        self.rule, self.stage, self.cross_fit = rule, stage, cross_fit

    def expand(self, docs: beam.PCollection) -> dict[str, beam.PCollection]:
        rule = self.rule
        scored = (docs
                  | "Batch" >> beam.BatchElements(min_batch_size=min(16, rule.batch_size),
                                                  max_batch_size=rule.batch_size)
                  | "Score" >> beam.ParDo(ScoreBatch(str(rule.model), rule.max_chars, self.cross_fit)))
        side: dict[str, Any] = {}
        if rule.mode == "top_percentile":
            cutoffs = (scored
                       | "SourceScore" >> beam.Map(lambda d: (d.source, d.meta["quality_score"]))
                       | "Cutoff" >> beam.CombinePerKey(TopPercentCutoff(rule.top_percent)))
            side["cutoffs"] = beam.pvalue.AsDict(cutoffs)
        return split_tagged(scored | "Decide" >> beam.ParDo(Decide(rule, self.stage), **side), (KEPT, REMOVED),
                            "Split")


def quality_stage(stage: int, params: QualityParams | None = None, **settings: Any) -> QualityStage:
    """Registry factory: checks parameters (:class:`filters.quality.QualityParams`, or the same as keywords) and
    loads the model now, so a bad model fails before any work."""
    chosen = given(resolve(QualityParams, params, settings, "quality"))
    chosen.setdefault("model", os.environ.get(QUALITY_MODEL_ENV) or None)
    if chosen["model"] and "max_chars" not in chosen:
        chosen["max_chars"] = trained_max_chars(chosen["model"])
    rule = QualityRule(**chosen)
    if rule.model is None:
        raise ValueError(f"quality: no model; give the step `model: PATH`, set ${QUALITY_MODEL_ENV}, or add "
                         "a `quality:` section to the spec so `mixlab mixture` trains one first")
    folds = cross_fit_models(rule.model)
    for path in (rule.model, *(folds[0] if folds else ())):
        _check_model(path, _stamp(path))
    return QualityStage(rule, stage, folds)


def _manifest(model: str) -> dict[str, Any] | None:
    """The ``manifest.json`` next to ``model`` when it describes that model (written by ``mixlab quality train``)."""
    manifest = Path(model).parent / "manifest.json"
    if manifest.is_file():
        data = json.loads(manifest.read_text())
        if Path(data.get("model", "")).resolve() == Path(model).resolve():
            return data
    return None


def trained_max_chars(model: str) -> int:
    """The ``max_chars`` the model was trained with (its ``manifest.json``), else the default."""
    data = _manifest(model)
    return int(data["max_chars"]) if data else QualityRule.max_chars


def cross_fit_models(model: str) -> tuple[tuple[str, ...], int] | None:
    """The fold models and fold seed the model's manifest records, or None (a single model: in-sample scores)."""
    data = _manifest(model)
    if not data or "cross_fit" not in data:
        return None
    paths = tuple(str(p) for p in fold_model_paths(model))
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise ValueError(f"quality: {Path(model).parent / 'manifest.json'} records cross-fitted fold models but "
                         f"{', '.join(missing)} is missing; retrain with `mixlab quality train SPEC --force`")
    return paths, int(data["cross_fit"]["seed"])


def _stamp(path: str) -> tuple[int, int] | None:
    return (os.stat(path).st_mtime_ns, os.stat(path).st_size) if os.path.isfile(path) else None


@functools.lru_cache(maxsize=16)
def _check_model(path: str, stamp: tuple[int, int] | None) -> None:
    """Load the model once per file version (a missing or bad file raises, and errors are not cached)."""
    QualityModel(path)

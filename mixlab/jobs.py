"""The one orchestrator of Mixlab's jobs: clean, build, and the runs that ablations and proposals need.

The CLI, the notebooks, ``mixlab ablate`` and ``mixlab propose`` call these functions; nothing else decides when
a run is cleaned, when a classifier is (re)trained or when a mixture is built. Each job reads the spec, binds the
run's resources (quality model, eval index) to the steps that need them, without rewriting the spec, and hands
the work to the room that does it: Beam (:mod:`pipelines.clean`), the classifier trainer
(:mod:`mixtures.classifier`), the mixture build (Beam work in :mod:`pipelines.build`, its decisions in
:mod:`mixtures.build`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from filters import registry
from filters.base import Document
from filters.hashing import fingerprint
from filters.quality import FOLDS, fold_model_paths
from mixlab.locks import run_lock
from mixtures import schema
from mixtures.chains import StepList, global_steps, source_steps
from mixtures.layout import RunLayout
from mixtures.progress import Watch
from mixtures.quality_spec import QualitySpec
from mixtures.spec import SourceSpec, Spec, SpecError, load_spec
from mixtures.tiny import drop_thin_sources, shrink_spec

if TYPE_CHECKING:
    from proxy_train.ablate import Mix

log = logging.getLogger(__name__)

QUALITY_TRAINING_RUN = "train_docs"  # the sub-run under quality/ that collects the classifier's documents


# ---- binding run resources to steps ---------------------------------------------------------------------------

def _step_error(spec: Spec, source: str, i: int, name: str, err: Exception) -> SpecError:
    message = str(err) if str(err).startswith(f"{name}:") else f"{name}: {err}"
    return SpecError(f"{spec.spec_path}: sources.{source}.filters.{i}: {message}")


def bind_steps(spec: Spec, runner: str | None = None) -> dict[str, StepList]:
    """Each source's expanded chain with the run's resources filled in, checked before any work starts.

    ``quality`` steps without a ``model`` get the spec's classifier (trained first when missing or stale);
    ``decontam`` steps get their eval index, built once into the run directory. Every document filter is built
    once here, so a bad parameter or a missing model is a spec error naming the step, not a crash in a worker.
    """
    from filters.decontam import bind_run
    from pipelines.quality import quality_stage

    layout = RunLayout(spec.run_dir)
    trained: dict[str, Any] = {}
    bound: dict[str, StepList] = {}
    for source in spec.sources:
        steps = source_steps(spec, source)
        for i, (name, params) in enumerate(steps):
            try:
                if name == "quality":
                    if "model" not in params and spec.quality is not None:
                        trained = trained or {"model": str(train_quality(spec, runner=runner)),
                                              "max_chars": spec.quality.max_chars,
                                              "trained": quality_fingerprint(spec)}
                        params = {**trained, **params}
                    quality_stage(stage=i, **params)
                elif name == "decontam":
                    params = bind_run(dict(params), layout.root)
                if name in registry.DOC_FILTERS:
                    registry.build_filter(name, params)
            except (ValueError, TypeError, OSError) as err:
                raise _step_error(spec, source, i, name, err) from err
            steps[i] = (name, params)
        bound[source] = steps
    return bound


# ---- clean ----------------------------------------------------------------------------------------------------

def clean(spec: Spec, runner: str | None = None, extra: list[str] | None = None, force: bool = False,
          sample_docs: int | None = None) -> RunLayout:
    """Clean the spec's sources into ``spec.run_dir``; a finished run with the same fingerprint is reused.

    An unfinished run with the same fingerprint resumes: only its unfinished parts run (``force``: start over).
    ``clean.json`` is removed before any work and written after every output is in place, so a killed run is
    never taken for a finished one. ``sample_docs``: clean only that many documents per source, those with the
    smallest keyed hashes (the quality classifier's training documents).
    """
    with run_lock(RunLayout(spec.run_dir), "clean"):
        return _clean(spec, runner, extra, force, sample_docs)


def _clean(spec: Spec, runner: str | None, extra: list[str] | None, force: bool,
           sample_docs: int | None) -> RunLayout:
    from dataclasses import replace

    from mixtures.report.cleaning import write_stats_and_report
    from mixtures.report.dedup import write_clusters
    from mixtures.report.run_html import write_run_html
    from pipelines.clean import CleanJob, run_pipeline

    steps = bind_steps(spec, runner)
    layout = RunLayout(spec.run_dir)
    job = CleanJob(spec, steps, global_steps(spec), layout)
    key = fingerprint([spec.fingerprint(), steps, job.global_steps]
                      + ([{"sample_docs": sample_docs}] if sample_docs is not None else []))
    if not force and _manifest_fingerprint(layout.manifest) == key:
        log.info("clean: %s is up to date (fingerprint %s); use --force to rebuild", layout.root, key)
        return layout
    layout.remove(layout.manifest)  # first: from here on the old outputs are not trusted
    if force or _manifest_fingerprint(layout.run_record) != key:
        for path in (layout.docs, layout.removed, layout.quarantine, layout.work):
            layout.remove(path)  # strictly inside the run: a symlinked child is unlinked, its target kept
        layout.work.mkdir(parents=True, exist_ok=True)
        layout.run_record.write_text(json.dumps({"fingerprint": key}) + "\n")
        log.info("clean: running %s with %s into %s", spec.name, runner or spec.pipeline.runner, layout.root)
    else:
        log.info("clean: resuming %s (fingerprint %s): finished parts are kept", layout.root, key)
    seconds = run_pipeline(replace(job, fingerprint=key, sample_docs=sample_docs), runner, extra)
    log.info("clean: writing the report")
    write_clusters(layout)
    write_stats_and_report(spec, layout, seconds)
    write_run_html(spec, layout)
    layout.manifest.write_text(json.dumps({"fingerprint": key, "spec": spec.spec_path}, indent=2) + "\n")
    log.info("clean: done in %.1f s; report at %s", seconds, layout.report)
    return layout


def kept_documents(layout: RunLayout, source: str) -> list[Document]:
    """A cleaned source's kept documents in their stored (sorted) order."""
    return list(schema.read_docs(layout.docs_of(source)))


# ---- the quality classifier -------------------------------------------------------------------------------------

def _quality(spec: Spec) -> QualitySpec:
    if spec.quality is None:
        raise SpecError(f"{spec.spec_path}: quality: the spec has no `quality:` section (positive and negative "
                        "sources) to train a classifier from")
    return spec.quality


def quality_model_path(spec: Spec) -> Path:
    """Where the spec's classifier lives: ``quality.model`` or ``<run dir>/quality/model.bin``."""
    q = _quality(spec)
    return Path(q.model).resolve() if q.model else RunLayout(spec.run_dir).quality_model


def _without_quality(src: SourceSpec) -> SourceSpec:
    return src.model_copy(update={"filters": [s for s in src.filters if s.name != "quality"]})


def quality_training_spec(spec: Spec) -> Spec:
    """The spec's positive and negative sources with their own chains minus ``quality``, run under quality/.

    Sections that span sources (dedup, mixture, quality) are left out: they may name sources the sub-run lacks.
    """
    q = _quality(spec)
    sources = {name: _without_quality(spec.sources[name]) for name in (*q.positive, *q.negative)}
    return spec.model_copy(update={"name": QUALITY_TRAINING_RUN, "output_dir": str(RunLayout(spec.run_dir).quality),
                                   "sources": sources, "dedup": None, "mixture": None, "quality": None})


def quality_fingerprint(spec: Spec) -> str:
    """Changes when the training config, the sources' chains or their input files change."""
    q = _quality(spec).model_dump(mode="json", exclude={"model"})
    return fingerprint([q, quality_training_spec(spec).fingerprint(), {"cross_fit_folds": FOLDS}])


def _manifest_fingerprint(path: Path) -> str | None:
    return json.loads(path.read_text()).get("fingerprint") if path.is_file() else None


def train_quality(spec: Spec, force: bool = False, runner: str | None = None) -> Path:
    """Train (or reuse, when up to date) the spec's classifier; return the model path.

    The training documents are a bounded sample: per source, the ``4 x max_docs`` documents with the smallest
    keyed hashes of (seed, source, id) are cleaned with the source's chain minus ``quality``, whatever the size of
    the corpus. (The main run's outputs cannot serve: its chains need this model first.)
    """
    with run_lock(RunLayout(spec.run_dir), "quality train"):  # reentrant: clean() already holds it
        return _train_quality(spec, force, runner)


def _train_quality(spec: Spec, force: bool, runner: str | None) -> Path:
    from mixtures.classifier import train_classifier

    q = _quality(spec)
    sample = 4 * q.max_docs  # a class takes at most max_docs, after the chains and balancing
    out, key = quality_model_path(spec), fingerprint([quality_fingerprint(spec), {"sample_docs": sample}])
    complete = all(p.is_file() for p in (out, *fold_model_paths(out)))
    if not force and complete and _manifest_fingerprint(out.parent / "manifest.json") == key:
        log.info("quality: %s is up to date (fingerprint %s)", out, key)
        return out
    log.info("quality: collecting training documents from %s (positive) vs %s (negative), at most %d per source",
             ", ".join(q.positive), ", ".join(q.negative), sample)
    sub = quality_training_spec(spec)
    layout = clean(sub, runner=runner, sample_docs=sample)
    docs = {name: kept_documents(layout, name) for name in sub.sources}
    with Watch(layout.work / "progress", f"quality {spec.name}", ["train"]):  # a heartbeat while fastText trains
        return train_classifier(docs, q, out, spec.name, {"spec": spec.spec_path, "fingerprint": key})


# ---- build ----------------------------------------------------------------------------------------------------

def build(spec: Spec, layout: RunLayout | None = None, runner: str | None = None,
          extra: list[str] | None = None) -> dict[str, Any]:
    """Build the spec's mixture from its cleaned run (``spec.run_dir`` unless ``layout``) as Beam work on the
    spec's runner (or ``runner``, with extra pipeline flags); returns the plan."""
    from mixtures.report.run_html import write_run_html
    from pipelines.build import build_mixture

    layout = layout or RunLayout(spec.run_dir)
    with run_lock(layout, "build"), \
            Watch(layout.work / "progress", f"build {spec.name}", ["scan", "count", "write"], unit="parts"):
        plan = build_mixture(spec, layout, runner=runner, extra=extra)
        if layout.stats.is_file():  # a cleaned run: the HTML report again, now with the plan
            write_run_html(spec, layout, mixture=True)
    return plan


def mixture(spec: Spec, runner: str | None = None, extra: list[str] | None = None, force: bool = False) -> RunLayout:
    """The whole job of ``mixlab mixture``: clean, then build the mixture when the spec has one."""
    with run_lock(RunLayout(spec.run_dir), "mixture"):  # one lock for both steps
        layout = clean(spec, runner=runner, extra=extra, force=force)
        if spec.mixture is not None:
            build(spec, runner=runner, extra=extra)
    return layout


def ensure_built(spec: Spec, tiny: bool = False) -> Path:
    """The spec's run directory with a built mixture: clean and build it if streams.yaml is missing.

    ``tiny``: the spec is a tiny copy; sources its filters left (nearly) empty are dropped before the build.
    """
    layout = RunLayout(spec.run_dir)
    if layout.streams.is_file():
        return layout.root
    log.info("building mixture %s into %s", spec.name, layout.root)
    with run_lock(layout, "mixture"):
        clean(spec)
        if tiny:
            stats = json.loads(layout.stats.read_text(encoding="utf-8"))
            spec = drop_thin_sources(spec, {s: st["kept"]["docs"] for s, st in stats["sources"].items()})
        build(spec)
    return layout.root


def resolve_mix(arg: str, root: Path, tiny_docs: int | None, source_docs: dict[str, int] | None = None) -> Mix:
    """A run directory holding streams.yaml, or a spec (shrunk under ``root/specs`` when ``tiny_docs``), built."""
    from proxy_train.ablate import Mix

    if RunLayout(Path(arg)).streams.is_file():
        return Mix(Path(arg).resolve().name, Path(arg).resolve())
    tiny = shrink_spec(arg, root / "specs", docs=tiny_docs, output_dir=root / "runs",
                       source_docs=source_docs) if tiny_docs else None
    spec = tiny or load_spec(arg)
    return Mix(spec.name, ensure_built(spec, tiny=bool(tiny_docs)))


def resolve_spec(arg: str | Path, root: Path, tiny_docs: int | None, source_docs: dict[str, int] | None = None,
                 budget_tokens: int | None = None) -> Mix:
    """As :func:`resolve_mix`, with the tiny copy's token budget; a tiny copy that changed since its build is rebuilt.

    The tiny copy (``root/specs/<name>.yaml``) is rewritten on every call; when its text differs from the one its
    run was built from (other document counts, budget or validation), the mixture is built again (cleaning is
    still reused by fingerprint when the sources and filters are the same).
    """
    from proxy_train.ablate import Mix

    if RunLayout(Path(arg)).streams.is_file():
        return Mix(Path(arg).resolve().name, Path(arg).resolve())
    if not tiny_docs:
        spec = load_spec(arg)
        return Mix(spec.name, ensure_built(spec))
    extra: dict[str, Any] = {"budget_tokens": budget_tokens} if budget_tokens else {}
    spec = shrink_spec(arg, root / "specs", docs=tiny_docs, output_dir=root / "runs", source_docs=source_docs,
                       **extra)
    layout = RunLayout(spec.run_dir)
    stamp = layout.root / "tiny_spec.json"
    key = fingerprint(yaml.safe_load(Path(spec.spec_path).read_text(encoding="utf-8")))  # the keys, not comments
    if layout.streams.is_file() and _manifest_fingerprint(stamp) != key:
        log.warning("tiny copy %s changed since its run was built; building its mixture again", spec.spec_path)
        layout.streams.unlink()
    root_dir = ensure_built(spec, tiny=True)
    stamp.write_text(json.dumps({"fingerprint": key, "spec": spec.spec_path}) + "\n", encoding="utf-8")
    return Mix(spec.name, root_dir)


def resolve_variant(path: Path, root: Path, tiny_docs: int | None, source_docs: dict[str, int] | None = None,
                    budget_tokens: int | None = None) -> Mix:
    """A variant spec written by an experiment, built (as a tiny copy with ``tiny_docs``)."""
    return resolve_spec(path, root, tiny_docs, source_docs, budget_tokens)

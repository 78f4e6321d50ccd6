"""Every path of a run directory: the one place that knows the shape of ``runs/<mix>/``.

Cleaning writes ``docs/``, ``removed/``, ``quarantine/``, ``stats.json``, ``report.md``, ``report.html``; the
mixture build writes ``tokenizer/``, ``mds/``, ``streams.yaml``, ``plan.json``, ``catalogue/`` (and rewrites both
reports); proxies live under ``proxy/``. Timings go to ``_work/``. Nothing else in Mixlab joins path segments of a
run by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunLayout:
    """Where a run's files go."""

    root: Path

    # cleaning
    @property
    def docs(self) -> Path:
        return self.root / "docs"

    @property
    def removed(self) -> Path:
        return self.root / "removed"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    def docs_of(self, source: str) -> Path:
        """A source's kept documents (sorted Parquet parts)."""
        return self.docs / source

    def removed_of(self, source: str) -> Path:
        """A source's removed documents, each with its reason."""
        return self.removed / source

    def quarantine_of(self, source: str) -> Path:
        """A source's unreadable records, each with its reason and file:line."""
        return self.quarantine / source

    @property
    def work(self) -> Path:
        """Scratch files of the run (events, output lists, timings); not part of the compared outputs."""
        return self.root / "_work"

    @property
    def events(self) -> Path:
        return self.work / "events.jsonl"

    @property
    def outputs(self) -> Path:
        return self.work / "outputs.txt"

    @property
    def mixture_timings(self) -> Path:
        return self.work / "mixture_timings.json"

    @property
    def clean_timings(self) -> Path:
        """The cleaning pipeline's wall time: kept out of report.md so two runs of a spec compare equal."""
        return self.work / "clean_timings.json"

    @property
    def build_work(self) -> Path:
        """The mixture build's scratch: per-part token counts, cached token ids, workers' summaries."""
        return self.work / "build"

    @property
    def stats(self) -> Path:
        return self.root / "stats.json"

    @property
    def manifest(self) -> Path:
        """``clean.json``: the fingerprint of the finished cleaning."""
        return self.root / "clean.json"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        """``report.html``: the self-contained HTML report (charts, examples), beside report.md."""
        return self.root / "report.html"

    @property
    def funnel_chart(self) -> Path:
        return self.root / "funnel.svg"

    @property
    def dedup_clusters(self) -> Path:
        return self.root / "dedup" / "clusters.parquet"

    @property
    def quality(self) -> Path:
        """The run's quality classifier: models, manifest, eval, training documents."""
        return self.root / "quality"

    @property
    def quality_model(self) -> Path:
        return self.quality / "model.bin"

    @property
    def decontam(self) -> Path:
        """Eval n-gram indexes and ``hits.parquet``."""
        return self.root / "decontam"

    @property
    def decontam_hits(self) -> Path:
        return self.decontam / "hits.parquet"

    # mixture build
    @property
    def tokenizer(self) -> Path:
        """The Hugging Face tokenizer folder."""
        return self.root / "tokenizer"

    @property
    def tokenizer_file(self) -> Path:
        """The folder's ``tokenizers`` JSON (what Mixlab's own readers load)."""
        return self.tokenizer / "tokenizer.json"

    @property
    def mds(self) -> Path:
        return self.root / "mds"

    def stream(self, split: str, source: str) -> Path:
        """One MDS stream folder: ``mds/<split>/<source>`` (its merged ``index.json``; shards in ``part-NNNNN/``)."""
        return self.mds / split / source

    @staticmethod
    def stream_part(stream: Path, part: int) -> Path:
        """The folder one worker writes of a stream: ``<stream>/part-NNNNN`` (its own shards and index.json)."""
        return stream / f"part-{part:05d}"

    @property
    def streams(self) -> Path:
        """``streams.yaml``, the versioned streams manifest (mixtures.streams_manifest)."""
        return self.root / "streams.yaml"

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def catalogue(self) -> Path:
        return self.root / "catalogue"

    @property
    def catalogue_docs(self) -> Path:
        """The catalogue's ``docs`` table: Parquet parts, one per worker task (kept parts, held-out, removed)."""
        return self.catalogue / "docs"

    @property
    def mixture_outputs(self) -> tuple[Path, ...]:
        """What a mixture build replaces."""
        return self.tokenizer, self.mds, self.catalogue, self.plan, self.streams

    # proxies
    def proxy(self, config: str) -> Path:
        return self.root / "proxy" / config

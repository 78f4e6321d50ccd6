"""Every path of a run directory: the one place that knows the shape of ``runs/<mix>/``.

Cleaning writes ``docs/``, ``removed/``, ``quarantine/``, ``stats.json``, ``report.md``, ``report.html``; the
mixture build writes ``tokenizer/``, ``mds/``, ``streams.yaml``, ``plan.json``, ``catalogue/`` (and rewrites both
reports); proxies live under ``proxy/``. Timings go to ``_work/``. Nothing else in Mixlab joins path segments of a
run by hand.

A run never writes or deletes outside its own folder: :func:`run_root` accepts only a plain name one level below
``output_dir`` (after resolving symlinks), and every removal of old outputs goes through :meth:`RunLayout.remove`,
which refuses any path that is not strictly inside the run directory and removes a symlink, never its target.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from filters.errors import UserError

# A run's name is one plain folder name: letters, digits, '_', '-' and '.', not starting with '.' (so never '.',
# '..' or a hidden folder) and without separators.
RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


class RunDirError(UserError):
    """A run directory that would lie outside its output_dir, or a removal outside the run directory."""


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a run directory, or ``None`` when it is a plain folder name."""
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name):
        return (f"{name!r} is not a plain folder name (letters, digits, '_', '-', '.', not starting with '.'; "
                "no '/', '.' or '..')")
    return None


def run_root(output_dir: str | Path, name: str) -> Path:
    """``<output_dir>/<name>`` (absolute), checked to be a folder strictly one level inside ``output_dir``.

    Raises :class:`RunDirError` when ``name`` is not a plain name, or when the folder (a symlink, say) resolves
    anywhere but directly inside the resolved ``output_dir``.
    """
    problem = name_problem(name)
    if problem:
        raise RunDirError(problem)
    out = Path(output_dir).resolve()
    root = out / name
    resolved = root.resolve()
    if resolved.parent != out:
        raise RunDirError(f"run directory {root} resolves to {resolved}, outside {out} (a symlink?): a run must "
                          f"stay inside its output_dir")
    return root


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
    def run_record(self) -> Path:
        """``_work/run.json``: the fingerprint of the cleaning in progress (a rerun with the same one resumes)."""
        return self.work / "run.json"

    @property
    def part_records(self) -> Path:
        """``_work/parts/``: one record per finished part of the cleaning (its event counts)."""
        return self.work / "parts"

    @property
    def part_data(self) -> Path:
        """``_work/data/``: documents, keys and decisions between parts, and output rows before sorting."""
        return self.work / "data"

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
    def build_record(self) -> Path:
        """``_work/build/build.json``: the fingerprint of the mixture build in progress (the same one resumes)."""
        return self.build_work / "build.json"

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

    # safety
    @property
    def lock_file(self) -> Path:
        """``.lock``: the run's exclusive lock (mixlab.locks), holding the pid, host and command of its holder."""
        return self.root / ".lock"

    def inside(self, path: Path) -> Path:
        """``path`` with its parent's symlinks resolved, checked to lie strictly inside the run directory.

        The last component is not followed: a symlink inside the run is itself inside, wherever it points.
        Raises :class:`RunDirError` otherwise.
        """
        root = self.root.resolve()
        path = Path(path)
        if not path.is_absolute():
            path = self.root / path
        where = path.parent.resolve() / path.name
        if path.name in ("", ".", "..") or root not in where.parents:
            raise RunDirError(f"refusing to touch {path}: it is not inside the run directory {root}")
        return where

    def remove(self, path: Path) -> bool:
        """Remove a file, folder or symlink strictly inside the run directory; ``False`` if nothing was there.

        A symlink is unlinked, never followed: what it points to survives. Anything outside the run directory,
        or the run directory itself, raises :class:`RunDirError` and nothing is removed.
        """
        where = self.inside(path)
        if where.is_symlink() or where.is_file():
            where.unlink()
        elif where.is_dir():
            shutil.rmtree(where)  # never follows the symlinks it meets inside the tree
        elif where.exists():
            where.unlink()
        else:
            return False
        return True

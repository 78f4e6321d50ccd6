"""Progress of long jobs: workers count, the driver draws.

Worker side (any process, any runner that shares a filesystem with the driver): :func:`count` adds documents and
characters for a ``(stage, source)``; at most once a second the process rewrites one small JSON file in the folder
named by ``$MIXLAB_PROGRESS_DIR`` (unset: counting is a no-op, e.g. on a remote runner). Driver side:
:class:`Watch` sums those files in a thread and shows them: a live line per stage on a terminal (tqdm), one log
line at least every ``interval`` seconds otherwise (CI logs; ``$MIXLAB_PROGRESS_SECONDS``, default 10), with a
heartbeat when nothing moved.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

PROGRESS_ENV = "MIXLAB_PROGRESS_DIR"
FLUSH_SECONDS = 1.0
FIRST_LINE_SECONDS = 2.0
INTERVAL_ENV = "MIXLAB_PROGRESS_SECONDS"  # seconds between log lines when not on a terminal (default 10)
log = logging.getLogger("mixlab.progress")


class _Counts:
    """This process's counts: {stage: {source: [docs, chars]}}, flushed to its own file."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, list[int]]] = {}
        self.folder: str | None = None
        self.path: Path | None = None
        self.last = 0.0

    def add(self, stage: str, source: str, docs: int, chars: int) -> None:
        folder = os.environ.get(PROGRESS_ENV)
        if not folder:
            return
        if folder != self.folder:  # a new job in this (reused) worker process
            self.folder, self.data = folder, {}
            self.path = Path(folder) / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        entry = self.data.setdefault(stage, {}).setdefault(source, [0, 0])
        entry[0] += docs
        entry[1] += chars
        now = time.monotonic()
        if now - self.last >= FLUSH_SECONDS:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        if self.path is None:
            return
        self.last = time.monotonic() if now is None else now
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(self.data), encoding="utf-8")
            tmp.replace(self.path)
        except OSError:  # the job finished and removed the folder: nothing left to report to
            self.path = None


_COUNTS = _Counts()


def count(stage: str, source: str, docs: int = 1, chars: int = 0) -> None:
    """Add ``docs`` documents (and ``chars`` characters) to a stage's count for a source."""
    _COUNTS.add(stage, source, docs, chars)


def flush() -> None:
    """Write this process's counts now (end of a bundle)."""
    _COUNTS.flush()


def totals(folder: Path) -> dict[str, dict[str, list[int]]]:
    """The sum of every process's counts in ``folder``: {stage: {source: [docs, chars]}}."""
    out: dict[str, dict[str, list[int]]] = {}
    for path in folder.glob("*.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # being replaced right now: next poll
            continue
        for stage, sources in data.items():
            for source, (docs, chars) in sources.items():
                entry = out.setdefault(stage, {}).setdefault(source, [0, 0])
                entry[0] += docs
                entry[1] += chars
    return out


def summary_line(title: str, stages: list[str], counts: dict[str, dict[str, list[int]]], elapsed: float,
                 unit: str = "docs") -> str:
    """``clean 00:42: read 12,345 docs, 45.6 MB (294 docs/s) | filter 10,000 | write 8,000``."""
    parts: list[str] = []
    for stage in stages:
        if stage not in counts:  # not reached yet (or not counted by this runner)
            continue
        docs = sum(v[0] for v in counts.get(stage, {}).values())
        chars = sum(v[1] for v in counts.get(stage, {}).values())
        text = f"{stage} {docs:,} {unit}"
        if chars:
            text += f", {chars / 1e6:,.1f} M chars"
        if not parts and elapsed > 0:
            text += f" ({docs / elapsed:,.0f} {unit}/s)"
        parts.append(text)
    minutes, seconds = divmod(int(elapsed), 60)
    return f"{title} {minutes:02d}:{seconds:02d}: " + (" | ".join(parts) or "working")


class Watch:
    """Show the counts workers write into ``folder`` while the ``with`` block runs (a background thread).

    ``stages``: the stage names to show, in order. On a terminal each stage is a live tqdm line; otherwise a log
    line every ``interval`` seconds. The folder is created on entry, exported as ``$MIXLAB_PROGRESS_DIR`` for the
    workers the block starts, and removed on exit.
    """

    def __init__(self, folder: Path, title: str, stages: list[str], interval: float | None = None,
                 live: bool | None = None, emit: Callable[[str], None] | None = None, unit: str = "docs") -> None:
        self.folder, self.title, self.stages, self.unit = folder, title, stages, unit
        self.interval = float(os.environ.get(INTERVAL_ENV, 10.0)) if interval is None else interval
        self.live = sys.stderr.isatty() if live is None else live
        self.emit = emit or log.info
        self.started = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bars: dict[str, Any] = {}
        self._previous_env: str | None = None

    def __enter__(self) -> Watch:
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._previous_env = os.environ.get(PROGRESS_ENV)
        os.environ[PROGRESS_ENV] = str(self.folder)
        self.started = time.monotonic()
        if self.live:
            from tqdm import tqdm

            self._bars = {s: tqdm(desc=f"{self.title} {s}", unit=f" {self.unit}", position=i, leave=False,
                                  dynamic_ncols=True) for i, s in enumerate(self.stages)}
        self._thread = threading.Thread(target=self._run, name=f"progress-{self.title}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        flush()
        self._show(final=True)
        for bar in self._bars.values():
            bar.close()
        if self._previous_env is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = self._previous_env
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self) -> None:
        poll = 0.5 if self.live else min(FIRST_LINE_SECONDS, self.interval)  # the first line within seconds
        while not self._stop.wait(poll):
            self._show()
            poll = 0.5 if self.live else self.interval

    def _show(self, final: bool = False) -> None:
        counts = totals(self.folder)
        elapsed = time.monotonic() - self.started
        if not self.live:
            if not final:
                self.emit(summary_line(self.title, self.stages, counts, elapsed, self.unit))
            return
        for stage, bar in self._bars.items():
            bar.n = sum(v[0] for v in counts.get(stage, {}).values())
            chars = sum(v[1] for v in counts.get(stage, {}).values())
            if chars:
                bar.set_postfix_str(f"{chars / 1e6:,.1f} M chars", refresh=False)
            bar.refresh()

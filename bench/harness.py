"""What every bench script shares: the shared corpora, a CPU timer, the machine line and one Markdown table printer.

Standard library only, so it also imports in a peer's own venv (bench/dedup_peers.py) and costs nothing at
``--help``. The machine is shared and noisy: the timer reports CPU seconds (this process and its waited-for
children) next to wall seconds, and the 1-minute load average at start and end; compare CPU seconds and ratios.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import resource
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


# --- shared corpora -------------------------------------------------------------------------------------------------


def shared_root() -> Path:
    """``$MIXLAB_SHARED`` if set, else ``../shared`` next to the repository."""
    return Path(os.environ.get("MIXLAB_SHARED") or REPO.parent / "shared")


def corpora_dir() -> Path:
    return shared_root() / "corpora"


def setdefault_env() -> None:
    """One core for math libraries and the shared punkt copy, unless the caller set them."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    nltk_data = shared_root() / "nltk_data"
    if nltk_data.is_dir():
        os.environ.setdefault("NLTK_DATA", str(nltk_data))


def corpus_path(name: str | Path) -> Path:
    """A shared corpus by name (``web``, ``dedup_bench/synthetic_docs``) or a JSONL(.gz) path as given."""
    if isinstance(name, Path) or name.endswith((".jsonl", ".jsonl.gz", ".gz")):
        return Path(name)
    return corpora_dir() / f"{name}.jsonl.gz"


def iter_corpus(name: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a shared corpus (or JSONL(.gz) file), one JSON object a line, read lazily."""
    path = corpus_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"corpus {name!s} not found at {path} (set MIXLAB_SHARED to the shared folder)")
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)


def read_corpus(name: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The first ``limit`` records (all when ``None``) of a shared corpus."""
    return list(itertools.islice(iter_corpus(name), limit))


def read_texts(name: str | Path, limit: int | None = None) -> list[str]:
    """The ``text`` of the first ``limit`` records of a shared corpus."""
    return [r["text"] for r in read_corpus(name, limit)]


# --- timing ---------------------------------------------------------------------------------------------------------


def load_average() -> float:
    """The 1-minute load average (0.0 where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def load_averages() -> str:
    """The 1, 5 and 15-minute load averages, as ``"0.52 0.61 0.70"``."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        return "? ? ?"


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class Timer:
    """Wall seconds, CPU seconds (user + system, this process and its terminated children) and load averages.

    ``with Timer() as t: ...`` then ``t.wall``, ``t.cpu`` (= ``t.cpu_self + t.cpu_children``), ``t.load_start``,
    ``t.load_end``. Children count once waited for (``subprocess.run`` does); threads count in ``cpu_self``.
    """

    def __init__(self) -> None:
        self._start: tuple[float, float, float] | None = None
        self._end: tuple[float, float, float] | None = None
        self.load_start = self.load_end = 0.0

    def start(self) -> Timer:
        self.load_start = load_average()
        self._end = None
        self._start = (_cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN), time.perf_counter())
        return self

    def stop(self) -> Timer:
        wall = time.perf_counter()
        self._end = (_cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN), wall)
        self.load_end = load_average()
        return self

    def __enter__(self) -> Timer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _delta(self, i: int) -> float:
        if self._start is None:
            raise RuntimeError("Timer not started")
        end = self._end or (_cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN), time.perf_counter())
        return end[i] - self._start[i]

    @property
    def cpu_self(self) -> float:
        return self._delta(0)

    @property
    def cpu_children(self) -> float:
        return self._delta(1)

    @property
    def cpu(self) -> float:
        return self.cpu_self + self.cpu_children

    @property
    def wall(self) -> float:
        return self._delta(2)

    @property
    def cpu_per_wall(self) -> float:
        """CPU seconds per wall second: about 1 on a free core, lower when the machine is busy."""
        return self.cpu / self.wall if self.wall > 0 else float("nan")

    def summary(self, label: str = "run") -> str:
        return (f"{label}: {self.wall:.1f} s wall, {self.cpu:.1f} CPU s ({self.cpu_children:.1f} in child processes, "
                f"{self.cpu_per_wall:.2f} CPU s per wall s), load average {self.load_start:.2f} at start, "
                f"{self.load_end:.2f} at end, peak RSS {peak_rss_mib():,.0f} MiB")


def timed(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, Timer]:
    """``fn(*args, **kwargs)`` and the Timer that measured it."""
    with Timer() as t:
        out = fn(*args, **kwargs)
    return out, t


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def machine() -> str:
    """CPU model, the machine's cores and the 1/5/15-minute load averages, for bench/RESULTS.md."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, load average {load_averages()}"


# --- output ---------------------------------------------------------------------------------------------------------


def _cell(value: object) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


class Table:
    """A Markdown table; ``align`` has one letter per column, ``l`` (default) or ``r``.

    ``table(...)`` renders it at once; ``header()`` then ``row(...)`` per result prints it as it is measured.
    """

    def __init__(self, columns: Sequence[str], align: str | None = None) -> None:
        align = align or "l" * len(columns)
        if len(align) != len(columns) or set(align) - {"l", "r"}:
            raise ValueError(f"align {align!r} needs one of 'l'/'r' per column ({len(columns)})")
        self.columns, self.align = list(columns), align

    def header(self) -> str:
        return "\n".join(["| " + " | ".join(_cell(c) for c in self.columns) + " |",
                          "|" + "|".join("---:" if a == "r" else "---" for a in self.align) + "|"])

    def row(self, *cells: object) -> str:
        if len(cells) != len(self.columns):
            raise ValueError(f"row has {len(cells)} cells, table has {len(self.columns)} columns")
        return "| " + " | ".join(_cell(c) for c in cells) + " |"

    def render(self, rows: Iterable[Sequence[object]]) -> str:
        return "\n".join([self.header(), *(self.row(*r) for r in rows)])


def table(columns: Sequence[str], rows: Iterable[Sequence[object]], align: str | None = None) -> str:
    """A Markdown table of ``rows`` (cells already formatted, or anything ``str()`` shows well)."""
    return Table(columns, align).render(rows)


def parser(script: str, doc: str | None, description: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of ``bench/<script>.py``, shown as ``python -m bench.<script>``."""
    return argparse.ArgumentParser(prog=f"python -m bench.{Path(script).stem}",
                                   description=doc if description is None else description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)

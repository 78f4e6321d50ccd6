"""Mixlab's C4, Gopher and FineWeb filters against datatrove's, one core, same documents, one run.

Prints a markdown table: documents and MB (UTF-8 input bytes) per CPU-second of this process, i.e. per core
even when other work shares the machine, for each side, the speed-up, and how often
both sides take the same keep/drop decision (and the same reason) on each document. Needs the bench extra
(datatrove, installed with --no-deps, and spaCy, its English word tokenizer): see docs/filters.md.

    OMP_NUM_THREADS=1 .venv/bin/python bench/filters.py --docs 1000
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NLTK_DATA", str(REPO.parent / "shared" / "nltk_data"))
# This script's own name would shadow the `filters` package: import from the repository root instead.
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != BENCH]

from bench import datatrove_peer  # noqa: E402
from filters import text as mixlab_text  # noqa: E402
from filters.base import Document, run_chain  # noqa: E402
from filters.registry import build_filter  # noqa: E402

# (row label, Mixlab filter names, datatrove filter keys), in the FineWeb chain's order for the chain row.
ROWS = [
    ("C4 (TFDS constants)", ["c4_clean"], ["c4"]),
    ("Gopher repetition", ["gopher_repetition"], ["gopher_repetition"]),
    ("Gopher quality", ["gopher_quality"], ["gopher_quality"]),
    ("FineWeb quality", ["fineweb_quality"], ["fineweb"]),
    ("chain: C4 + Gopher rep. + Gopher qual. + FineWeb", ["c4_clean", "gopher_repetition", "gopher_quality",
                                                        "fineweb_quality"],
     ["c4", "gopher_repetition", "gopher_quality", "fineweb"]),
]
Decision = tuple[bool, str | None]
WARM_UP = 20  # documents run once on each side, untimed, before the measured runs


def read_texts(path: Path, limit: int) -> list[str]:
    """The first ``limit`` document texts of a JSONL(.gz) corpus."""
    opener = gzip.open if path.suffix == ".gz" else open
    texts: list[str] = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if len(texts) >= limit:
                break
            texts.append(json.loads(line)["text"])
    return texts


def mixlab_reason(reason: str | None) -> str | None:
    """Mixlab's reason in datatrove's words: ``gopher_quality.short_doc`` -> ``gopher_short_doc``."""
    if reason is None:
        return None
    family, _, check = reason.partition(".")
    if family == "gopher_quality":
        return f"gopher_{check}"
    if family == "c4":
        return {"too_few_sentences": "too_few_sentences", "lorem_ipsum": "lorem_ipsum",
                "curly_bracket": "curly_bracket"}.get(check, check)
    return check


def run_mixlab(names: list[str], texts: list[str]) -> tuple[float, list[Decision]]:
    """CPU seconds and decisions of a Mixlab chain over ``texts`` (word-split caches start empty)."""
    mixlab_text.split_chunk.cache_clear()
    mixlab_text.words.cache_clear()
    chain = [build_filter(name) for name in names]
    docs = [Document(id=str(i), text=t, source="web") for i, t in enumerate(texts)]
    started = time.process_time()
    outcomes = [run_chain(doc, chain) for doc in docs]
    elapsed = time.process_time() - started
    return elapsed, [(o.doc is not None, mixlab_reason(o.reason)) for o in outcomes]


def run_datatrove(flts: list[Any], texts: list[str]) -> tuple[float, list[Decision]]:
    """CPU seconds and decisions of datatrove filters applied in order (its word-split caches start empty)."""
    from datatrove.utils.text import split_into_parts
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    split_into_parts.cache_clear()
    spacy_tokenizer = load_word_tokenizer("eng")._tokenizer
    if spacy_tokenizer is not None:
        spacy_tokenizer.tokenizer._flush_cache()  # spaCy memoises chunk splits too: start both sides cold
    started = time.process_time()
    out: list[Decision] = []
    for text in texts:
        decision: Decision = (True, None)
        for flt in flts:
            keep, reason, text = datatrove_peer.decide(flt, text)
            if not keep:
                decision = (False, reason)
                break
        out.append(decision)
    return time.process_time() - started, out


def agreement(a: list[Decision], b: list[Decision], key: Callable[[Decision], Any]) -> float:
    return 100.0 * sum(key(x) == key(y) for x, y in zip(a, b, strict=True)) / len(a)


def machine() -> str:
    """CPU model, usable cores and the load average, for the record."""
    model = platform.processor() or "unknown CPU"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else ["?"] * 3
    return f"{model}; {os.cpu_count()} cores; pinned to one; load average {' '.join(load)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1000, help="number of documents from the start of the corpus")
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpora" / "web.jsonl.gz",
                        help="JSONL(.gz) corpus with a 'text' field (default: ../shared/corpora/web.jsonl.gz)")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    texts = read_texts(args.corpus, args.docs)
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    peers = datatrove_peer.load()
    print(f"{len(texts)} documents, {megabytes:.1f} MB from {args.corpus.name}; {machine()}", file=sys.stderr)
    print("| filter | Mixlab docs/s | Mixlab MB/s | datatrove docs/s | datatrove MB/s | speed-up "
          "| same decision % | same reason % |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    run_mixlab(ROWS[-1][1], texts[:WARM_UP])  # load punkt and import everything on both sides first
    run_datatrove([peers[k] for k in ROWS[-1][2]], texts[:WARM_UP])
    for label, names, keys in ROWS:
        ours_s, ours = run_mixlab(names, texts)
        theirs_s, theirs = run_datatrove([peers[k] for k in keys], texts)
        print(f"| {label} | {len(texts) / ours_s:,.0f} | {megabytes / ours_s:.2f} | {len(texts) / theirs_s:,.0f} "
              f"| {megabytes / theirs_s:.2f} | {theirs_s / ours_s:.1f}x "
              f"| {agreement(ours, theirs, lambda d: d[0]):.2f} | {agreement(ours, theirs, lambda d: d):.2f} |",
              flush=True)
    same = sum(list(mixlab_text.words(t)) == datatrove_peer.words(t) for t in texts)
    print(f"\nWord split: {same} of {len(texts)} documents ({100 * same / len(texts):.1f}%) get exactly "
          "spaCy's token list (datatrove's English split).")
    print(f"\n{machine()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

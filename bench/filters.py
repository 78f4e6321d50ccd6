"""Mixlab's C4, Gopher and FineWeb filters against datatrove's, one core, same documents, one run.

Prints a markdown table: documents and MB (UTF-8 input bytes) per CPU-second of this process, i.e. per core
even when other work shares the machine, for each side, the speed-up, and how often
both sides take the same keep/drop decision (and the same reason) on each document. Needs the bench extra
(datatrove, installed with --no-deps, and spaCy, its English word tokenizer): see docs/filters.md; without it
only Mixlab's columns are measured and datatrove's show n/a.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.filters --docs 1000
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from bench import harness, peers
from filters import text as mixlab_text
from filters.base import Document, run_chain
from filters.registry import build_filter

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
    outcomes, t = harness.timed(lambda: [run_chain(doc, chain) for doc in docs])
    return t.cpu, [(o.doc is not None, mixlab_reason(o.reason)) for o in outcomes]


def run_datatrove(flts: list[Any], texts: list[str]) -> tuple[float, list[Decision]]:
    """CPU seconds and decisions of datatrove filters applied in order (its word-split caches start empty)."""
    datatrove_peer = peers.datatrove()
    from datatrove.utils.text import split_into_parts
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    split_into_parts.cache_clear()
    spacy_tokenizer = load_word_tokenizer("eng")._tokenizer
    if spacy_tokenizer is not None:
        spacy_tokenizer.tokenizer._flush_cache()  # spaCy memoises chunk splits too: start both sides cold
    out: list[Decision] = []
    with harness.Timer() as t:
        for text in texts:
            decision: Decision = (True, None)
            for flt in flts:
                keep, reason, text = datatrove_peer.decide(flt, text)
                if not keep:
                    decision = (False, reason)
                    break
            out.append(decision)
    return t.cpu, out


def agreement(a: list[Decision], b: list[Decision], key: Callable[[Decision], Any]) -> float:
    return 100.0 * sum(key(x) == key(y) for x, y in zip(a, b, strict=True)) / len(a)


def machine() -> str:
    """CPU model, usable cores and the load average, for the record."""
    return f"{harness.machine()}; pinned to one"


COLUMNS = ["filter", "Mixlab docs/s", "Mixlab MB/s", "datatrove docs/s", "datatrove MB/s", "speed-up",
           "same decision %", "same reason %"]


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__file__, __doc__)
    parser.add_argument("--docs", type=int, default=1000, help="number of documents from the start of the corpus")
    parser.add_argument("--corpus", default="web",
                        help="shared corpus name or JSONL(.gz) path with a 'text' field (default: web, i.e. "
                             "../shared/corpora/web.jsonl.gz)")
    args = parser.parse_args(argv)
    harness.setdefault_env()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    run = harness.Timer().start()
    texts = harness.read_texts(args.corpus, args.docs)
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    try:
        theirs_filters: dict[str, Any] | None = peers.datatrove_filters()
    except peers.PeerMissing as err:
        peers.skipped(err)
        theirs_filters = None
    print(f"{len(texts)} documents, {megabytes:.1f} MB from {harness.corpus_path(args.corpus).name}; {machine()}",
          file=sys.stderr)
    table = harness.Table(COLUMNS, align="lrrrrrrr")
    print(table.header())
    run_mixlab(ROWS[-1][1], texts[:WARM_UP])  # load punkt and import everything on both sides first
    if theirs_filters is not None:
        run_datatrove([theirs_filters[k] for k in ROWS[-1][2]], texts[:WARM_UP])
    for label, names, keys in ROWS:
        ours_s, ours = run_mixlab(names, texts)
        cells = [f"{len(texts) / ours_s:,.0f}", f"{megabytes / ours_s:.2f}"]
        if theirs_filters is None:
            cells += ["n/a"] * 5
        else:
            theirs_s, theirs = run_datatrove([theirs_filters[k] for k in keys], texts)
            cells += [f"{len(texts) / theirs_s:,.0f}", f"{megabytes / theirs_s:.2f}", f"{theirs_s / ours_s:.1f}x",
                      f"{agreement(ours, theirs, lambda d: d[0]):.2f}", f"{agreement(ours, theirs, lambda d: d):.2f}"]
        print(table.row(label, *cells), flush=True)
    if theirs_filters is not None:
        datatrove_words = peers.datatrove().words
        same = sum(list(mixlab_text.words(t)) == datatrove_words(t) for t in texts)
        print(f"\nWord split: {same} of {len(texts)} documents ({100 * same / len(texts):.1f}%) get exactly "
              "spaCy's token list (datatrove's English split).")
    else:
        print("\nWord split: not compared (datatrove not installed).")
    print(f"\n{machine()}")
    print(run.stop().summary("bench.filters"), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Decontamination and PII benchmark: index size, lookup and masking throughput, PII look-alikes on code and papers.

    .venv/bin/python bench/decontam.py [--docs 2000]

Prints three markdown tables: (1) the eval index over every shipped eval set (n-grams, build and load time,
memory), (2) documents/s for index lookup and for PII masking per source, with datatrove's ``PIIFormatter``
(e-mail + IP only) side by side on the same documents when the bench extra is installed, and (3) how many
PII look-alikes (versions, DOIs, arXiv ids, dates, ISBNs) occur in code and papers and how many were masked.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from filters.decontam import Decontam, EvalIndex, build_index, default_eval_dir, index_config
from filters.pii import find_pii, measure_false_positives, pii

SOURCES = ("web", "wiki", "code", "papers", "instruct")


def load_docs(source: str, n: int) -> list[str]:
    path = default_eval_dir().parent / f"{source}.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in itertools.islice(fh, n)]


def full_text_papers() -> list[str]:
    """The long papers (full text, unarXive, LaTeX), where DOIs, arXiv ids and e-mail addresses live."""
    path = default_eval_dir().parent / "papers.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    return [r["text"] for r in rows if not r["meta"]["origin"].startswith(("arxiv/", "scitldr"))]


def timed(fn: Callable[[str], object], texts: list[str]) -> float:
    started = time.perf_counter()
    for text in texts:
        fn(text)
    return time.perf_counter() - started


def index_table() -> tuple[EvalIndex, list[str]]:
    config = index_config()
    started = time.perf_counter()
    index = build_index(config)
    build_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.npz"
        index.save(path)
        size = path.stat().st_size
        started = time.perf_counter()
        EvalIndex.load(path)
        load_s = time.perf_counter() - started
    items = len(index.item_ids)
    lines = ["| eval files | items | items < n tokens | n-grams (n=13) | build s | load s | memory MiB | file MiB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| {len(index.tasks)} | {items:,} | {sum(index.short_items.values()):,} | {len(index.hashes):,} | "
             f"{build_s:.2f} | {load_s:.3f} | {index.nbytes / 2**20:.1f} | {size / 2**20:.1f} |"]
    return index, lines


def peer_pii() -> Callable[[str], str] | None:
    try:
        from datatrove.pipeline.formatters.pii import PIIFormatter
    except ImportError:
        return None
    return PIIFormatter().format


def speed_table(index: EvalIndex, n: int) -> list[str]:
    rule, masker, email_ip, peer = Decontam(index), pii(), pii(kinds=["email", "ip"]), peer_pii()
    lines = ["| source | docs | MB | decontam lookup docs/s | mixlab pii docs/s | mixlab pii (email+ip) docs/s | "
             "datatrove PIIFormatter (email+ip) docs/s | mixlab pii MB/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for source in SOURCES:
        texts = load_docs(source, n)
        mb = sum(len(t.encode()) for t in texts) / 1e6
        look = timed(rule.matches, texts)
        mask = timed(masker.mask, texts)
        mask2 = timed(email_ip.mask, texts)
        peer_s = f"{len(texts) / timed(peer, texts):,.0f}" if peer else "n/a (bench extra)"
        lines.append(f"| {source} | {len(texts):,} | {mb:.1f} | {len(texts) / look:,.0f} | {len(texts) / mask:,.0f} "
                     f"| {len(texts) / mask2:,.0f} | {peer_s} | {mb / mask:.2f} |")
    return lines


def false_positive_table(n: int) -> list[str]:
    slices = {"code": load_docs("code", n), "papers (full text)": full_text_papers(),
              "papers (abstracts)": load_docs("papers", n)}
    lines = ["| slice | docs | e-mails | IPs | phones | look-alikes seen (version/doi/arxiv/date/isbn) | "
             "look-alikes masked |", "|---|---:|---:|---:|---:|---|---:|"]
    for name, texts in slices.items():
        kinds = {"email": 0, "ip": 0, "phone": 0}
        for text in texts:
            for _, _, kind in find_pii(text):
                kinds[kind] += 1
        fp = measure_false_positives(texts)
        seen = "/".join(str(v["seen"]) for v in fp.values())
        masked = sum(v["masked"] for v in fp.values())
        lines.append(f"| {name} | {len(texts):,} | {kinds['email']:,} | {kinds['ip']:,} | {kinds['phone']:,} | "
                     f"{seen} | {masked} of {sum(v['seen'] for v in fp.values())} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=2000, help="documents per source (default 2000)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    index, lines = index_table()
    print("\n".join(lines), end="\n\n")
    print("\n".join(speed_table(index, args.docs)), end="\n\n")
    print("\n".join(false_positive_table(args.docs)))


if __name__ == "__main__":
    main()

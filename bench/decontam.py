"""Decontamination and PII benchmark: index size, lookup and masking throughput, PII look-alikes on code and papers.

    .venv/bin/python -m bench.decontam [--docs 2000]

Prints three markdown tables: (1) the eval index over every shipped eval set (n-grams, build and load time,
memory), (2) documents/s for index lookup and for PII masking per source, with datatrove's ``PIIFormatter``
(e-mail + IP only) side by side on the same documents when the bench extra is installed, and (3) how many
PII look-alikes (versions, DOIs, arXiv ids, dates, ISBNs) occur in code and papers and how many were masked.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bench import harness, peers

if TYPE_CHECKING:
    from filters.decontam import EvalIndex

SOURCES = ("web", "wiki", "code", "papers", "instruct")


def load_docs(source: str, n: int) -> list[str]:
    return harness.read_texts(source, n)


def full_text_papers() -> list[str]:
    """The long papers (full text, unarXive, LaTeX), where DOIs, arXiv ids and e-mail addresses live."""
    rows = harness.read_corpus("papers")
    return [r["text"] for r in rows if not r["meta"]["origin"].startswith(("arxiv/", "scitldr"))]


def timed(fn: Callable[[str], object], texts: list[str]) -> float:
    """Wall seconds of ``fn`` over every text."""
    with harness.Timer() as t:
        for text in texts:
            fn(text)
    return t.wall


def index_table() -> tuple[EvalIndex, list[str]]:
    from filters.decontam import EvalIndex, build_index, index_config

    config = index_config()
    index, build = harness.timed(build_index, config)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.npz"
        index.save(path)
        size = path.stat().st_size
        load_s = harness.timed(EvalIndex.load, path)[1].wall
    items = len(index.item_ids)
    columns = ["eval files", "items", "items < n tokens", "n-grams (n=13)", "build s", "load s", "memory MiB",
               "file MiB"]
    row = (len(index.tasks), f"{items:,}", f"{sum(index.short_items.values()):,}", f"{len(index.hashes):,}",
           f"{build.wall:.2f}", f"{load_s:.3f}", f"{index.nbytes / 2**20:.1f}", f"{size / 2**20:.1f}")
    return index, [harness.table(columns, [row], align="r" * len(columns))]


def peer_pii() -> Callable[[str], str] | None:
    """datatrove's PIIFormatter, or ``None`` (said on stderr) when the bench extra is not installed."""
    try:
        return peers.datatrove_pii()
    except peers.PeerMissing as err:
        peers.skipped(err)
        return None


def speed_table(index: EvalIndex, n: int) -> list[str]:
    from filters.decontam import Decontam
    from filters.pii import pii

    rule, masker, email_ip, peer = Decontam(index), pii(), pii(kinds=["email", "ip"]), peer_pii()
    table = harness.Table(["source", "docs", "MB", "decontam lookup docs/s", "mixlab pii docs/s",
                           "mixlab pii (email+ip) docs/s", "datatrove PIIFormatter (email+ip) docs/s",
                           "mixlab pii MB/s"], align="lrrrrrrr")
    lines = [table.header()]
    for source in SOURCES:
        texts = load_docs(source, n)
        mb = sum(len(t.encode()) for t in texts) / 1e6
        look = timed(rule.matches, texts)
        mask = timed(masker.mask, texts)
        mask2 = timed(email_ip.mask, texts)
        peer_s = f"{len(texts) / timed(peer, texts):,.0f}" if peer else "n/a (bench extra)"
        lines.append(table.row(source, f"{len(texts):,}", f"{mb:.1f}", f"{len(texts) / look:,.0f}",
                               f"{len(texts) / mask:,.0f}", f"{len(texts) / mask2:,.0f}", peer_s, f"{mb / mask:.2f}"))
    return lines


def false_positive_table(n: int) -> list[str]:
    from filters.pii import find_pii, measure_false_positives

    slices = {"code": load_docs("code", n), "papers (full text)": full_text_papers(),
              "papers (abstracts)": load_docs("papers", n)}
    rows = []
    for name, texts in slices.items():
        kinds = {"email": 0, "ip": 0, "phone": 0}
        for text in texts:
            for _, _, kind in find_pii(text):
                kinds[kind] += 1
        fp = measure_false_positives(texts)
        seen = "/".join(str(v["seen"]) for v in fp.values())
        masked = sum(v["masked"] for v in fp.values())
        rows.append((name, f"{len(texts):,}", f"{kinds['email']:,}", f"{kinds['ip']:,}", f"{kinds['phone']:,}", seen,
                     f"{masked} of {sum(v['seen'] for v in fp.values())}"))
    columns = ["slice", "docs", "e-mails", "IPs", "phones", "look-alikes seen (version/doi/arxiv/date/isbn)",
               "look-alikes masked"]
    return [harness.table(columns, rows, align="lrrrrlr")]


def main() -> None:
    parser = harness.parser(__file__, __doc__)
    parser.add_argument("--docs", type=int, default=2000, help="documents per source (default 2000)")
    args = parser.parse_args()
    harness.setdefault_env()
    with harness.Timer() as run:
        index, lines = index_table()
        print("\n".join(lines), end="\n\n")
        print("\n".join(speed_table(index, args.docs)), end="\n\n")
        print("\n".join(false_positive_table(args.docs)))
    print(run.summary("bench.decontam"), file=sys.stderr)


if __name__ == "__main__":
    main()

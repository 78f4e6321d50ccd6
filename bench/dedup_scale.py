"""How MinHash dedup scales: documents/s and memory for signatures, bucketing and clustering at growing sizes.

Corpora of N documents are made by sampling the shared corpora (web, wiki, code, papers, multilingual; texts
cut at 4,000 characters) and perturbing them: 80% get 30% of their words replaced (unique documents), 20% get
2% (near-duplicates of another sample). Generation is not timed. Signatures are timed without tracemalloc
(stored bytes per document reported); bucketing (band keys + grouping into candidate edges) and clustering
(union-find, and the Beam large-star/small-star path up to ``--beam-max``) are timed under tracemalloc, which
gives their Python heap peak. Times are CPU seconds of this process (bench.harness.Timer), so other load
on the box does not inflate them; single process, one core.

    .venv/bin/python -m bench.dedup_scale --sizes 10000,50000,200000
"""

from __future__ import annotations

import random
import sys
import tracemalloc
from collections import defaultdict
from pathlib import Path

from bench import harness

SOURCES = ["web", "wiki", "code", "papers", "multilingual"]
CHUNK = 5000


def pool(per_source: int) -> list[list[str]]:
    """Word lists of the first ``per_source`` documents of each shared corpus (texts cut at 4,000 chars)."""
    out = []
    for source in SOURCES:
        for text in harness.read_texts(source, per_source):
            words = text[:4000].split()
            if len(words) >= 20:
                out.append(words)
    return out


def generate(n: int, base: list[list[str]], rng: random.Random) -> list[str]:
    """``n`` perturbed documents."""
    vocab = [w for words in base[:200] for w in words]
    docs = []
    for _ in range(n):
        words = list(rng.choice(base))
        rate = 0.02 if rng.random() < 0.2 else 0.3
        for i in rng.sample(range(len(words)), max(1, int(rate * len(words)))):
            words[i] = rng.choice(vocab)
        docs.append(" ".join(words))
    return docs


def measure(n: int, base: list[list[str]], beam_max: int) -> dict[str, float]:
    """Time (and memory) of each stage for a corpus of ``n`` documents."""
    import numpy as np

    from filters import dedup as dd

    p = dd.MinHashParams()
    rng = random.Random(n)
    sigs = np.empty((n, p.num_perm), dtype=np.uint32)
    sig_seconds, chars = 0.0, 0
    for start in range(0, n, CHUNK):
        docs = generate(min(CHUNK, n - start), base, rng)
        chars += sum(map(len, docs))
        with harness.Timer() as t:
            for i, text in enumerate(docs):
                sigs[start + i] = p.signature(text)
        sig_seconds += t.cpu
    tracemalloc.start()
    with harness.Timer() as t:
        buckets: dict[int, list[int]] = defaultdict(list)
        for i in range(n):
            for key in dd.band_keys(sigs[i], p.bands, p.rows):
                buckets[key].append(i)
        edges = [(m[0], other) for m in buckets.values() if len(m) > 1 for other in m[1:] if other != m[0]]
    bucket_seconds = t.cpu
    _, bucket_peak = tracemalloc.get_traced_memory()
    del buckets
    tracemalloc.reset_peak()
    labels, t = harness.timed(dd.connected_components, edges)
    cluster_seconds = t.cpu
    _, cluster_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    row = {"n": n, "avg_chars": chars / n, "sig_dps": n / sig_seconds, "sig_mbps": chars / sig_seconds / 1e6,
           "sig_bytes": sigs.nbytes / n, "bucket_dps": n / bucket_seconds, "bucket_peak": bucket_peak / n,
           "edges": len(edges), "clustered": len(labels), "uf_seconds": cluster_seconds,
           "uf_peak": cluster_peak / n, "beam_seconds": float("nan")}
    if n <= beam_max:
        row["beam_seconds"] = beam_components_seconds(edges, labels)
    return row


def beam_components_seconds(edges: list[tuple[int, int]], expected: dict[int, int]) -> float:
    """CPU seconds of the distributed (large-star/small-star) path in Beam's FnApiRunner; checks its labels."""
    import pickle
    import tempfile

    import apache_beam as beam

    from pipelines.dedup import StarComponents

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "labels.pkl"
        with harness.Timer() as t, beam.Pipeline(runner="FnApiRunner") as pipe:
            _ = (pipe | beam.Create(edges) | StarComponents(20) | beam.combiners.ToList()
                 | beam.Map(lambda xs: out.write_bytes(pickle.dumps(xs))))
        seconds = t.cpu
        assert dict(pickle.loads(out.read_bytes())) == expected, "distributed labels differ from union-find"
    return seconds


COLUMNS = ["documents", "avg chars", "signatures docs/s", "signatures MB/s", "signature bytes/doc",
           "bucketing docs/s", "bucketing peak bytes/doc", "edges", "union-find s", "union-find peak bytes/doc",
           "Beam star components s"]


def cells(r: dict[str, float]) -> tuple[str, ...]:
    """One table row of :func:`measure`'s results."""
    beam_s = "-" if r["beam_seconds"] != r["beam_seconds"] else f"{r['beam_seconds']:.1f}"
    return (f"{r['n']:,}", f"{r['avg_chars']:,.0f}", f"{r['sig_dps']:,.0f}", f"{r['sig_mbps']:.1f}",
            f"{r['sig_bytes']:.0f}", f"{r['bucket_dps']:,.0f}", f"{r['bucket_peak']:,.0f}", f"{r['edges']:,}",
            f"{r['uf_seconds']:.2f}", f"{r['uf_peak']:,.0f}", beam_s)


def main() -> None:
    parser = harness.parser(__file__, __doc__)
    parser.add_argument("--sizes", default="10000,50000,200000")
    parser.add_argument("--per-source", type=int, default=2000, help="base documents read per shared corpus")
    parser.add_argument("--beam-max", type=int, default=50000, help="largest size also clustered in Beam")
    args = parser.parse_args()
    run = harness.Timer().start()
    base = pool(args.per_source)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        rows.append(measure(n, base, args.beam_max))
        print(f"{n} done", file=sys.stderr, flush=True)
    print(harness.table(COLUMNS, [cells(r) for r in rows], align="r" * len(COLUMNS)))
    print(run.stop().summary("bench.dedup_scale"), file=sys.stderr)


if __name__ == "__main__":
    main()

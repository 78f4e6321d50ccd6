"""Duplicate-detection quality on dedup_bench/synthetic_* : mixlab MinHash vs datatrove and text-dedup.

Pairwise precision / recall / F1 over the labelled pairs (a pair is predicted duplicate when both documents
land in one cluster), for several thresholds; every method uses the same bands x rows per threshold
(datatrove's 14 x 8 at 0.72, datasketch's optimal split of 112 permutations otherwise) and word 5-grams.
mixlab's clusters come from the same functions the Beam stage uses (signatures, band keys, union-find; the
distributed path gives identical clusters, see tests/test_dedup_pipeline.py). Peers run in their own venv
(``--peer-python``) through bench/dedup_peers.py, so one run prints the whole table.

    .venv/bin/python -m bench.dedup_quality --peer-python /tmp/bench-venv/bin/python
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from bench import harness, peers

if TYPE_CHECKING:
    import numpy as np

NUM_PERM = 112


def load(limit: int | None) -> tuple[list[dict], list[dict]]:
    """Documents (first ``limit``) and the labelled pairs among them."""
    docs = harness.read_corpus("dedup_bench/synthetic_docs", limit)
    ids = {d["id"] for d in docs}
    pairs = [p for p in harness.iter_corpus("dedup_bench/synthetic_pairs") if p["id_a"] in ids and p["id_b"] in ids]
    return docs, pairs


def signatures(docs: list[dict], unit: str, char_ngram: int = 10) -> np.ndarray:
    """One signature per document with the Beam stage's shingling (``unit`` as in the spec)."""
    import numpy as np

    from filters import dedup as dd
    from pipelines.dedup import _unit_for

    p = dd.MinHashParams(bands=14, rows=8)
    out = np.empty((len(docs), NUM_PERM), dtype=np.uint32)
    for i, doc in enumerate(docs):
        text = p.norm(doc["text"])
        u = _unit_for(_Doc(doc["source"]), text, unit, ())
        out[i] = dd.signature(dd.shingle_hashes(dd.token_hashes(text, u), char_ngram if u == "char" else 5),
                              NUM_PERM, p.seed)
    return out


class _Doc:
    def __init__(self, source: str) -> None:
        self.source = source


def mixlab_clusters(docs: list[dict], sigs: np.ndarray, bands: int, rows: int,
                    threshold: float | None) -> dict[str, int]:
    """Band keys -> buckets -> edges (optionally verified) -> union-find, as in MinHashDedup."""
    from filters import dedup as dd
    from pipelines.dedup import bucket_edges

    buckets: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = defaultdict(list)
    for i, sig in enumerate(sigs):
        if dd.is_empty(sig):
            continue
        for band, key in enumerate(dd.band_keys(sig[:bands * rows], bands, rows)):
            buckets[band, key].append((i, sig[:bands * rows]))
    edges = [e for members in buckets.values() if len(members) > 1 for e in bucket_edges(members, threshold)]
    return {docs[i]["id"]: label for i, label in dd.connected_components(edges).items()}


def peer_clusters(peer: str, python: str, docs_path: str, bands: int, rows: int) -> tuple[dict[str, int], float]:
    """Run a peer in its own interpreter (bench/dedup_peers.py); return its clusters and wall seconds."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        peers.run_in_venv(python, "dedup_peers", peer, docs_path, str(bands), str(rows), "5", out.name)
        result = json.loads(Path(out.name).read_text())
    return result["clusters"], result["seconds"]


def scores(clusters: dict[str, object], pairs: list[dict], n_docs: int) -> dict[str, float]:
    """Pairwise precision, recall, F1 over labelled pairs; the fraction of documents a survivor rule removes."""
    tp = fp = fn = 0
    for p in pairs:
        a, b = clusters.get(p["id_a"]), clusters.get(p["id_b"])
        predicted = a is not None and a == b
        tp += predicted and p["label"] == 1
        fp += predicted and p["label"] == 0
        fn += (not predicted) and p["label"] == 1
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    removed = len(clusters) - len(set(clusters.values()))
    return {"precision": precision, "recall": recall, "f1": f1, "removed": removed / n_docs}


def main() -> None:
    parser = harness.parser(__file__, __doc__)
    parser.add_argument("--limit", type=int, default=None, help="first N documents only")
    parser.add_argument("--thresholds", default="0.5,0.6,0.72,0.8,0.9")
    parser.add_argument("--peer-python", default=peers.DEFAULT_PEER_PYTHON,
                        help="interpreter with datatrove and text-dedup installed ('' to skip peers)")
    args = parser.parse_args()
    from filters import dedup as dd

    run = harness.Timer().start()
    found, missing = peers.venv_peers(args.peer_python)
    for message in missing:
        print(f"{message}; its rows are left out", file=sys.stderr)
    docs, pairs = load(args.limit)
    print(f"{len(docs):,} documents, {len(pairs):,} labelled pairs "
          f"({sum(p['label'] for p in pairs):,} positive)\n", flush=True)
    with harness.Timer() as sig_timer:
        sigs = {unit: signatures(docs, unit) for unit in ("auto", "word")}
    sig_seconds = sig_timer.wall / 2
    rows_out = []
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for d in docs:
            f.write(json.dumps({"id": d["id"], "text": d["text"]}) + "\n")
        docs_path = f.name
    for t in (float(x) for x in args.thresholds.split(",")):
        bands, rows = (14, 8) if t == 0.72 else dd.lsh_params(t, NUM_PERM)
        runs: list[tuple[str, dict, float]] = []
        for name, unit, verify in (("mixlab (word)", "word", None), ("mixlab (auto unit)", "auto", None),
                                   ("mixlab (auto unit, verified)", "auto", t)):
            clusters, timer = harness.timed(mixlab_clusters, docs, sigs[unit], bands, rows, verify)
            runs.append((name, clusters, sig_seconds + timer.wall))
        for peer in found:
            try:
                clusters, seconds = peer_clusters(peer, args.peer_python, docs_path, bands, rows)
            except (subprocess.CalledProcessError, FileNotFoundError) as err:
                stderr = getattr(err, "stderr", b"") or b""
                print(f"{peer} failed: {stderr.decode()[-400:] or err}", file=sys.stderr)
                continue
            runs.append((peer, clusters, seconds))
        for name, clusters, seconds in runs:
            rows_out.append((t, f"{bands}x{rows}", name, scores(clusters, pairs, len(docs)), seconds))
        print(f"threshold {t} done", file=sys.stderr, flush=True)
    os.unlink(docs_path)
    print(harness.table(
        ["threshold", "bands x rows", "method", "precision", "recall", "F1", "removed fraction", "seconds"],
        [(t, br, name, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", f"{s['removed']:.3f}",
          f"{seconds:.1f}") for t, br, name, s, seconds in rows_out], align="rllrrrrr"))
    print("\nideal removed fraction (gold clusters): 0.443 on the full set")
    print(run.stop().summary("bench.dedup_quality"), file=sys.stderr)


if __name__ == "__main__":
    main()

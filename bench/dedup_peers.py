"""Peer MinHash dedup runs for bench/dedup_quality.py, executed in a separate venv (datatrove, text-dedup).

Usage: ``PEER_PYTHON bench/dedup_peers.py {datatrove,text-dedup} DOCS.jsonl BANDS ROWS NGRAM OUT.json``;
writes ``{"clusters": {doc_id: cluster}, "seconds": wall}`` for documents in a cluster of two or more.
Both peers run with the same bands x rows and n-gram size as mixlab, their own hashing and normalisation.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path


def _read(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def run_datatrove(docs: list[dict], bands: int, rows: int, ngram: int) -> dict[str, int]:
    """datatrove's four MinHash steps in process: signatures, buckets, cluster (union-find), with cluster ids."""
    import struct

    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupSignature,
    )

    config = MinhashConfig(n_grams=ngram, num_buckets=bands, hashes_per_bucket=rows)
    with tempfile.TemporaryDirectory() as tmp:
        sigs, buckets, out = f"{tmp}/sigs", f"{tmp}/buckets", f"{tmp}/out"
        stream = (Document(text=d["text"], id=d["id"]) for d in docs)
        MinhashDedupSignature(output_folder=sigs, config=config).run(stream, rank=0, world_size=1)
        for rank in range(bands):
            MinhashDedupBuckets(input_folder=sigs, output_folder=buckets, config=config).run(
                rank=rank, world_size=bands)
        MinhashDedupCluster(input_folder=buckets, output_folder=out, config=config, save_cluster_id=True).run()
        path = Path(out) / "000000.clusters"
        raw = path.read_bytes() if path.exists() else b""
    pairs = struct.iter_unpack("<II", raw)
    return {docs[idx]["id"]: cluster for idx, cluster in pairs}


def run_text_dedup(docs: list[dict], bands: int, rows: int, ngram: int) -> dict[str, int]:
    """text-dedup's MinHash embedding + LSH banding, clustered with its union-find."""
    import numpy as np
    from text_dedup.minhash import embed_func
    from text_dedup.utils.union_find import UnionFind

    num_perm = bands * rows
    modulo, max_hash = np.uint64((1 << 61) - 1), np.uint32((1 << 32) - 1)
    gen = np.random.RandomState(seed=42)  # text-dedup's SEED and its default 64-bit (legacy) hash config
    perms = (gen.randint(1, modulo, size=(num_perm,), dtype=np.uint64),
             gen.randint(0, modulo, size=(num_perm,), dtype=np.uint64))
    ranges = [(i * rows, (i + 1) * rows) for i in range(bands)]
    tables: list[dict] = [{} for _ in range(bands)]
    from text_dedup.utils.hashfunc import sha1_hash

    for idx, doc in enumerate(docs):
        out = embed_func(doc["text"], idx, num_perm=num_perm, ngram_size=ngram, min_length=0,
                         hashranges=ranges, permutations=perms, hash_func=sha1_hash, dtype=np.uint64,
                         max_hash=max_hash, modulo_prime=modulo)
        for h, table in zip(out["__signatures__"], tables, strict=True):
            table.setdefault(h, []).append(idx)
    uf = UnionFind()
    for table in tables:
        for members in table.values():
            for other in members[1:]:
                uf.union(members[0], other)
    groups: dict[int, list[int]] = {}
    for idx in range(len(docs)):
        groups.setdefault(uf.find(idx), []).append(idx)
    return {docs[i]["id"]: root for root, members in groups.items() if len(members) > 1 for i in members}


def main() -> None:
    peer, docs_path, bands, rows, ngram, out = sys.argv[1:7]
    docs = _read(docs_path)
    started = time.monotonic()
    run = run_datatrove if peer == "datatrove" else run_text_dedup
    clusters = run(docs, int(bands), int(rows), int(ngram))
    Path(out).write_text(json.dumps({"clusters": clusters, "seconds": time.monotonic() - started}))


if __name__ == "__main__":
    main()

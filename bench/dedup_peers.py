"""Peer MinHash dedup runs for bench/dedup_quality.py, executed in a separate venv (datatrove, text-dedup).

Usage, from the repository root: ``PEER_PYTHON -m bench.dedup_peers {datatrove,text-dedup} DOCS.jsonl BANDS ROWS
NGRAM OUT.json`` (bench/peers.py starts it); writes ``{"clusters": {doc_id: cluster}, "seconds": wall}`` for
documents in a cluster of two or more. Both peers run with the same bands x rows and n-gram size as mixlab,
their own hashing and normalisation. Imports only the standard library, bench.harness and the peer.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from bench import harness


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


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__file__, __doc__)
    parser.add_argument("peer", choices=["datatrove", "text-dedup"])
    parser.add_argument("docs", help="JSON Lines with id and text")
    parser.add_argument("bands", type=int)
    parser.add_argument("rows", type=int)
    parser.add_argument("ngram", type=int)
    parser.add_argument("out", help="JSON file written with the clusters and wall seconds")
    args = parser.parse_args(argv)
    docs = _read(args.docs)
    run = run_datatrove if args.peer == "datatrove" else run_text_dedup
    clusters, timer = harness.timed(run, docs, args.bands, args.rows, args.ngram)
    Path(args.out).write_text(json.dumps({"clusters": clusters, "seconds": timer.wall}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Dedup in Beam: distributed components == union-find, edge cases, and a spec run with clusters and report."""

from __future__ import annotations

import gzip
import json
import pickle
import random
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest

from filters.base import Document
from filters.dedup import connected_components
from mixlab import jobs
from mixlab.cli import main
from mixtures.spec import SpecError, load_spec
from pipelines.dedup import ConnectedComponents, MinHashDedup, exact_dedup


def _graph(seed: int) -> list[tuple[int, int]]:
    """A long path, a very large star, and random sparse edges, on scattered 63-bit node ids."""
    rng = random.Random(seed)
    nodes = rng.sample(range(1, 2**63), 4000)
    edges = [(nodes[i], nodes[i + 1]) for i in range(300)]
    edges += [(nodes[400], nodes[i]) for i in range(401, 2400)]
    edges += [(rng.choice(nodes[2400:]), rng.choice(nodes[2400:])) for _ in range(1200)]
    return [(u, v) for u, v in edges if u != v]


def _collect(pcoll: beam.PCollection, path: Path, label: str) -> None:
    """Write a PCollection's elements to a pickle file (closures are pickled, so lists can't collect)."""
    _ = pcoll | f"{label}List" >> beam.combiners.ToList() | f"{label}Write" >> beam.Map(
        lambda xs: path.write_bytes(pickle.dumps(xs)))


def _labels(edges: list[tuple[int, int]], mode: str, tmp: Path, max_iterations: int = 10) -> list[tuple[int, int]]:
    path = tmp / f"labels_{mode}.pkl"
    with beam.Pipeline(runner="FnApiRunner") as p:
        _collect(p | beam.Create(edges) | ConnectedComponents(mode, 1000, max_iterations), path, "L")
    return sorted(pickle.loads(path.read_bytes()))


def test_distributed_components_equal_union_find(tmp_path):
    edges = _graph(1)
    expected = sorted(connected_components(edges).items())
    assert _labels(edges, "distributed", tmp_path) == expected
    assert _labels(edges, "single", tmp_path) == expected
    assert _labels(edges, "auto", tmp_path) == expected  # 3,500 edges > 1,000: auto takes the distributed path


def test_distributed_components_fail_loudly_when_not_converged(tmp_path):
    path = [(i, i + 1) for i in range(1, 400)]
    with pytest.raises(Exception, match="did not converge"):
        _labels(path, "distributed", tmp_path, max_iterations=1)


def _run_stage(stage: beam.PTransform, docs: list[Document], tmp: Path) -> tuple[list[Document], list[tuple]]:
    with beam.Pipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(docs) | stage
        _collect(out["kept"], tmp / "kept.pkl", "K")
        _collect(out["removed"], tmp / "removed.pkl", "R")
    kept = pickle.loads((tmp / "kept.pkl").read_bytes())
    return sorted(kept, key=lambda d: (d.source, d.id, d.text)), pickle.loads((tmp / "removed.pkl").read_bytes())


LONG = " ".join(f"word{i}" for i in range(60))


def test_minhash_edge_cases(tmp_path):
    docs = [
        Document("e1", "", "web"), Document("e2", "", "web"),  # empty: never clustered
        Document("s1", "tiny text", "web"), Document("s2", "Tiny  text", "wiki"),  # shorter than one shingle
        Document("d1", LONG, "web"), Document("d1", LONG, "web"),  # identical id and text, twice
        Document("d1", LONG + " extra", "wiki"),  # same id in another source, near-duplicate text
        Document("u1", "Ｃａｆé " + LONG, "web"), Document("u2", "café " + LONG, "code"),
    ]
    kept, removed = _run_stage(MinHashDedup(7, source_priority=["wiki"]), docs, tmp_path)
    assert [d.id for d in kept if d.id.startswith("e")] == ["e1", "e2"]
    assert {d.id for d in kept if d.id.startswith("s")} == {"s2"}  # wiki preferred
    long_cluster = [d for d in kept if d.text.endswith(LONG) or d.text.endswith("extra")]
    assert [(d.source, d.id) for d in long_cluster] == [("wiki", "d1")]
    survivor = long_cluster[0]
    size = survivor.meta["dup_cluster_size"]
    assert size == 5  # two identical web d1, wiki d1, and the two unicode variants
    for doc, reason, stage in removed:
        assert reason == "dedup.minhash" and stage == 7
        assert doc.meta["dup_cluster_id"].startswith("minhash-")
        assert doc.meta["dup_survivor_id"] in ("wiki/d1", "wiki/s2")
    assert len(removed) == 1 + 4  # s1, and 4 of the 5 long documents


def test_exact_dedup_normalises_and_keeps_one_per_group(tmp_path):
    docs = [Document("a", "Hello, World!", "web"), Document("b", "hello world", "web"),
            Document("c", "HELLO   WORLD", "wiki"), Document("d", "!!!", "web"), Document("e", "...", "web"),
            Document("f", "different", "web")]
    stage = exact_dedup(3, normalise={"punctuation": True}, source_priority=["wiki"])
    kept, removed = _run_stage(stage, docs, tmp_path)
    assert sorted(d.id for d in kept) == ["c", "d", "e", "f"]  # only punctuation: empty, left alone
    assert sorted(d.id for d, _, _ in removed) == ["a", "b"]
    assert all(d.meta["dup_cluster_size"] == 3 and d.meta["dup_survivor_id"] == "wiki/c" for d, _, _ in removed)


def _slice(src: Path, dst: Path, n: int) -> None:
    with gzip.open(src, "rt") as f, gzip.open(dst, "wt") as out:
        for line, _ in zip(f, range(n), strict=False):
            out.write(line)


def _spec(tmp_path: Path, corpora: Path, components: str) -> Path:
    _slice(corpora / "dedup_bench" / "synthetic_docs.jsonl.gz", tmp_path / "synth.jsonl.gz", 500)
    _slice(corpora / "wiki.jsonl.gz", tmp_path / "wiki.jsonl.gz", 60)
    path = tmp_path / f"dedup_{components}.yaml"
    path.write_text(f"""
name: dd_{components}
data_root: {tmp_path}
output_dir: {tmp_path / "runs"}
sources:
  synth: {{paths: [synth.jsonl.gz]}}
  wiki: {{paths: [wiki.jsonl.gz]}}
dedup:
  source_priority: [wiki]
  minhash: {{components: {components}, fast_path_max_edges: 0}}
""")
    return path


def test_spec_run_writes_clusters_and_report(tmp_path, corpora):
    layout = jobs.clean(load_spec(_spec(tmp_path, corpora, "auto")), force=True)  # 0 edges allowed: distributed
    rows = pq.read_table(layout.dedup_clusters).to_pylist()
    assert {r["method"] for r in rows} >= {"minhash"}
    removed = [r for r in rows if r["status"] != "kept"]
    assert removed and all(r["survivor_id"] and r["cluster_size"] >= 2 for r in removed)
    removed_pq = pq.read_table(layout.removed / "synth").to_pylist()
    assert any(r["reason"] == "dedup.minhash" and r["dup_cluster_id"] for r in removed_pq)
    report = (layout.root / "report.md").read_text()
    assert "## Dedup" in report and "| cluster size | clusters |" in report and "minhash_dedup" in report


def test_spec_rejects_unknown_priority_source(tmp_path, corpora):
    path = _spec(tmp_path, corpora, "auto")
    path.write_text(path.read_text().replace("[wiki]", "[wikipedia]"))
    with pytest.raises(SpecError, match="unknown source"):
        jobs.clean(load_spec(path), force=True)


def _read_jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


def test_cli_dedup_writes_kept_removed_and_clusters(tmp_path, corpora):
    _slice(corpora / "dedup_bench" / "synthetic_docs.jsonl.gz", tmp_path / "a.jsonl.gz", 300)
    out = tmp_path / "out"
    assert main(["dedup", str(tmp_path / "a.jsonl.gz"), str(tmp_path / "a.jsonl.gz"), str(out),
                 "--priority", "a_2"]) == 0
    kept, removed = _read_jsonl(out / "kept.jsonl.gz"), _read_jsonl(out / "removed.jsonl.gz")
    assert len(kept) + len(removed) == 600
    assert all(r["source"] == "a" or r["dup_survivor_id"].startswith("a_2/") for r in removed)
    assert sum(r["source"] == "a" for r in removed) >= 300  # every copy in the first file loses to a_2
    clusters = pq.read_table(out / "clusters.parquet")
    assert clusters.num_rows == len(removed) + sum(1 for k in kept if k.get("dup_cluster_id"))
    assert main(["dedup", str(out)]) == 2  # no input file: a clear error, not a crash

"""Cleaning in parts: a killed run resumes without redoing finished parts, a killed --force run is never taken for
a finished one, outputs do not depend on the partition count, no empty Parquet file is written and every output
folder loads with Hugging Face ``datasets``, and the quality training run reads a bounded keyed-hash sample."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from filters.length import LengthFilter
from mixlab import jobs
from mixtures.layout import RunLayout
from mixtures.spec import load_spec
from pipelines.clean import sample_hash

REPO = Path(__file__).resolve().parent.parent
LINES = [{"id": f"d{i}", "text": f"Document number {i} talks about item {i * 7 % 13}. " * (i % 7 + 2),
          "url": f"http://e.org/{i}"} for i in range(60)]


def _inputs(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    raw = b"\n".join(json.dumps(x).encode() for x in LINES) + b'\n{"id": "broken", "text": \n'
    (root / "web.jsonl.gz").write_bytes(gzip.compress(raw))
    copies = [{**x, "id": f"w{x['id']}", "text": x["text"] + " From the wiki."} for x in LINES[:25]]
    (root / "wiki.jsonl").write_text("\n".join(json.dumps(x) for x in copies))
    (root / "wiki2.jsonl").write_text("\n".join(json.dumps({**x, "id": f"v{x['id']}"}) for x in copies[:5]))


def _spec(root: Path, pipeline: str = "{partition_mb: 0.002, shard_mb: 0.004}", name: str = "mix_resume",
          data: Path | None = None) -> Path:
    """A spec in ``root`` (its runs under ``root/runs``) over ``data`` (default ``root/data``): two runs of one test
    read the same files, since quarantine rows name the input path."""
    data = data or root / "data"
    if not data.is_dir():
        _inputs(data)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}.yaml"
    path.write_text(f"""
name: {name}
data_root: {data}
output_dir: {root / 'runs'}
pipeline: {pipeline}
sources:
  web:
    paths: [web.jsonl.gz]
    filters: [{{length: {{min_chars: 120}}}}, c4_url_dedup]
  wiki:
    paths: ["wiki*.jsonl"]
    filters: [{{length: {{min_chars: 50}}}}]
dedup:
  minhash: {{threshold: 0.5}}
""")
    return path


def _outputs(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for kind in ("docs", "removed", "quarantine") for p in sorted((root / kind).rglob("*.parquet"))}


def _stamps(layout: RunLayout) -> dict[str, int]:
    """mtime of every part record and every file between parts."""
    files = [*layout.part_records.glob("*.json"), *layout.part_data.rglob("*.parquet")]
    return {str(p.relative_to(layout.root)): p.stat().st_mtime_ns for p in files}


class Fault(RuntimeError):
    pass


def _fault_on(monkeypatch: pytest.MonkeyPatch, doc_id: str) -> None:
    """The length filter raises on one document (the run dies inside a partition of the wiki chain)."""
    original = LengthFilter.__call__

    def faulty(self: LengthFilter, doc):  # type: ignore[no-untyped-def]
        if doc.id == doc_id:
            raise Fault(f"injected fault on {doc_id}")
        return original(self, doc)

    monkeypatch.setattr(LengthFilter, "__call__", faulty)


def test_killed_run_resumes_without_redoing_finished_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _outputs(jobs.clean(load_spec(_spec(tmp_path / "reference", data=tmp_path / "data"))).root)
    spec = load_spec(_spec(tmp_path))
    layout = RunLayout(spec.run_dir)
    with monkeypatch.context() as m:
        _fault_on(m, "wd20")
        with pytest.raises(Exception, match="injected fault"):
            jobs.clean(spec)
    assert not layout.manifest.exists() and layout.run_record.exists()
    before = _stamps(layout)
    finished = {p for p in before if p.startswith("_work/parts/")}
    assert any("ingest." in p for p in finished) and any("/web." in p for p in finished)
    assert not any("/_global." in p for p in finished)  # it died in the wiki chain, before the global stages
    jobs.clean(spec)  # the same run again: resumes
    after = _stamps(layout)
    assert {p: after[p] for p in before} == before  # nothing finished was rewritten
    assert len(after) > len(before)
    assert _outputs(layout.root) == expected
    assert json.loads(layout.manifest.read_text())["fingerprint"]


def test_sigkilled_run_resumes(tmp_path: Path) -> None:
    """A real kill (SIGKILL inside a Beam stage of a subprocess run): the rerun redoes only what was unfinished."""
    spec_path = _spec(tmp_path)
    script = f"""
import os, signal
from filters.length import LengthFilter
from mixlab import jobs
from mixtures.spec import load_spec
original = LengthFilter.__call__
def killer(self, doc):
    if doc.id == "wd20":
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, doc)
LengthFilter.__call__ = killer
jobs.clean(load_spec({str(spec_path)!r}))
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    spec = load_spec(spec_path)
    layout = RunLayout(spec.run_dir)
    assert not layout.manifest.exists()
    before = _stamps(layout)
    assert any(p.startswith("_work/parts/ingest.") for p in before)
    jobs.clean(spec)
    after = _stamps(layout)
    assert {p: after[p] for p in before} == before
    reference = jobs.clean(load_spec(_spec(tmp_path / "reference", data=tmp_path / "data")))
    assert _outputs(layout.root) == _outputs(reference.root)


def test_killed_force_run_leaves_no_trusted_clean_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_spec(_spec(tmp_path))
    layout = jobs.clean(spec)
    first = _outputs(layout.root)
    assert layout.manifest.exists()
    with monkeypatch.context() as m:
        _fault_on(m, "wd3")
        with pytest.raises(Exception, match="injected fault"):
            jobs.clean(spec, force=True)
    assert not layout.manifest.exists()  # removed before any work, never written: the outputs are not trusted
    stamp = layout.run_record.stat().st_mtime_ns
    jobs.clean(spec)  # not "up to date": the forced run's parts resume
    assert layout.run_record.stat().st_mtime_ns == stamp and layout.manifest.exists()
    assert _outputs(layout.root) == first


def test_outputs_do_not_depend_on_the_partition_count(tmp_path: Path) -> None:
    """Partitions of a few KB (each one a unit) against ``partition_mb: 0`` (the stages' own Beam transforms)."""
    data = tmp_path / "data"
    many = _outputs(jobs.clean(load_spec(_spec(tmp_path / "many", data=data))).root)
    one = _outputs(jobs.clean(load_spec(_spec(tmp_path / "one", "{partition_mb: 0, shard_mb: 0.004}", data=data))).root)
    assert many == one
    assert sum(k.startswith("docs/wiki/") for k in many) > 1  # sharded by size: several parts per source


def test_no_empty_parquet_and_outputs_load_with_datasets(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    layout = jobs.clean(load_spec(_spec(tmp_path, "{shards_per_source: 5}")))
    files = [p for kind in ("docs", "removed", "quarantine") for p in (layout.root / kind).rglob("*.parquet")]
    assert files and all(pq.ParquetFile(p).metadata.num_rows > 0 for p in files)
    assert len(list((layout.quarantine / "web").glob("*.parquet"))) == 1  # one malformed line: one part of 5
    for kind in ("docs", "quarantine", "removed"):
        parts = sorted(str(p) for p in (layout.root / kind).rglob("*.parquet"))
        loaded = datasets.load_dataset("parquet", data_files=parts, split="train",
                                       cache_dir=str(tmp_path / "hf-cache"))
        assert len(loaded) == sum(pq.ParquetFile(p).metadata.num_rows for p in parts) > 0
    assert not list(layout.root.rglob(".*.tmp-*"))  # no temporary file left behind


def test_sampled_run_cleans_the_documents_with_the_smallest_keyed_hashes(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path))
    layout = jobs.clean(spec, sample_docs=7)
    stats = json.loads(layout.stats.read_text())["sources"]
    assert stats["web"]["input"]["docs"] == 7 and stats["wiki"]["input"]["docs"] == 7
    kept = [r for r in pq.read_table(layout.docs / "wiki").to_pylist()]
    removed = pq.read_table(layout.removed).to_pylist() if list(layout.removed.rglob("*.parquet")) else []
    seen = {r["id"] for r in kept} | {r["id"] for r in removed if r["source"] == "wiki"}
    from filters.base import Document

    ids = [f"w{x['id']}" for x in LINES[:25]] + [f"vw{x['id']}" for x in LINES[:5]]
    smallest = sorted(ids, key=lambda i: sample_hash(spec.seed, Document(i, "", "wiki")))[:7]
    assert seen == set(smallest)

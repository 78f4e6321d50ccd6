"""The Beam cleaning pipeline end to end: outputs, accounting, determinism, runners, the filter CLI."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mixlab import jobs
from mixlab.cli import main
from mixlab.jobs import kept_documents
from mixtures.layout import RunLayout
from mixtures.spec import load_spec

LINES = [
    {"id": f"d{i}", "text": f"Document number {i}. " * (i % 7 + 1), "url": f"http://e.org/{i}"} for i in range(40)
]


def _make_inputs(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    raw = b"\n".join(json.dumps(x).encode() for x in LINES)
    raw += b'\n{"id": "broken", "text": \n{"id": "latin", "text": "caf\xe9"}\n'
    (root / "web.jsonl.gz").write_bytes(gzip.compress(raw))
    (root / "wiki.jsonl").write_text("\n".join(json.dumps({**x, "id": f"w{x['id']}"}) for x in LINES[:10]))


def _spec(tmp_path: Path, extra: str = "") -> Path:
    _make_inputs(tmp_path / "data")
    path = tmp_path / "mix_test.yaml"
    path.write_text(f"""
name: mix_test
data_root: data
output_dir: {tmp_path / 'runs'}
sources:
  web:
    paths: [web.jsonl.gz]
    filters:
      - length: {{min_chars: 60}}
  wiki:
    paths: ["*.jsonl"]
{extra}""")
    return path


def _outputs(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def test_clean_run_writes_kept_removed_quarantine_and_consistent_stats(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path))
    layout = jobs.clean(spec)
    stats = json.loads(layout.stats.read_text())["sources"]
    web = stats["web"]
    short = sum(len(x["text"].strip()) < 60 for x in LINES)
    assert web["input"]["docs"] == 40 and web["quarantined"]["docs"] == 2
    assert web["removed"]["length.too_short"]["docs"] == short > 0
    assert web["kept"]["docs"] == 40 - short
    assert web["funnel"] == [{"stage": 0, "step": "length", "docs_in": 40, "removed": short, "docs_out": 40 - short}]
    assert stats["wiki"]["kept"]["docs"] == 10
    kept = kept_documents(layout, "web")
    assert [d.id for d in kept] == sorted(d.id for d in kept) and all(len(d.text.strip()) >= 60 for d in kept)
    removed = pq.read_table(next((layout.removed / "web").glob("*.parquet"))).to_pylist()
    assert {r["reason"] for r in removed} == {"length.too_short"} and all(r["stage"] == 0 for r in removed)
    quarantine = pq.read_table(next((layout.quarantine / "web").glob("*.parquet"))).to_pylist()
    assert sorted(r["reason"].split(":")[0] for r in quarantine) == ["invalid_utf8", "malformed_json"]
    assert all(r["id"].startswith(str(tmp_path / "data" / "web.jsonl.gz")) for r in quarantine)
    report = (layout.root / "report.md").read_text()
    assert "length.too_short" in report and "malformed_json" in report
    assert (layout.root / "funnel.svg").read_text().startswith("<?xml")


def test_same_spec_gives_byte_identical_outputs_and_up_to_date_runs_are_reused(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path))
    first = _outputs(jobs.clean(spec).root)
    stamp = RunLayout(spec.run_dir).manifest.stat().st_mtime_ns
    jobs.clean(spec)  # up to date: nothing rebuilt
    assert RunLayout(spec.run_dir).manifest.stat().st_mtime_ns == stamp
    second = _outputs(jobs.clean(spec, force=True).root)
    assert first == second and len(first) >= 4  # kept web+wiki, removed web, quarantine web (no empty parts)


@pytest.mark.slow
def test_multi_process_runner_gives_the_same_outputs(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path, "pipeline: {direct_num_workers: 2, direct_running_mode: multi_processing, "
                                     "shards_per_source: 3}"))
    multi = _outputs(jobs.clean(spec).root)
    single = _outputs(jobs.clean(spec, extra=["--direct_num_workers=1", "--direct_running_mode=in_memory"],
                                force=True).root)
    assert multi == single
    assert sum(k.startswith("docs/web/") for k in multi) == 3


def test_filter_cli_writes_kept_and_removed_jsonl(tmp_path: Path) -> None:
    _make_inputs(tmp_path / "data")
    out = tmp_path / "out"
    assert main(["filter", "--chain", "length", str(tmp_path / "data" / "wiki.jsonl"), str(out)]) == 0
    kept = [json.loads(x) for x in gzip.decompress((out / "kept.jsonl.gz").read_bytes()).splitlines()]
    removed = [json.loads(x) for x in gzip.decompress((out / "removed.jsonl.gz").read_bytes()).splitlines()]
    assert len(kept) == 10 and removed == [] and {k["id"] for k in kept} == {f"wd{i}" for i in range(10)}
    assert kept[0]["meta"] == {} and "reason" not in kept[0]


def test_default_runner_never_tries_to_download_prism(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"the pipeline tried to open a URL: {args}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    layout = jobs.clean(load_spec(_spec(tmp_path)))
    assert layout.stats.exists()


def test_duplicate_ids_are_quarantined_once_each_and_counted(tmp_path: Path) -> None:
    path = _spec(tmp_path)
    extra = tmp_path / "data" / "zz_more.jsonl"  # wiki reads *.jsonl: the same ids again, in a second file
    extra.write_text("\n".join(json.dumps({**x, "id": f"w{x['id']}", "text": "another copy"}) for x in LINES[:3]))
    layout = jobs.clean(load_spec(path))
    wiki = json.loads(layout.stats.read_text())["sources"]["wiki"]
    assert wiki["input"]["docs"] == 10 and wiki["quarantined"]["by_reason"]["duplicate_id"] == 3
    kept = kept_documents(layout, "wiki")
    assert len({d.id for d in kept}) == len(kept) == 10
    assert all(d.text != "another copy" for d in kept)  # the copy read first (file order, then line) survives
    rows = pq.read_table(layout.quarantine / "wiki").to_pylist()
    assert sorted(Path(r["id"]).name for r in rows) == [f"zz_more.jsonl:{i}" for i in (1, 2, 3)]


@pytest.mark.slow
def test_dask_runner_matches_with_corpus_stages_and_dedup(tmp_path: Path, corpora: Path) -> None:
    """Corpus stages with several outputs (URL and line dedup, exact and MinHash dedup) give the same files on Dask.

    DaskRunner routes a DoFn's tagged outputs to every output; stages that split ``(tag, value)`` pairs do not care.
    """
    pytest.importorskip("distributed")
    import psutil

    path = tmp_path / "mix_dask.yaml"
    path.write_text(f"""
name: mix_dask
data_root: {corpora}
output_dir: {tmp_path / 'runs'}
sources:
  web:
    paths: [web.jsonl.gz]
    limit: 60
    filters: [c4_url_dedup, c4_line_dedup]
  wiki:
    paths: [wiki.jsonl.gz]
    limit: 15
dedup:
  minhash: {{threshold: 0.5, verify: true}}
""")
    spec = load_spec(path)
    local = jobs.clean(spec)
    stats = json.loads(local.stats.read_text())["sources"]["web"]
    assert stats["kept"]["docs"] < stats["input"]["docs"] or stats["line_edits"]  # the stages did something
    expected = _outputs(local.root)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    assert _outputs(jobs.clean(spec, runner="DaskRunner", force=True).root) == expected
    # the job's one local cluster is stopped when the job ends (DaskRunner alone leaves one running per graph)
    # (multiprocessing's resource tracker, started once per process, stays: it is not the cluster's)
    new = [p for p in psutil.Process().children(recursive=True)
           if p.pid not in before and "resource_tracker" not in " ".join(p.cmdline())]
    _, alive = psutil.wait_procs(new, timeout=10)
    assert not alive, f"{len(alive)} Dask processes outlived the job"


def test_outputs_load_in_hugging_face_datasets_and_no_part_is_empty(tmp_path: Path) -> None:
    import datasets

    layout = jobs.clean(load_spec(_spec(tmp_path)))
    parts = sorted(layout.root.glob("*/*/*.parquet"))
    assert parts and all(pq.read_metadata(p).num_rows > 0 for p in parts)
    assert not list((layout.quarantine / "wiki").iterdir())  # nothing quarantined there: an empty folder, no file
    for folder, rows in ((layout.docs_of("web"), None), (layout.quarantine_of("web"), 2)):
        loaded = datasets.load_dataset("parquet", data_files=str(folder / "*.parquet"), split="train",
                                       cache_dir=str(tmp_path / "hf"))
        assert rows is None or loaded.num_rows == rows
        assert "id" in loaded.column_names

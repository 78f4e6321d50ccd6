"""The mixture build as Beam work: byte-identical on any runner, exact quotas per part, one MDS folder per stream
from merged part indexes; and the streams as loaders read them: exact epochs (``choose``), mixing from the first
samples, the tokenizer folder as transformers loads it."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from mixlab import jobs
from mixtures import build as mb
from mixtures.build import list_parts
from mixtures.layout import RunLayout
from mixtures.spec import load_spec
from mixtures.streaming_compat import import_streaming
from mixtures.streams_manifest import StreamsError, StreamsManifest

SHARES = {"multilingual": 0.05, "web": 0.6, "wiki": 0.35}
BUDGET = 125_000  # 1,953 samples of 64: old proportions (rounded to 12 digits) floored two streams a sample short


def _spec(folder: Path, corpora: Path, name: str, sources: dict, mixture: dict, pipeline: dict | None = None) -> Path:
    spec = {"name": name, "data_root": str(corpora), "output_dir": str(folder / "runs"), "seed": 3,
            "sources": sources, "mixture": mixture, **({"pipeline": pipeline} if pipeline else {})}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> Path:
    """Three sources, one of them 5 %: a mixture whose early samples show whether streams mix."""
    folder = tmp_path_factory.mktemp("mixed")
    path = _spec(folder, corpora, "mixed", {
        "web": {"paths": ["web.jsonl.gz"], "limit": 300}, "wiki": {"paths": ["wiki.jsonl.gz"], "limit": 60},
        "multilingual": {"paths": ["multilingual.jsonl.gz"], "limit": 200}}, {
        "tokenizer": {"vocab_size": 1024, "sample_chars": 100_000}, "budget_tokens": BUDGET, "max_seq_len": 64,
        "sources": {s: {"weight": w} for s, w in SHARES.items()}})
    spec = load_spec(path)
    layout = jobs.clean(spec)
    jobs.build(spec, layout)
    return layout.root


def _owners(streaming: object, manifest: dict) -> dict[str, str]:
    """sha1 of each sample's tokens -> its stream (every stream read alone, in order)."""
    from streaming.base.util import clean_stale_shared_memory

    owner = {}
    for name, entry in manifest["streams"].items():
        clean_stale_shared_memory()
        ds = streaming.StreamingDataset(streams=[streaming.Stream(local=entry["local"])], batch_size=1)
        owner.update({hashlib.sha1(ds[i]["tokens"].tobytes()).hexdigest(): name for i in range(ds.num_samples)})
    return owner


def _count(streaming: object, dataset: object, owner: dict[str, str], first: int | None = None) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i, sample in enumerate(dataset):
        if first is not None and i >= first:
            break
        name = owner[hashlib.sha1(sample["tokens"].tobytes()).hexdigest()]
        counts[name] = counts.get(name, 0) + 1
    return counts


def _shuffled(streaming: object, manifest: dict, seed: int) -> object:
    """The loader settings docs/mixture.md gives: streams.yaml's streams verbatim (as llm-foundry passes them)."""
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()
    return streaming.StreamingDataset(streams=[streaming.Stream(**s) for s in manifest["streams"].values()],
                                      batch_size=8, shuffle=True, shuffle_seed=seed, shuffle_algo="py1e",
                                      num_canonical_nodes=1, replication=None)


def _planned_samples(run: Path) -> dict[str, int]:
    return {s["source"]: s["samples"] for s in json.loads((run / "plan.json").read_text())["sources"]}


def test_one_epoch_reads_every_stream_at_its_planned_samples(mixed: Path) -> None:
    manifest = yaml.safe_load((mixed / "streams.yaml").read_text())
    plan = _planned_samples(mixed)
    streaming = import_streaming()
    owner = _owners(streaming, manifest)
    for seed in (0, 1, 2, 3, 4):
        assert _count(streaming, _shuffled(streaming, manifest, seed), owner) == plan, seed
    assert {s: e["choose"] for s, e in manifest["streams"].items()} == plan
    assert all("proportion" not in e for e in manifest["streams"].values())  # streaming takes one of the two


def test_mixlabs_trainer_reads_the_same_epoch(mixed: Path) -> None:
    from proxy_train import data

    mix = data.load_streams(mixed)
    plan = _planned_samples(mixed)
    streaming = import_streaming()
    owner = _owners(streaming, yaml.safe_load((mixed / "streams.yaml").read_text()))
    for seed in (0, 1, 2, 3):
        data.clean_shared_memory()
        assert _count(streaming, data.train_dataset(mix, 8, sum(plan.values()), seed=seed), owner) == plan, seed
    data.clean_shared_memory()
    half = _count(streaming, data.train_dataset(mix, 8, 1000, seed=5), owner)
    assert sum(half.values()) == 1000 and all(abs(half[s] - 1000 * plan[s] / sum(plan.values())) < 1 for s in plan)


def test_first_samples_hold_the_planned_shares(mixed: Path) -> None:
    manifest = yaml.safe_load((mixed / "streams.yaml").read_text())
    plan = _planned_samples(mixed)
    total = sum(plan.values())
    streaming = import_streaming()
    owner = _owners(streaming, manifest)
    first, seeds = 200, range(8)
    shares = {s: [] for s in manifest["streams"]}
    for seed in seeds:
        counts = _count(streaming, _shuffled(streaming, manifest, seed), owner, first)
        for s in shares:
            shares[s].append(counts.get(s, 0) / first)
    for s, got in shares.items():
        planned = plan[s] / total
        sigma = (planned * (1 - planned) / first) ** 0.5  # a random sample of 200 of the epoch
        assert abs(np.mean(got) - planned) <= 3 * sigma / len(seeds) ** 0.5 + 0.002, (s, planned, got)
    shards = [len(json.loads((Path(e["local"]) / "index.json").read_text())["shards"])
              for e in manifest["streams"].values()]
    assert min(shards) >= 16  # the 5 % stream too is many shards, all of one sample count


def test_tokenizer_folder_loads_with_transformers(mixed: Path) -> None:
    from transformers import AutoTokenizer

    manifest = yaml.safe_load((mixed / "streams.yaml").read_text())
    folder = mixed / "tokenizer"
    tok = AutoTokenizer.from_pretrained(str(folder))
    assert tok.eos_token_id == manifest["eos_token_id"] != 0
    assert manifest["tokenizer"] == str(folder)  # absolute, the folder
    assert {p.name for p in folder.iterdir()} >= {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
    assert tok.pad_token_id == 0 and tok.eos_token == "<|endoftext|>"
    text = "Héllo wörld — 日本語 🙂\n\tplain ascii, two  spaces."
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text and manifest["eos_token_id"] not in ids  # no EOS/BOS added
    assert len(tok) == manifest["vocab_size"]


def test_manifest_takes_choose_or_proportion_never_both(mixed: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load((mixed / "streams.yaml").read_text())
    assert raw["version"] == 2
    mix = StreamsManifest.read(mixed / "streams.yaml")
    assert sum(p for _, p in mix.train.values()) == pytest.approx(1)
    assert mix.tokenizer_file == mixed / "tokenizer" / "tokenizer.json"
    reweighted = mix.with_proportions({"web": 0.5, "wiki": 0.5}).write(tmp_path / "a" / "streams.yaml")
    entries = yaml.safe_load(reweighted.read_text())["streams"]
    assert entries["web"] == {"local": str(mixed / "mds/train/web"), "remote": None, "proportion": 0.5}
    raw["streams"]["web"]["proportion"] = 0.5
    (tmp_path / "streams.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(StreamsError, match="choose or proportion, not both"):
        StreamsManifest.read(tmp_path / "streams.yaml")
    del raw["streams"]["web"]["choose"]
    (tmp_path / "streams.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(StreamsError, match="every stream `choose` or every stream `proportion`"):
        StreamsManifest.read(tmp_path / "streams.yaml")


# ---- the build on several runners ------------------------------------------------------------------------------

def _outputs(root: Path) -> dict[str, bytes]:
    names = ("mds", "catalogue", "tokenizer")
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and (
        p.relative_to(root).parts[0] in names or p.name in ("plan.json", "streams.yaml"))}


@pytest.fixture(scope="module")
def parted(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> tuple[Path, dict[str, bytes]]:
    """Two sources in 3 cleaned parts each, one repeated 1.6 times, built in-process (FnApiRunner)."""
    folder = tmp_path_factory.mktemp("parted")
    path = _spec(folder, corpora, "parted", {
        "papers": {"paths": ["papers.jsonl.gz"], "limit": 400, "filters": [{"length": {"min_chars": 300}}]},
        "wiki": {"paths": ["wiki.jsonl.gz"], "limit": 25}}, {
        "tokenizer": {"vocab_size": 1024, "sample_chars": 150_000}, "budget_tokens": 300_000, "max_seq_len": 128,
        "validation": {"fraction": 0.05}, "sources": {"papers": {"weight": 0.3}, "wiki": {"weight": 0.7}}},
        pipeline={"shards_per_source": 3})
    spec = load_spec(path)
    layout = jobs.clean(spec)
    jobs.build(spec, layout)
    return layout.root, _outputs(layout.root)


def test_each_part_writes_its_quota_and_the_stream_its_plan(parted: tuple[Path, dict[str, bytes]]) -> None:
    import duckdb

    root, _ = parted
    plan = {s["source"]: s for s in json.loads((root / "plan.json").read_text())["sources"]}
    assert plan["wiki"]["epochs"] > 1 > plan["papers"]["epochs"] and plan["wiki"]["parts"] == 3
    layout = RunLayout(root)
    for source, line in plan.items():
        index = json.loads((layout.stream("train", source) / "index.json").read_text())
        assert sum(s["samples"] for s in index["shards"]) * 128 == line["target_tokens"] == line["written_tokens"]
        assert {s["raw_data"]["basename"].split("/")[0] for s in index["shards"]} == {
            f"part-{i:05d}" for i in range(3)}
    con = duckdb.connect()
    docs = f"read_parquet('{root}/catalogue/docs/*.parquet')"
    epochs = dict(con.execute(f"SELECT source, list(DISTINCT epochs ORDER BY epochs) FROM {docs} "
                              "WHERE split = 'train' GROUP BY source").fetchall())
    assert epochs["wiki"] == [1, 2]  # 1.64 epochs: every part repeats all its documents once, then part of them
    assert 0 in epochs["papers"] and max(epochs["papers"]) == 1
    kept = dict(con.execute(f"SELECT source, count(*) FROM {docs} WHERE kept GROUP BY source").fetchall())
    stats = json.loads((root / "stats.json").read_text())["sources"]
    assert kept == {s: stats[s]["kept"]["docs"] for s in ("papers", "wiki")}
    assert not (layout.build_work).exists()  # the token cache is scratch


def test_merged_index_is_streamings_merge_index(parted: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    from streaming.base.util import merge_index

    root, _ = parted
    stream = RunLayout(root).stream("train", "wiki")
    import shutil

    copy = tmp_path / "wiki"
    shutil.copytree(stream, copy)
    (copy / "index.json").unlink()
    merge_index([str(p / "index.json") for p in sorted(copy.glob("part-*"))], str(copy))
    assert json.loads((copy / "index.json").read_text()) == json.loads((stream / "index.json").read_text())


def test_sigkilled_build_resumes_without_redoing_finished_tasks(parted: tuple[Path, dict[str, bytes]],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A real kill (SIGKILL inside the write pass of a subprocess build): the rerun keeps the scan and count passes
    and the trained tokenizer, runs only the tasks without a summary and writes the same bytes."""
    root, single = parted
    spec_path = root.parent.parent / "parted.yaml"
    script = f"""
import os, signal
from pathlib import Path
from mixlab import jobs
from mixtures import build as mb
from mixtures.layout import RunLayout
from mixtures.spec import load_spec
original = mb.Worker._write_train
def killer(self, task):
    if task.source == "papers" and task.part.index == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, task)
mb.Worker._write_train = killer
jobs.build(load_spec({str(spec_path)!r}), RunLayout(Path({str(root)!r})))
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    layout = RunLayout(root)
    assert layout.build_record.is_file() and not layout.streams.exists()
    assert (layout.build_work / "tokenizer.json").is_file()
    settings = mb.settings_for(load_spec(spec_path), layout)
    parts = [p for s in ("papers", "wiki") for p in list_parts(layout.docs_of(s), s, "kept")]
    assert len(parts) == 6 and all(mb.summary_path(settings, "count", p).is_file() for p in parts)
    written = {p.relative_to(layout.build_work) for p in (layout.build_work / "written").rglob("*.json")}
    assert Path("written/train/papers/00002.json") not in written
    # the MDS files of finished train tasks: mds/train/<source>/part-NNNNN/* with written/train/<source>/NNNNN.json
    kept = {p: p.stat().st_mtime_ns for p in (layout.mds / "train").glob("*/part-*/*")
            if Path("written/train", p.parent.parent.name, f"{p.parent.name.removeprefix('part-')}.json") in written}

    ran: list[str] = []

    def spying(run: object) -> object:
        def spy(self: mb.Worker, task: object) -> str:
            path = run(self, task)  # type: ignore[operator]
            ran.append(str(Path(path).relative_to(layout.build_work)))
            return path
        return spy

    for step in ("scan", "count", "write"):
        monkeypatch.setattr(mb.Worker, step, spying(getattr(mb.Worker, step)))
    monkeypatch.setattr("pipelines.build.train_bpe", lambda *a: pytest.fail("the tokenizer was trained again"))
    jobs.build(load_spec(spec_path), layout)
    assert not any(r.startswith(("scan/", "counts/")) for r in ran)  # both passes were finished: none redone
    assert "written/train/papers/00002.json" in ran and not written & {Path(r) for r in ran}
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # finished parts' MDS shards were not rewritten
    assert _outputs(root) == single


@pytest.mark.slow
def test_multi_process_and_dask_runners_write_the_same_bytes(parted: tuple[Path, dict[str, bytes]]) -> None:
    root, single = parted
    spec = load_spec(root.parent.parent / "parted.yaml")
    jobs.build(spec, RunLayout(root), extra=["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    multi = _outputs(root)
    assert multi.keys() == single.keys() and len(single) > 50
    assert [k for k in single if single[k] != multi[k]] == []
    pytest.importorskip("distributed")
    jobs.build(spec, RunLayout(root), runner="DaskRunner")
    dask = _outputs(root)
    assert [k for k in single if single[k] != dask.get(k)] == [] and dask.keys() == single.keys()


def test_parts_are_whole_row_group_ranges(tmp_path: Path) -> None:
    folder = tmp_path / "docs" / "s"
    folder.mkdir(parents=True)
    table = pa.table({"id": [f"d{i:03d}" for i in range(35)], "n_chars": list(range(35))})
    pq.write_table(table, folder / "part-00000-of-00002.parquet", row_group_size=10)
    pq.write_table(table.slice(0, 0), folder / "part-00001-of-00002.parquet")  # every shard is written, even empty
    parts = list_parts(folder, "s", "kept", rows_per_part=20)
    assert [(p.row_groups, p.first_row, p.rows) for p in parts] == [((0, 1), 0, 20), ((2, 3), 20, 15)]


def test_quality_first_takes_the_sources_best_documents_across_parts(tmp_path: Path, corpora: Path) -> None:
    """A cleaned run written by hand: three parts whose quality differs (part 0 best); the partial epoch must take
    the source's best documents, not each part's own best share."""
    from filters.base import Document
    from mixtures import schema

    texts = [t for t in (json.loads(line)["text"] for line in __import__("gzip").open(
        corpora / "wiki.jsonl.gz", "rt", encoding="utf-8")) if len(t) > 400][:240]
    rng = np.random.default_rng(0)
    layout = RunLayout(tmp_path / "runs" / "quality")
    for part in range(3):
        docs = [Document(id=f"d{part}-{i:03d}", text=texts[part * 80 + i][:1500], source="s",
                         meta={"quality_score": float(np.clip(rng.normal(0.8 - 0.3 * part, 0.15), 0, 1))})
                for i in range(80)]
        folder = layout.docs_of("s")
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist([schema.doc_row(d) for d in docs], schema=schema.DOC_SCHEMA),
                       folder / f"part-{part:05d}-of-00003.parquet")
    (tmp_path / "in.jsonl").write_text("{}\n")
    path = _spec(tmp_path, tmp_path, "quality", {"s": {"paths": ["in.jsonl"]}}, {
        "tokenizer": {"vocab_size": 600, "sample_chars": 50_000}, "budget_tokens": 25_600, "max_seq_len": 64,
        "prefer_quality": True, "sources": {"s": {"weight": 1}}})
    jobs.build(load_spec(path), layout)
    import duckdb

    rows = duckdb.sql(f"SELECT id, quality_score AS q, epochs FROM read_parquet('{layout.catalogue_docs}/*.parquet') "
                      "WHERE split = 'train' ORDER BY q DESC").fetchall()
    used = [r[2] > 0 for r in rows]
    assert 0 < sum(used) < len(rows)
    best = used[: sum(used)]  # the documents a single global quality-first pass would take
    assert sum(best) >= 0.95 * len(best)
    assert sum(r[0].startswith("d2-") for r, u in zip(rows, used, strict=True) if u) <= 2  # the worst part: ~none

"""A small mixture built end to end from the shared corpora: token shares read back through StreamingDataset,
validation disjoint from training, byte-identical rebuilds, per-token bytes, and errors before any write."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from mixlab import jobs
from mixtures.build import MixtureError
from mixtures.layout import RunLayout
from mixtures.spec import SpecError, load_spec
from mixtures.streaming_compat import import_streaming
from mixtures.tokenizer import byte_table, load_tokenizer, prepare, token_bytes, tokenize, train_bpe

WEIGHTS = {"papers": 0.6, "wiki": 0.4}


def write_spec(folder: Path, corpora: Path, **mixture: object) -> Path:
    """A two-source spec (papers abstracts, a few wiki pages) with a mixture section; overrides via kwargs."""
    section = {"tokenizer": {"name": "bpe", "vocab_size": 1024, "sample_chars": 150_000},
               "budget_tokens": 40_000, "max_seq_len": 128, "validation": {"fraction": 0.05},
               "sources": {s: {"weight": w} for s, w in WEIGHTS.items()}, **mixture}
    spec = {"name": "mix_test", "data_root": str(corpora), "output_dir": str(folder / "runs"), "seed": 7,
            "sources": {"papers": {"paths": ["papers.jsonl.gz"], "limit": 400,
                                   "filters": [{"length": {"min_chars": 300}}]},
                        "wiki": {"paths": ["wiki.jsonl.gz"], "limit": 25}},
            "mixture": section}
    path = folder / "mix_test.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def build(folder: Path, corpora: Path, **mixture: object) -> Path:
    spec = load_spec(write_spec(folder, corpora, **mixture))
    layout = jobs.clean(spec)
    jobs.build(spec, layout)
    return layout.root


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> Path:
    return build(tmp_path_factory.mktemp("a"), corpora)


def read_rows(streaming: object, local: str) -> list[np.ndarray]:
    """Every sample's tokens of one stream, in order (a fresh Stream per dataset: deps.md gotcha E)."""
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()
    ds = streaming.StreamingDataset(streams=[streaming.Stream(local=local)], batch_size=1, shuffle=False)
    return [ds[i]["tokens"] for i in range(ds.num_samples)]


def test_token_shares_through_streaming_dataset_match_spec(run: Path) -> None:
    manifest = yaml.safe_load((run / "streams.yaml").read_text())
    streaming = import_streaming()
    owner = {hashlib.sha1(row.tobytes()).hexdigest(): name
             for name, s in manifest["streams"].items() for row in read_rows(streaming, s["local"])}
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()
    streams = [streaming.Stream(**s) for s in manifest["streams"].values()]  # as llm-foundry builds them
    ds = streaming.StreamingDataset(streams=streams, batch_size=1, shuffle=True, shuffle_seed=1)
    tokens = dict.fromkeys(WEIGHTS, 0)
    for sample in ds:
        assert sample["tokens"].dtype == np.int32 and sample["tokens"].shape == (manifest["max_seq_len"],)
        tokens[owner[hashlib.sha1(sample["tokens"].tobytes()).hexdigest()]] += len(sample["tokens"])
    total = sum(tokens.values())
    assert total == 40_000 // 128 * 128
    for source, weight in WEIGHTS.items():
        assert abs(tokens[source] / total - weight) <= 0.005, (source, tokens)


def contains_aligned(haystack: bytes, needle: bytes) -> bool:
    """Whether ``needle`` occurs in ``haystack`` at an int32 boundary."""
    pos = haystack.find(needle)
    while pos != -1 and pos % 4:
        pos = haystack.find(needle, pos + 1)
    return pos != -1


def test_no_validation_document_in_training(run: Path) -> None:
    import duckdb

    docs = duckdb.sql(f"SELECT * FROM read_parquet('{run}/catalogue/docs/*.parquet')").to_arrow_table().to_pylist()
    valid = [d for d in docs if d["split"] == "valid"]
    assert valid and all(d["epochs"] == 0 for d in valid)
    assert {d["source"] for d in valid} == set(WEIGHTS)
    texts = {}
    import pyarrow.parquet as pq

    for part in sorted((run / "docs").glob("*/*.parquet")):
        for row in pq.read_table(part, columns=["id", "source", "text"]).to_pylist():
            texts[(row["source"], row["id"])] = row["text"]
    tok = prepare(load_tokenizer(str(run / "tokenizer" / "tokenizer.json")))
    streaming = import_streaming()
    train = b"".join(r.tobytes() for s in ("papers", "wiki") for r in read_rows(streaming, str(run / "mds/train" / s)))
    counts: dict[str, int] = {}
    for text in texts.values():
        counts[text] = counts.get(text, 0) + 1
    checked = 0
    for d in valid:
        text = texts[(d["source"], d["id"])]
        ids = np.asarray(tok.encode(text).ids, dtype=np.int32)
        if counts[text] > 1 or len(ids) < 64:
            continue  # an exact duplicate may rightly sit in training; short texts can collide by chance
        window = ids[len(ids) // 2 - 16: len(ids) // 2 + 16].tobytes()
        assert not contains_aligned(train, window), d["id"]
        checked += 1
    assert checked >= 5
    a_train_doc = next(d for d in docs if d["epochs"] > 0 and d["n_tokens"] >= 64 and d["source"] == "papers")
    ids = np.asarray(tok.encode(texts[("papers", a_train_doc["id"])]).ids, dtype=np.int32)
    assert contains_aligned(train, ids[len(ids) // 2 - 16: len(ids) // 2 + 16].tobytes())  # the check can fail


def test_plan_and_catalogue_agree_with_streams(run: Path) -> None:
    import json

    plan = json.loads((run / "plan.json").read_text())
    by = {s["source"]: s for s in plan["sources"]}
    assert sum(s["target_tokens"] for s in plan["sources"]) == plan["total_tokens"] == 40_000 // 128 * 128
    assert all(s["written_tokens"] == s["target_tokens"] for s in plan["sources"])
    assert by["papers"]["available_tokens"] > 0 and by["wiki"]["epochs"] < 1
    report = (run / "report.md").read_text()
    assert report.count("## Mixture") == 1 and "| papers |" in report


def test_rebuild_is_byte_identical(run: Path, tmp_path: Path, corpora: Path) -> None:
    again = build(tmp_path, corpora)
    # files of the fresh build (reading the first one with StreamingDataset added decompressed shards to it)
    files = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file() and (
        p.parts[len(again.parts)] in ("mds", "catalogue", "tokenizer", "docs") or p.name == "plan.json"))
    assert any(str(f).endswith(".mds.zstd") for f in files)
    assert any(f.parts[:2] == ("catalogue", "docs") for f in files)  # the docs table, in parts
    for rel in files:
        assert (run / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_token_bytes_sum_to_utf8_length() -> None:
    texts = ["héllo wörld — 日本語 🙂 x", "plain ascii text", "  leading spaces\n\ttabs"]
    tok = prepare(train_bpe(texts * 20, 300, "<|endoftext|>"))
    assert byte_table(tok) is not None
    out = tokenize(tok, texts)
    for i, text in enumerate(texts):
        ids, nbytes = out.doc(i)
        assert int(nbytes.sum()) == len(text.encode())
        from_offsets = token_bytes(text, tok.encode(text).offsets)
        assert int(from_offsets.sum()) == len(text.encode()) and len(from_offsets) == len(ids)


def test_token_bytes_from_offsets_for_other_tokenizers() -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    texts = ["Héllo Wörld — 日本語 🙂 x", "plain ascii text", "  leading spaces\n\ttabs"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts * 5, trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[UNK]"]))
    assert byte_table(tok) is None
    out = tokenize(prepare(tok), texts)
    for i, text in enumerate(texts):
        assert int(out.doc(i)[1].sum()) == len(text.encode()), text


def test_local_tokenizer_file_path(run: Path, tmp_path: Path, corpora: Path) -> None:
    again = build(tmp_path, corpora, tokenizer={"name": str(run / "tokenizer" / "tokenizer.json")})
    assert (again / "tokenizer" / "tokenizer.json").read_bytes() == (run / "tokenizer" / "tokenizer.json").read_bytes()
    assert (again / "mds/train/papers/index.json").read_bytes() == (run / "mds/train/papers/index.json").read_bytes()


@pytest.mark.parametrize("sources, message", [
    ({"papers": {"weight": -1}, "wiki": {"weight": 1}}, "greater than or equal to 0"),
    ({"papers": {"weight": 0}, "wiki": {"weight": 0}}, "all weights are zero"),
    ({"papers": {"weight": 1}}, r"missing: \['wiki'\]"),
    ({"papers": {"weight": 1}, "wiki": {"tokens": 5}}, "not both"),
])
def test_bad_weights_fail_at_load(tmp_path: Path, corpora: Path, sources: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        load_spec(write_spec(tmp_path, corpora, sources=sources))


def test_over_epoch_cap_fails_before_writing(run: Path) -> None:
    spec = load_spec(run.parent.parent / "mix_test.yaml")
    spec = spec.model_copy(update={"mixture": spec.mixture.model_copy(update={"budget_tokens": 10_000_000})})
    (run / "streams.yaml").rename(run / "streams.keep")
    try:
        with pytest.raises(MixtureError, match=r"source '(papers|wiki)'.*available tokens.*epoch cap 4"):
            jobs.build(spec, RunLayout(run))
        assert not (run / "streams.yaml").exists() and (run / "mds/train/papers/index.json").exists()
    finally:
        (run / "streams.keep").rename(run / "streams.yaml")


def test_source_without_data_fails_before_writing(tmp_path: Path, corpora: Path) -> None:
    path = write_spec(tmp_path, corpora)
    data = yaml.safe_load(path.read_text())
    data["sources"]["wiki"]["filters"] = [{"length": {"min_chars": 10_000_000}}]
    path.write_text(yaml.safe_dump(data))
    spec = load_spec(path)
    layout = jobs.clean(spec)
    with pytest.raises(MixtureError, match="'wiki' has no documents left after filtering"):
        jobs.build(spec, layout)
    assert not (layout.root / "mds").exists() and not (layout.root / "plan.json").exists()


def test_unavailable_tokenizers_name_the_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mixtures.tokenizer import TokenizerError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TokenizerError, match="cannot load HF tokenizer 'no-such-org/no-such-model'"):
        load_tokenizer("no-such-org/no-such-model")
    with pytest.raises(TokenizerError, match="does not exist"):
        load_tokenizer(str(tmp_path / "missing.json"))

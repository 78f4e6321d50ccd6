"""Fair held-out evaluation across mixtures: two specs with different filters over the same data and seed hold out
the same documents where both keep them, never train on each other's held-out documents, and every proxy of an
ablation is scored on the same common bytes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from tokenizers import Tokenizer

from mixlab import jobs
from mixtures.build import heldout_keys, in_bucket
from mixtures.spec import load_spec
from mixtures.tokenizer import prepare
from proxy_train.ablate import AblationConfig, Mix, common_eval_set, open_ablation, run_ablation
from proxy_train.evaluate import bits_per_byte_texts
from proxy_train.model import MPT, config_for

SEED, FRACTION = 11, 0.1
MIN_CHARS = {"loose": 200, "strict": 900}  # papers abstracts: the strict mix drops the shorter ones


def _build(folder: Path, corpora: Path, name: str, min_chars: int) -> Path:
    spec = {"name": name, "data_root": str(corpora), "output_dir": str(folder / "runs"), "seed": SEED,
            "sources": {"papers": {"paths": ["papers.jsonl.gz"], "limit": 300,
                                   "filters": [{"length": {"min_chars": min_chars}}]},
                        "wiki": {"paths": ["wiki.jsonl.gz"], "limit": 30}},
            "mixture": {"tokenizer": {"name": "bpe", "vocab_size": 512, "sample_chars": 60_000},
                        "budget_tokens": 8_192, "max_seq_len": 64, "validation": {"fraction": FRACTION},
                        "sources": {"papers": {"weight": 0.7}, "wiki": {"weight": 0.3}}}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    loaded = load_spec(path)
    jobs.build(loaded, jobs.clean(loaded))
    return loaded.run_dir


@pytest.fixture(scope="module")
def mixes(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> list[Mix]:
    root = tmp_path_factory.mktemp("common")
    return [Mix(name, _build(root, corpora, name, chars)) for name, chars in MIN_CHARS.items()]


def _docs(mix: Mix) -> pd.DataFrame:
    return pd.read_parquet(mix.run_dir / "catalogue" / "docs", columns=["source", "id", "kept", "split"])  # parts


def test_heldout_of_one_mix_is_never_trained_by_another(mixes: list[Mix]) -> None:
    loose, strict = (_docs(m).set_index(["source", "id"]) for m in mixes)
    assert (strict.kept.sum() < loose.kept.sum())  # the filters differ
    for a, b in ((loose, strict), (strict, loose)):
        held = a.index[a.split == "valid"]
        assert len(held) > 0
        assert not (b.loc[held, "split"] == "train").any()
    for docs in (loose, strict):  # held out = the kept documents in the hash bucket
        for source, part in docs[docs.kept].groupby(level="source"):
            ids = list(part.index.get_level_values("id"))
            bucket = in_bucket(heldout_keys(ids, SEED, source), FRACTION)
            assert list(part.split == "valid") == list(bucket)


def test_common_set_is_the_same_for_every_mix_order(mixes: list[Mix]) -> None:
    common, reverse = common_eval_set(mixes), common_eval_set(mixes[::-1])
    assert common.docs == reverse.docs and common.fingerprint == reverse.fingerprint
    assert set(common.docs) == {"papers", "wiki"}
    for mix in mixes:
        docs = _docs(mix).set_index(["source", "id"])
        for source, pairs in common.docs.items():
            assert (docs.loc[[(source, i) for i, _ in pairs], "split"] == "valid").all()
    assert "documents" in common.notes["papers"] and "bytes" in common.notes["wiki"]


def test_bpb_common_scores_the_same_bytes_under_each_tokenizer(mixes: list[Mix]) -> None:
    common = common_eval_set(mixes)
    texts = [t for _, t in common.docs["papers"]]
    scored = []
    for mix in mixes:
        tok = prepare(Tokenizer.from_file(str(mix.run_dir / "tokenizer" / "tokenizer.json")))
        torch.manual_seed(0)
        model = MPT(config_for("tiny", tok.get_vocab_size(), 64, "reference")).eval()
        scored.append(bits_per_byte_texts(model, tok, texts, torch.device("cpu"), tok.token_to_id("<|endoftext|>")))
    assert scored[0]["bytes"] == scored[1]["bytes"] == common.as_json()["sources"]["papers"]["bytes"]
    assert scored[0]["tokens"] != scored[1]["tokens"]  # different tokenizers, same text
    assert all(s["windows"] > s["docs"] for s in scored)  # long abstracts span several 64-token windows
    assert all(5 < s["bits_per_byte"] < 20 for s in scored)  # an untrained model: near log2(vocab) per token


def test_ablation_leads_with_common_metrics_and_backfills_them(mixes: list[Mix], tmp_path: Path) -> None:
    config = AblationConfig(proxy="tiny", tokens=8 * 64 * 3, global_batch=8)
    ablation = open_ablation(tmp_path / "fair", config)
    ablation.mixes = mixes
    report = run_ablation(ablation, seeds=2)
    results = pd.read_parquet(ablation.results_path)
    common = {"bpb_common/papers", "bpb_common/wiki", "bpb_common/mean"}
    assert all(common <= set(g.metric) for _, g in results.groupby(["mix", "seed"]))
    text = report.read_text()
    assert text.index("## Headline ranking") < text.index("## Results per mixture")
    assert "Mixes ranked by `bpb_common/mean`" in text and "| papers |" in text
    pair_rows = [line for line in text.split("## Pairwise")[1].splitlines() if line.startswith("| bpb")]
    assert pair_rows[0].startswith("| bpb_common/")

    # results recorded before the common set existed: scored from the checkpoints, nothing retrained
    trained = {p: p.stat().st_mtime_ns for p in ablation.root.glob("proxies/*/seed-*/summary.parquet")}
    results[~results.metric.str.startswith("bpb_common/")].to_parquet(ablation.results_path, index=False)
    run_ablation(ablation, seeds=2)
    again = pd.read_parquet(ablation.results_path).set_index(["mix", "seed", "metric"])["value"]
    before = results.set_index(["mix", "seed", "metric"])["value"]
    assert again.loc[before.index].round(6).equals(before.round(6))
    assert {p: p.stat().st_mtime_ns for p in trained} == trained

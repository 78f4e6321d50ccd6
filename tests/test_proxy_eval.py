"""Proxy evaluation: bits-per-byte per domain, multiple-choice scoring, and the mixlab proxy CLI end to end."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from mixlab.cli import main
from proxy_train import data
from proxy_train.evaluate import Request, bits_per_byte, load_model, requests_for, score_requests, score_task
from proxy_train.train import TrainConfig, checkpoint_path, train

torch.set_num_threads(1)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def trained(tiny_mixture: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny proxy trained for 30 steps (checkpoints at 0, 10, 20, 30)."""
    cfg = TrainConfig(size="tiny", tokens=8 * 64 * 30, checkpoint_every=10, keep_checkpoints=5)
    return train(tiny_mixture, cfg, out=tmp_path_factory.mktemp("proxy") / "tiny")


def test_bits_per_byte_counts_the_bytes_of_predicted_tokens(tiny_mixture: Path, trained: Path) -> None:
    mix = data.load_streams(tiny_mixture)
    model, _ = load_model(checkpoint_path(trained, 30), CPU)
    rows = {r["domain"]: r for r in bits_per_byte(model, mix, CPU, max_samples=8)}
    assert set(rows) == {"web", "wiki"}
    tok = Tokenizer.from_file(str(mix.tokenizer_file))
    data.clean_shared_memory()
    dataset = data.validation_dataset(mix.validation["wiki"], 8)
    decoded = sum(len(tok.decode(list(dataset[i]["tokens"][1:]), skip_special_tokens=True).encode())
                  for i in range(8))
    assert rows["wiki"]["bytes"] == pytest.approx(decoded, rel=0.01)  # decode may merge split characters
    web = rows["web"]
    assert web["bits_per_byte"] == pytest.approx(web["nats_per_token"] * web["tokens"] / math.log(2) / web["bytes"])


def test_training_lowers_bits_per_byte_on_every_domain(tiny_mixture: Path, trained: Path) -> None:
    mix = data.load_streams(tiny_mixture)
    before = bits_per_byte(load_model(checkpoint_path(trained, 0), CPU)[0], mix, CPU, max_samples=8)
    after = bits_per_byte(load_model(checkpoint_path(trained, 30), CPU)[0], mix, CPU, max_samples=8)
    for b, a in zip(before, after, strict=True):
        assert a["bits_per_byte"] < b["bits_per_byte"] - 0.5


def test_a_request_scores_the_continuation_tokens_only(tiny_mixture: Path, trained: Path) -> None:
    mix = data.load_streams(tiny_mixture)
    tok = Tokenizer.from_file(str(mix.tokenizer_file))
    model, _ = load_model(checkpoint_path(trained, 30), CPU)
    req = Request(0, 0, "The history of the", " city")
    (total, n_cont, _), = score_requests(model, tok, [req], CPU)
    ctx, cont = tok.encode(req.context).ids, tok.encode(req.continuation).ids
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids[:, :-1]), -1)[0]
    expected = sum(float(logprobs[len(ctx) - 1 + i, t]) for i, t in enumerate(cont))
    assert n_cont == len(cont) and total == pytest.approx(expected, abs=1e-4)


def test_fewshot_prefixes_use_other_items_with_their_gold_answers() -> None:
    items = [{"query": f"Q{i}:", "choices": [" a", " b"], "gold": i % 2} for i in range(4)]
    reqs = requests_for(items, fewshot=2, seed=0)
    assert len(reqs) == 8
    first = reqs[0].context
    assert first.endswith("Q0:") and first.count("\n\n") == 2 and "Q0: " not in first
    assert requests_for(items, 2, 0) == reqs


def _write_task(path: Path, items: list[dict]) -> Path:
    with gzip.open(path, "wt") as out:
        out.writelines(json.dumps(item) + "\n" for item in items)
    return path


def test_task_accuracy_chance_and_centering(tiny_mixture: Path, trained: Path, tmp_path: Path) -> None:
    tok = Tokenizer.from_file(str(data.load_streams(tiny_mixture).tokenizer_file))
    model, _ = load_model(checkpoint_path(trained, 30), CPU)
    items = [{"query": "The", "choices": [" the the the", " of"], "gold": 1},
             {"query": "A", "choices": [" and", " zzqx", " qqqq"], "gold": 0}]
    row = score_task(model, tok, _write_task(tmp_path / "toy.jsonl.gz", items), 0, None, CPU)
    assert row["task"] == "toy" and row["items"] == 2 and row["kind"] == "multiple_choice"
    assert row["chance"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert row["acc"] in (0.0, 0.5, 1.0) and row["acc_norm"] in (0.0, 0.5, 1.0)
    assert row["acc_centered"] == pytest.approx((row["acc"] - row["chance"]) / (1 - row["chance"]))
    assert "acc_clean" not in row  # no decontamination information: no clean-subset columns


def test_clean_subset_leaves_out_contaminated_items(tiny_mixture: Path, trained: Path, tmp_path: Path) -> None:
    tok = Tokenizer.from_file(str(data.load_streams(tiny_mixture).tokenizer_file))
    model, _ = load_model(checkpoint_path(trained, 30), CPU)
    items = [{"id": f"toy/{i}", "query": "The", "choices": [" the", " zzqx qqqq"], "gold": i % 2} for i in range(4)]
    path = _write_task(tmp_path / "toy.jsonl.gz", items)
    full = score_task(model, tok, path, 0, None, CPU, contaminated=set())
    assert full["clean_items"] == 4 and full["acc_clean"] == full["acc"] == 0.5  # same prediction for every item
    dirty = score_task(model, tok, path, 0, None, CPU, contaminated={"toy/1", "toy/3"})
    assert dirty["clean_items"] == 2 and dirty["acc"] == 0.5
    assert dirty["acc_clean"] in (0.0, 1.0)  # only the gold-0 (or only the gold-1) items are left


def test_cli_eval_writes_bpb_and_mc_results_into_the_run(trained: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["proxy", "eval", str(trained), "--tasks", "copa,winogrande,lambada_openai", "--limit", "12",
                 "--max-samples", "4", "--fewshot", "1"])
    assert code == 0
    out = trained / "eval" / "step-000030"
    results = json.loads((out / "results.json").read_text())
    assert set(results["bits_per_byte"]) == {"web", "wiki"} and results["step"] == 30
    kinds = {r["task"]: r["kind"] for r in results["mc"]}
    assert kinds == {"copa": "multiple_choice", "winogrande": "schema", "lambada_openai": "language_modeling"}
    assert all(r["items"] == 12 for r in results["mc"])
    assert (out / "bpb.parquet").is_file() and (out / "mc.parquet").is_file()
    assert "bits-per-byte" in capsys.readouterr().out

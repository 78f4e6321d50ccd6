"""A proxy trains and evaluates on a run built by the mixture writer (mixlab mixture -> mixlab proxy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mixlab.cli import main


@pytest.fixture(scope="module")
def built_run(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> Path:
    """Clean and build a two-source mixture (papers 0.6, wiki 0.4; 128-token samples) with the real writer."""
    folder = tmp_path_factory.mktemp("proxy_mix")
    spec = {"name": "proxy_mix", "data_root": str(corpora), "output_dir": str(folder / "runs"), "seed": 7,
            "sources": {"papers": {"paths": ["papers.jsonl.gz"], "limit": 300},
                        "wiki": {"paths": ["wiki.jsonl.gz"], "limit": 20}},
            "mixture": {"tokenizer": {"name": "bpe", "vocab_size": 512, "sample_chars": 100_000},
                        "budget_tokens": 30_000, "max_seq_len": 128, "validation": {"fraction": 0.05},
                        "sources": {"papers": {"weight": 0.6}, "wiki": {"weight": 0.4}}}}
    (folder / "proxy_mix.yaml").write_text(yaml.safe_dump(spec))
    assert main(["mixture", str(folder / "proxy_mix.yaml"), "--runner", "FnApiRunner"]) == 0
    return folder / "runs" / "proxy_mix"


def test_proxy_trains_and_evaluates_on_a_built_mixture(built_run: Path) -> None:
    assert main(["proxy", "train", str(built_run), "--config", "tiny", "--tokens", str(8 * 128 * 12),
                 "--checkpoint-every", "6", "--threads", "1"]) == 0
    out = built_run / "proxy" / "tiny"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13)) and rows[-1]["loss"] < rows[0]["loss"]
    assert main(["proxy", "eval", str(out), "--tasks", "piqa", "--limit", "10", "--threads", "1"]) == 0
    results = json.loads((out / "eval" / "step-000012" / "results.json").read_text())
    assert set(results["bits_per_byte"]) == {"papers", "wiki"}
    assert all(0 < bpb < 20 for bpb in results["bits_per_byte"].values())
    assert results["mc"][0]["task"] == "piqa" and results["mc"][0]["items"] == 10

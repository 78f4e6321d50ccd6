"""`mixlab ablate --leave-one-out` and `--sweep` end to end on a tiny spec: variant specs, reports with intervals,
and the ranking checked across two proxy sizes."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mixlab.cli import main
from mixtures.spec import load_spec
from proxy_train.testing import read_texts

JS = "Please enable javascript in your browser to see every part of this page."
CURLY = "The function body reads { return x; } in this short example of code."


def _pages(n: int) -> list[dict]:
    """Synthetic web pages C4 keeps; every third has a javascript line, every fourth a curly bracket."""
    pages = []
    for p in range(n):
        lines = [f"Page {p} starts with a sentence about topic number {p % 7} in this town.",
                 f"The second sentence of page {p} talks about the weather and the river.",
                 f"People in district {p % 5} often walk along the old stone bridge at noon.",
                 f"This page {p} ends with a short note about the market and its many stalls."]
        if p % 3 == 0:
            lines.insert(1, JS)
        if p % 4 == 0:
            lines.insert(2, CURLY)
        pages.append({"id": f"page-{p:03d}", "text": "\n".join(lines), "source": "web"})
    return pages


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> Path:
    root = tmp_path_factory.mktemp("experiment")
    with gzip.open(root / "web.jsonl.gz", "wt", encoding="utf-8") as out:
        out.writelines(json.dumps(page) + "\n" for page in _pages(80))
        # wiki text under the web source too, so the tokenizer and proxies see varied text
    wiki = [{"id": f"w{i}", "text": t, "source": "wiki"} for i, t in enumerate(read_texts(corpora / "wiki.jsonl.gz",
                                                                                           30, 3000))]
    with gzip.open(root / "wiki.jsonl.gz", "wt", encoding="utf-8") as out:
        out.writelines(json.dumps(doc) + "\n" for doc in wiki)
    data = {"name": "exp", "data_root": str(root), "output_dir": str(root / "runs"), "seed": 5,
            "sources": {"web": {"paths": ["web.jsonl.gz"], "filters": ["c4_clean"]},
                        "wiki": {"paths": ["wiki.jsonl.gz"], "filters": [{"length": {"min_chars": 200}}]}},
            "mixture": {"tokenizer": {"name": "bpe", "vocab_size": 512, "sample_chars": 60_000},
                        "budget_tokens": 8_192, "max_seq_len": 64, "epoch_cap": 50, "on_shortfall": "redistribute",
                        "validation": {"fraction": 0.25, "min_docs": 2},
                        "sources": {"web": {"weight": 0.5}, "wiki": {"weight": 0.5}}}}
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


COMMON = ["--seeds", "2", "--tokens", str(8 * 64 * 4), "--global-batch", "8"]


def test_leave_one_out_writes_variants_and_attribution(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "ablations"
    assert main(["ablate", "--leave-one-out", str(spec), "--source", "web", "--rules", "javascript,curly_bracket",
                 "--out", str(out), *COMMON]) == 0
    root = out / "exp-loo-web"
    specs = sorted(p.name for p in (root / "variants").glob("*.yaml"))
    assert specs == ["exp--no-c4_clean.curly_bracket.yaml", "exp--no-c4_clean.javascript.yaml", "exp.yaml"]
    variant = load_spec(root / "variants" / "exp--no-c4_clean.javascript.yaml")
    assert variant.sources["web"].filters[0].params == {"filter_javascript": False}

    text = (root / "attribution.md").read_text()
    assert "Effect of removing each rule on `bpb_common/web`" in text
    assert "Removing c4_clean: curly_bracket changes bpb_common/web by" in text
    assert "+33.3%" in text or "documents of web" in text  # the curly variant keeps 20 more of 60 pages
    assert "variants/exp--no-c4_clean.javascript.yaml" in text
    effects = pd.read_csv(root / "effects.csv")
    assert {"effect", "ci_low", "ci_high", "p_better"} <= set(effects.columns)
    web = effects[effects.metric == "bpb_common/web"]
    assert len(web) == 2 and (web.ci_low <= web.effect).all() and (web.effect <= web.ci_high).all()
    # every variant is scored on the baseline's cleaned text: the javascript pages stay in the common set
    common = json.loads((root / "common_eval.json").read_text())
    assert common["sources"]["web"]["docs"] >= 10
    assert "scored on exp's cleaned text" in (root / "report.md").read_text()


def test_sweep_reports_the_curve_beside_the_law_across_two_sizes(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "ablations"
    assert main(["ablate", "--sweep", "mixture.sources.web.weight=0.2,0.8", str(spec), "--proxy", "tiny,small",
                 "--out", str(out), *COMMON]) == 0
    root = out / "exp-sweep-weight"
    assert sorted(p.name for p in (root / "variants").glob("*.yaml")) == ["exp--weight-0.2.yaml",
                                                                         "exp--weight-0.8.yaml"]
    assert (root / "proxy-tiny" / "report.md").is_file() and (root / "proxy-small" / "report.md").is_file()
    sweep = (root / "sweep.md").read_text()
    assert "law loss" in sweep and "measured - law" in sweep and " [" in sweep
    table = pd.read_csv(root / "sweep.csv")
    assert set(table["size"]) == {"tiny", "small"} and table.law_loss.notna().all()
    assert (table.ci_low <= table["mean"]).all() and (table["mean"] <= table.ci_high).all()
    cross = (root / "cross_size.md").read_text()
    assert "tiny vs small" in cross and "Kendall tau" in cross
    agreement = pd.read_csv(root / "cross_size.csv")
    lead = agreement[agreement.metric == "bpb_common/mean"].iloc[0]
    assert 0.0 <= lead.ci_low <= lead.agreement <= lead.ci_high <= 1.0


def test_experiment_flags_are_checked(spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ablate", "--leave-one-out", str(spec), "--out", str(tmp_path)]) == 2
    assert "--source" in capsys.readouterr().err
    assert main(["ablate", "--sweep", "mixture.budget_tokens=1", str(spec), "--out", str(tmp_path)]) == 2
    assert main(["ablate", str(spec), "--proxy", "tiny,huge", "--out", str(tmp_path)]) == 2
    assert "huge" not in capsys.readouterr().err or True


def test_finished_datasets_give_their_shared_memory_back(tiny_mixture: Path) -> None:
    import os

    from proxy_train import data
    from proxy_train.ablate import release_shared_memory

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    mix = data.load_streams(tiny_mixture)
    release_shared_memory()
    before = open_fds()
    for _ in range(3):
        for local in mix.validation.values():
            data.clean_shared_memory()
            assert data.validation_dataset(local, 4)[0]["tokens"].size
    during = open_fds()
    assert during > before + 10  # streaming keeps every block open (atexit holds it)
    assert release_shared_memory() > 0
    assert open_fds() <= before + 2  # a stray descriptor (a log or cache file opened meanwhile) may stay


def test_a_lost_shared_memory_race_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from proxy_train import ablate

    monkeypatch.setattr(ablate.time, "sleep", lambda _: None)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise FileExistsError(17, "File exists", "/000875_locals")
        return "ok"

    assert ablate.shm_retrying("mix seed 0", flaky) == "ok" and len(calls) == 3

    def always() -> str:
        raise FileExistsError(17, "File exists", "/000875_locals")

    with pytest.raises(FileExistsError):
        ablate.shm_retrying("mix seed 0", always)

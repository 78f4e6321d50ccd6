"""One tiny ablation end to end on CPU: 2 mixtures x 2 seeds, report with uncertainty, resume without retraining."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from proxy_train.ablate import AblationConfig, Mix, open_ablation, run_ablation
from proxy_train.testing import build_tiny_mixture, read_texts

CONFIG = AblationConfig(proxy="tiny", tokens=8 * 64 * 6, mc_tasks=("copa",), mc_limit=10)


@pytest.fixture(scope="module")
def mixes(corpora: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Mix]:
    """Two built mixtures of the same sources: web-heavy and wiki-heavy."""
    root = tmp_path_factory.mktemp("mixes")
    texts = {name: read_texts(corpora / f"{name}.jsonl.gz", 60, 1200) for name in ("web", "wiki")}
    return [Mix(name, build_tiny_mixture(root / name, texts, weights))
            for name, weights in (("webby", {"web": 0.8, "wiki": 0.2}), ("wikiish", {"web": 0.2, "wiki": 0.8}))]


def _mtimes(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.glob("proxies/*/seed-*/summary.parquet")}


def test_ablation_runs_reports_and_resumes(mixes: list[Mix], tmp_path: Path) -> None:
    ablation = open_ablation(tmp_path / "demo", CONFIG)
    ablation.mixes = mixes
    report = run_ablation(ablation, seeds=2)

    results = pd.read_parquet(ablation.results_path)
    assert sorted(results.groupby(["mix", "seed"]).groups) == [("webby", 0), ("webby", 1), ("wikiish", 0),
                                                               ("wikiish", 1)]
    assert {"bpb/web", "bpb/wiki", "mc/copa"} <= set(results.metric)
    assert results.loc[results.metric == "bpb/web", "value"].between(0.5, 20).all()
    curves = pd.read_parquet(ablation.curves_path)
    assert curves.groupby(["mix", "seed"]).size().tolist() == [6, 6, 6, 6]

    text = report.read_text()
    assert "| bpb/shared_mean | webby | 2 |" in text
    assert "P(A beats B)" in text and "Kendall tau" in text
    assert "init" in text and "shuffle seed 9176" in text
    assert (ablation.root / "loss_curves.svg").stat().st_size > 0

    # resume: nothing is retrained, nothing is recorded twice
    before = _mtimes(ablation.root)
    again = open_ablation(tmp_path / "demo", CONFIG)
    again.mixes = mixes
    run_ablation(again, seeds=2)
    assert _mtimes(ablation.root) == before
    assert len(pd.read_parquet(ablation.results_path)) == len(results)

    # a proxy trained but not yet recorded (interrupted during evaluation) is evaluated, not retrained
    kept = results[~((results.mix == "webby") & (results.seed == 1))]
    kept.to_parquet(ablation.results_path, index=False)
    run_ablation(again, seeds=2)
    assert _mtimes(ablation.root) == before
    redone = pd.read_parquet(ablation.results_path)
    assert len(redone) == len(results)
    old = results.set_index(["mix", "seed", "metric"])["value"]
    new = redone.set_index(["mix", "seed", "metric"])["value"]
    assert new.loc[old.index].round(6).equals(old.round(6))  # same proxy, same numbers


def test_changed_settings_are_refused(tmp_path: Path) -> None:
    open_ablation(tmp_path / "demo", CONFIG)
    with pytest.raises(ValueError, match="tokens"):
        open_ablation(tmp_path / "demo", AblationConfig(proxy="tiny", tokens=999))

"""Quality classifier: deterministic training, keep rules, the Beam stage, spec-driven training and reporting."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
import yaml
from scipy.stats import ks_2samp

from filters.base import Document
from filters.quality import (
    FOLDS,
    QualityModel,
    QualityRule,
    fold_model_paths,
    fold_of,
    normalize,
    pareto_draw,
    top_percent_cutoff,
)
from mixlab import jobs
from mixlab.cli import main
from mixtures.classifier import _write_train_file, evaluate, roc_auc, split_classes, train_model
from mixtures.quality_spec import QualitySpec
from mixtures.spec import SpecError, load_spec
from pipelines.quality import quality_stage, trained_max_chars
from pipelines.stages import REMOVED


def _docs(corpora: Path, name: str, n: int) -> list[Document]:
    with gzip.open(corpora / f"{name}.jsonl.gz", "rt", encoding="utf-8") as f:
        return [Document(id=r["id"], text=r["text"], source=name) for r in itertools.islice(map(json.loads, f), n)]


@pytest.fixture(scope="module")
def slice_docs(corpora: Path) -> dict[str, list[Document]]:
    return {"wiki": _docs(corpora, "wiki", 60), "instruct": _docs(corpora, "instruct", 60),
            "web": _docs(corpora, "web", 120)}


def _train(docs: dict[str, list[Document]], out: Path, seed: int = 0) -> tuple[QualityModel, dict]:
    q = QualitySpec(positive=["wiki", "instruct"], negative=["web"], max_docs=120, seed=seed, epoch=15,
                    max_chars=2000)
    split = split_classes(docs, q)
    _write_train_file(out.with_suffix(".txt"), split["train"], q.seed)
    train_model(out.with_suffix(".txt"), out, seed=seed, epoch=q.epoch, lr=q.lr, word_ngrams=q.word_ngrams,
                dim=q.dim, bucket=q.bucket, min_count=q.min_count)
    return QualityModel(out, q.max_chars), split


@pytest.fixture(scope="module")
def trained(slice_docs: dict[str, list[Document]], tmp_path_factory: pytest.TempPathFactory) -> QualityModel:
    return _train(slice_docs, tmp_path_factory.mktemp("q") / "model.bin")[0]


def test_training_is_deterministic_and_separates_classes(slice_docs: dict, trained: QualityModel,
                                                         tmp_path: Path) -> None:
    again, split = _train(slice_docs, tmp_path / "again.bin")
    texts = [d.text for d in slice_docs["web"][:30] + slice_docs["wiki"][:30]]
    assert trained.score(texts) == again.score(texts)
    evaluation = evaluate(again, split["holdout"])
    assert evaluation["holdout_docs"] == 48 and evaluation["roc_auc"] > 0.85
    assert evaluation["by_source"]["web"]["mean_score"] < evaluation["by_source"]["wiki"]["mean_score"]


def test_normalize_is_one_line_without_labels() -> None:
    assert normalize("Hello,\nWorld! __label__hq x" * 3, 27) == "hello , world ! _label_hq x"


def test_roc_auc_matches_hand_counts() -> None:
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert roc_auc([0.5, 0.5], [0, 1]) == 0.5


def test_threshold_and_pareto_rules() -> None:
    rule = QualityRule(mode="threshold", threshold=0.6)
    assert rule.reason("s", "a", 0.59) == "quality.below_threshold" and rule.reason("s", "a", 0.6) is None
    pareto = QualityRule(mode="pareto", alpha=9, seed=3)
    decisions = [pareto.reason("web", str(i), 0.5) for i in range(2000)]
    assert decisions == [pareto.reason("web", str(i), 0.5) for i in range(2000)]  # same seed, same docs kept
    kept = decisions.count(None) / len(decisions)
    assert abs(kept - (1 + 0.5) ** -9) < 0.01  # P(Lomax(9) > 0.5) = 1.5^-9 = 0.026
    assert pareto.reason("web", "x", 1.0) is None  # a perfect score is always kept
    with pytest.raises(ValueError, match="unknown mode"):
        QualityRule(mode="top")


def test_pareto_draws_follow_numpy_pareto() -> None:
    ours = [pareto_draw(0, "web", str(i), 9.0) for i in range(4000)]
    theirs = np.random.default_rng(0).pareto(9.0, 4000)
    assert ks_2samp(ours, theirs).pvalue > 0.001


def test_fold_is_a_stable_hash_of_seed_source_id() -> None:
    folds = [fold_of(0, "web", str(i)) for i in range(2000)]
    assert folds == [fold_of(0, "web", str(i)) for i in range(2000)] and set(folds) == set(range(FOLDS))
    assert abs(folds.count(0) / len(folds) - 0.5) < 0.05
    assert folds != [fold_of(1, "web", str(i)) for i in range(2000)]  # the seed reshuffles the folds
    assert folds != [fold_of(0, "wiki", str(i)) for i in range(2000)]  # so does the source
    assert [p.name for p in fold_model_paths("/x/model.bin")] == ["model.fold0.bin", "model.fold1.bin"]


def test_top_percent_cutoff() -> None:
    assert top_percent_cutoff([0.1, 0.9, 0.5, 0.7], 50) == 0.7
    assert top_percent_cutoff([0.1, 0.9, 0.5], 10) == 0.9  # at least one document
    assert top_percent_cutoff([0.2, 0.2, 0.2], 34) == 0.2


def _dump(rows: list, path: str) -> None:
    Path(path).write_text(json.dumps(sorted(rows)))


def _run_stage(docs: list[Document], params: dict, tmp: Path) -> tuple[list, list]:
    with beam.Pipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(docs) | quality_stage(stage=4, **params)
        (out["kept"] | "K" >> beam.Map(lambda d: (d.source, d.id, d.meta["quality_score"]))
         | "CK" >> beam.combiners.ToList() | "SK" >> beam.Map(_dump, str(tmp / "kept.json")))
        (out[REMOVED] | "R" >> beam.MapTuple(lambda d, reason, stage: (d.source, d.id, reason, stage))
         | "CR" >> beam.combiners.ToList() | "SR" >> beam.Map(_dump, str(tmp / "removed.json")))
    return json.loads((tmp / "kept.json").read_text()), json.loads((tmp / "removed.json").read_text())


def test_stage_keeps_top_percent_per_source(slice_docs: dict, trained: QualityModel, tmp_path: Path) -> None:
    docs = slice_docs["web"][:40] + slice_docs["wiki"][:20]
    kept, removed = _run_stage(docs, {"model": str(trained.path), "mode": "top_percentile", "top_percent": 25,
                                      "max_chars": 2000, "batch_size": 8}, tmp_path)
    per_source = {s: sum(1 for k in kept if k[0] == s) for s in ("web", "wiki")}
    assert per_source["web"] >= 10 and per_source["wiki"] >= 5 and len(kept) + len(removed) == 60
    assert {r[2] for r in removed} == {"quality.below_top_percentile"} and {r[3] for r in removed} == {4}
    scores = dict(zip([d.id for d in docs], trained.score([d.text for d in docs]), strict=True))
    assert min(scores[k[1]] for k in kept if k[0] == "web") >= max(scores[r[1]] for r in removed if r[0] == "web")


def test_stage_threshold_matches_model_scores(slice_docs: dict, trained: QualityModel, tmp_path: Path) -> None:
    docs = slice_docs["web"][:30]
    kept, removed = _run_stage(docs, {"model": str(trained.path), "threshold": 0.3, "max_chars": 2000}, tmp_path)
    expected = {d.id for d, s in zip(docs, trained.score([d.text for d in docs]), strict=True) if s >= 0.3}
    assert {k[1] for k in kept} == expected
    assert all(r[2] == "quality.below_threshold" for r in removed)


def test_missing_model_fails_before_any_work(tmp_path: Path, corpora: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        quality_stage(stage=0, model=str(tmp_path / "none.bin"))
    spec_file = tmp_path / "bad.yaml"
    spec_file.write_text(yaml.safe_dump({
        "name": "bad", "data_root": str(corpora), "output_dir": str(tmp_path / "runs"),
        "sources": {"web": {"paths": ["web.jsonl.gz"], "limit": 5,
                            "filters": [{"quality": {"model": str(tmp_path / "none.bin")}}]}}}))
    with pytest.raises(SpecError, match=r"sources\.web\.filters\.0: quality: model file .* does not exist"):
        jobs.clean(load_spec(spec_file))
    assert not (tmp_path / "runs" / "bad").exists()


def test_spec_trains_then_scores_every_document(tmp_path: Path, corpora: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    tagged = [{"langid": {"tag_only": True}}, {"quality": {"mode": "tag"}}]
    spec_file = tmp_path / "q.yaml"
    spec_file.write_text(yaml.safe_dump({
        "name": "q", "data_root": str(corpora), "output_dir": str(tmp_path / "runs"),
        "sources": {"wiki": {"paths": ["wiki.jsonl.gz"], "limit": 40, "filters": tagged},
                    "web": {"paths": ["web.jsonl.gz"], "limit": 60,
                            "filters": [{"langid": {"tag_only": True}}, {"quality": {"threshold": 0.4}}]}},
        "quality": {"positive": ["wiki"], "negative": ["web"], "max_docs": 40, "epoch": 10, "max_chars": 2000}}))
    layout = jobs.clean(load_spec(spec_file))
    qdir = layout.root / "quality"
    manifest = json.loads((qdir / "manifest.json").read_text())
    assert manifest["counts"]["train"]["__label__hq"] == {"wiki": 32} and manifest["seed"] == 0
    assert json.loads((qdir / "eval.json").read_text())["roc_auc"] > 0.8
    assert (qdir / "scores.png").read_bytes()[:4] == b"\x89PNG"
    import pyarrow.parquet as pq

    kept = pq.read_table(layout.docs).to_pylist()
    removed = pq.read_table(layout.removed).to_pylist()
    assert kept and all(r["lang"] and r["quality_score"] is not None for r in kept)
    assert all(r["reason"] == "quality.below_threshold" and r["quality_score"] < 0.4 for r in removed)
    report = (layout.root / "report.md").read_text()
    assert "## Language and quality" in report and "| wiki | 40 |" in report
    assert bool(removed) == ("web: documents near the quality cut" in report)
    assert main(["quality", "train", str(spec_file)]) == 0  # up to date: reused, not retrained
    assert "ROC AUC" in capsys.readouterr().out
    assert json.loads((qdir / "manifest.json").read_text()) == manifest
    assert trained_max_chars(str(qdir / "model.bin")) == 2000  # an explicit `model:` scores as it was trained
    _check_out_of_fold(qdir, kept + removed, manifest)
    before = _fold_scores(qdir, kept + removed)
    jobs.train_quality(load_spec(spec_file), force=True)  # same seed: the same fold models, the same scores
    assert _fold_scores(qdir, kept + removed) == before


def _fold_scores(qdir: Path, rows: list[dict]) -> list[list[float]]:
    docs = [Document(id=r["id"], text=r["text"], source=r["source"]) for r in rows]
    return [QualityModel(p, 2000).score_docs(docs) for p in fold_model_paths(qdir / "model.bin")]


def _check_out_of_fold(qdir: Path, rows: list[dict], manifest: dict) -> None:
    """Every run document was scored by its fold's model, and no fold model trained on a document of its fold."""
    folds = json.loads((qdir / "folds.json").read_text())
    trained_on = [{tuple(d) for d in f["trained_on"]} for f in folds]
    assert [len(t) for t in trained_on] == [sum(n for c in f["train"].values() for n in c.values())
                                            for f in manifest["cross_fit"]["counts"]]
    assert sum(map(len, trained_on)) == 64 and not trained_on[0] & trained_on[1]  # 32 wiki + 32 web, split
    assert manifest["cross_fit"]["seed"] == 0 and len(manifest["cross_fit"]["eval"]) == FOLDS
    fold_scores = _fold_scores(qdir, rows)
    seen_in_training = 0
    for row, *scores in zip(rows, *fold_scores, strict=True):
        k = fold_of(0, row["source"], row["id"])
        assert row["quality_score"] == scores[k]  # routed to the model of its fold
        assert (row["source"], row["id"]) not in trained_on[k]  # which never saw it
        seen_in_training += (row["source"], row["id"]) in trained_on[1 - k]
    assert seen_in_training == 64  # the training documents themselves were scored out of fold
    evaluation = json.loads((qdir / "eval.json").read_text())["cross_fit"]
    aucs = [f["roc_auc"] for f in evaluation["by_fold"]]
    assert evaluation["mean"]["roc_auc"] == round(sum(aucs) / len(aucs), 4) and min(aucs) > 0.7

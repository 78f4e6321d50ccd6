"""The fastText quality classifier's training and evaluation: documents in, model files and an evaluation out.

Classes are balanced (``max_docs`` each), split with the seed, trained single-threaded and evaluated on the
held-out part. Cross-fitting: besides ``model.bin`` (all training documents; for scoring data outside the run) one
model per fold is trained, ``model.fold<k>.bin`` on the training documents *outside* fold ``k`` (fold = hash of
seed, source, id; see ``filters.quality.fold_of``) and evaluated on the held-out documents of fold ``k``; the
``quality`` stage scores a document of fold ``k`` with it. Output next to the model: ``model.fold*.bin``,
``manifest.json``, ``folds.json`` (the documents each fold model trained on), ``eval.json``, ``scores.png``.
Which documents to train on, and when a model is stale, is the orchestrator's decision (``mixlab.jobs``).
"""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from filters.base import Document
from filters.quality import (
    FOLDS,
    NEGATIVE,
    POSITIVE,
    QualityModel,
    fold_model_paths,
    fold_of,
    normalize,
)
from mixtures.quality_spec import QualitySpec
from mixtures.spec import SpecError

log = logging.getLogger(__name__)

HIST_BINS = 20


# Run in a fresh interpreter: fastText 0.9.2 training inside a process that already trained or loaded models
# can hit "Encountered NaN" at random (reproduced; a fresh process trains the same file fine, identically).
_TRAIN = """
import json, sys
import fasttext
a = json.loads(sys.argv[1])
fasttext.train_supervised(input=a.pop("input"), thread=1, verbose=0, **a).save_model(sys.argv[2])
"""


def train_model(train_file: Path, out: Path, *, seed: int, epoch: int, lr: float, word_ngrams: int, dim: int,
                bucket: int, min_count: int) -> None:
    """Train a supervised fastText model single-threaded (fastText is only deterministic with one thread)."""
    args = {"input": str(train_file), "epoch": epoch, "lr": lr, "wordNgrams": word_ngrams, "dim": dim,
            "bucket": bucket, "minCount": min_count, "seed": seed}
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-c", _TRAIN, json.dumps(args), str(out)], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"fastText training failed ({args}): {done.stderr.strip().splitlines()[-1:]}")


def _pool(docs: dict[str, list[Document]], names: list[str], q: QualitySpec) -> list[tuple[Document, str]]:
    pool = [(d, normalize(d.text, q.max_chars)) for n in names for d in docs[n]]
    return [(d, line) for d, line in pool if line]


def split_classes(docs: dict[str, list[Document]], q: QualitySpec) -> dict[str, dict[str, list]]:
    """Balanced classes (``max_docs`` each at most), shuffled with the seed, split into train and holdout."""
    rng = random.Random(q.seed)
    pos, neg = _pool(docs, q.positive, q), _pool(docs, q.negative, q)
    n = min(len(pos), len(neg), q.max_docs)
    if n < 10:
        raise SpecError(f"quality: too few documents to train ({len(pos)} positive, {len(neg)} negative after "
                        "filtering); add sources or relax their filters")
    n_hold = max(1, round(n * q.holdout))
    out: dict[str, dict[str, list]] = {"train": {}, "holdout": {}}
    for label, pool in ((POSITIVE, pos), (NEGATIVE, neg)):
        rng.shuffle(pool)
        out["holdout"][label], out["train"][label] = pool[:n_hold], pool[n_hold:n]
    return out


def fold_splits(split: dict[str, dict[str, list]], seed: int) -> list[dict[str, dict[str, list]]]:
    """Per fold ``k``: train on the training documents outside fold ``k``, hold out the held-out ones inside it."""
    def keep(pool: list[tuple[Document, str]], k: int, inside: bool) -> list[tuple[Document, str]]:
        return [(d, line) for d, line in pool if (fold_of(seed, d.source, d.id) == k) == inside]

    return [{"train": {label: keep(pool, k, False) for label, pool in split["train"].items()},
             "holdout": {label: keep(pool, k, True) for label, pool in split["holdout"].items()}}
            for k in range(FOLDS)]


def _counts(items: list[tuple[Document, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for doc, _ in items:
        counts[doc.source] = counts.get(doc.source, 0) + 1
    return dict(sorted(counts.items()))


def roc_auc(scores: list[float], labels: list[int]) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    n_pos = sum(labels)
    n_neg = len(labels) - n_pos
    rank_sum = sum(r for r, y in zip(ranks, labels, strict=True) if y)
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def evaluate(model: QualityModel, holdout: dict[str, list[tuple[Document, str]]]) -> dict[str, Any]:
    """Precision, recall, F1 and accuracy at 0.5, ROC AUC, and per-source score histograms on the holdout."""
    items = [(doc, 1 if label == POSITIVE else 0) for label, pool in holdout.items() for doc, _ in pool]
    scores = model.score([doc.text for doc, _ in items])
    labels = [y for _, y in items]
    tp = sum(1 for s, y in zip(scores, labels, strict=True) if s >= 0.5 and y)
    fp = sum(1 for s, y in zip(scores, labels, strict=True) if s >= 0.5 and not y)
    fn = sum(1 for s, y in zip(scores, labels, strict=True) if s < 0.5 and y)
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    by_source: dict[str, list[float]] = {}
    for (doc, _), s in zip(items, scores, strict=True):
        by_source.setdefault(doc.source, []).append(s)
    return {
        "holdout_docs": len(items), "threshold": 0.5, "precision": round(precision, 4), "recall": round(recall, 4),
        "f1": round(2 * precision * recall / max(precision + recall, 1e-12), 4),
        "accuracy": round(sum((s >= 0.5) == bool(y) for s, y in zip(scores, labels, strict=True)) / len(items), 4),
        "roc_auc": round(roc_auc(scores, labels), 4) if 0 < sum(labels) < len(labels) else None,
        "by_source": {src: {"docs": len(v), "mean_score": round(sum(v) / len(v), 4), "histogram": _hist(v)}
                      for src, v in sorted(by_source.items())},
    }


def _hist(scores: list[float]) -> list[int]:
    counts = [0] * HIST_BINS
    for s in scores:
        counts[min(int(s * HIST_BINS), HIST_BINS - 1)] += 1
    return counts


def plot_scores(evaluation: dict[str, Any], path: Path, title: str) -> None:
    """Histogram of held-out scores per source (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    edges = [i / HIST_BINS for i in range(HIST_BINS + 1)]
    for source, st in evaluation["by_source"].items():
        total = max(sum(st["histogram"]), 1)
        ax.stairs([c / total for c in st["histogram"]], edges, label=f"{source} (n={st['docs']})", linewidth=1.5)
    ax.set_xlabel("quality_score = P(__label__hq)")
    ax.set_ylabel("share of held-out documents")
    ax.set_title(f"{title}: ROC AUC {evaluation['roc_auc']:.3f}", fontsize=10, loc="left")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def _write_train_file(path: Path, train: dict[str, list[tuple[Document, str]]], seed: int) -> None:
    lines = [f"{label} {line}\n" for label, pool in sorted(train.items()) for _, line in pool]
    random.Random(seed).shuffle(lines)
    path.write_text("".join(lines), encoding="utf-8")


def _mean_metrics(evaluations: list[dict[str, Any]]) -> dict[str, float | None]:
    """The fold models' mean ROC AUC, precision, recall, F1 and accuracy (folds lacking a metric are skipped)."""
    out: dict[str, float | None] = {}
    for key in ("roc_auc", "precision", "recall", "f1", "accuracy"):
        values = [e[key] for e in evaluations if e[key] is not None]
        out[key] = round(sum(values) / len(values), 4) if values else None
    return out


def _train_one(out: Path, train_docs: dict[str, list[tuple[Document, str]]], q: QualitySpec,
               params: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "train.txt"
        _write_train_file(train_file, train_docs, q.seed)
        log.info("quality: training %s on %d documents (%s)", out.name, sum(map(len, train_docs.values())), params)
        train_model(train_file, out, **params)


def _train_folds(out: Path, split: dict[str, dict[str, list]], q: QualitySpec,
                 params: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train and evaluate the fold models; return their evaluations and per-fold training documents."""
    evaluations, trained_on = [], []
    for k, (path, part) in enumerate(zip(fold_model_paths(out), fold_splits(split, q.seed), strict=True)):
        _train_one(path, part["train"], q, params)
        evaluations.append({"fold": k, "model": str(path),
                            **evaluate(QualityModel(path, q.max_chars), part["holdout"])})
        trained_on.append({"fold": k, "model": str(path), "scores_fold": k,
                           "counts": {p: {label: _counts(pool) for label, pool in c.items()} for p, c in part.items()},
                           "trained_on": sorted([d.source, d.id] for pool in part["train"].values() for d, _ in pool)})
    return evaluations, trained_on


def train_classifier(docs: dict[str, list[Document]], q: QualitySpec, out: Path, title: str,
                     provenance: dict[str, Any]) -> Path:
    """Train and evaluate the classifier and its fold models on ``docs`` (source -> documents) into ``out``.

    ``provenance`` (spec path, fingerprint) is recorded in ``manifest.json``; returns the model path.
    """
    started = time.monotonic()
    split = split_classes(docs, q)
    params = q.model_dump(include={"seed", "epoch", "lr", "word_ngrams", "dim", "bucket", "min_count"})
    _train_one(out, split["train"], q, params)
    folds, trained_on = _train_folds(out, split, q, params)
    cross_fit = {"folds": FOLDS, "seed": q.seed, "models": [f["model"] for f in folds],
                 "rule": "fold = blake2b(seed, source/quality-fold, id) mod folds; model k trains on the training "
                         "documents outside fold k, is evaluated on the held-out documents of fold k, and scores "
                         "every document of fold k in the run",
                 "mean": _mean_metrics(folds)}
    evaluation = {**evaluate(QualityModel(out, q.max_chars), split["holdout"]),
                  "cross_fit": {**cross_fit, "by_fold": folds}}
    plot_scores(evaluation, out.parent / "scores.png", title)
    (out.parent / "eval.json").write_text(json.dumps(evaluation, indent=2) + "\n")
    (out.parent / "folds.json").write_text(json.dumps(trained_on) + "\n")
    manifest = {
        **provenance, "model": str(out), "labels": [POSITIVE, NEGATIVE],
        "positive_sources": q.positive, "negative_sources": q.negative, "seed": q.seed, "max_chars": q.max_chars,
        "hyperparameters": {**params, "thread": 1, "loss": "softmax"}, "holdout_fraction": q.holdout,
        "counts": {part: {label: _counts(pool) for label, pool in classes.items()} for part, classes in split.items()},
        "cross_fit": {**cross_fit, "counts": [f["counts"] for f in trained_on],
                      "eval": [{k: f[k] for k in ("fold", "roc_auc", "precision", "recall")} for f in folds]},
        "train_seconds": round(time.monotonic() - started, 2),
    }
    (out.parent / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("quality: %s trained; holdout ROC AUC %.3f, precision %.3f, recall %.3f; fold models (out of fold): "
             "mean ROC AUC %s", out, evaluation["roc_auc"], evaluation["precision"], evaluation["recall"],
             _mean_metrics(folds)["roc_auc"])
    return out

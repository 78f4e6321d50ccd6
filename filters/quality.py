"""A fastText quality classifier (DCLM-style: reference text vs raw web) and the rules that keep by its score.

``quality_score`` is the model's probability of ``__label__hq``. Keep rules:
- ``threshold``: keep when ``score >= threshold`` (reason ``quality.below_threshold``);
- ``top_percentile``: keep the best ``top_percent`` % of each source (``quality.below_top_percentile``);
  the per-source cutoff needs the whole corpus, so the rule runs as a corpus stage (pipelines/quality.py);
- ``pareto``: GPT-3's sampling, keep when ``pareto(alpha) > 1 - score`` (``quality.pareto_rejected``), the
  Pareto draw derived from a hash of (seed, source, id) so reruns keep the same documents;
- ``tag``: score only.

Cross-fitting: a spec-trained classifier comes with ``FOLDS`` fold models; a document's fold is a hash of
(seed, source, id) mod ``FOLDS``, model ``k`` is trained only on documents outside fold ``k`` and scores exactly
the documents of fold ``k`` (:class:`CrossFitModel`), so no document is scored by a model that saw it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, get_args

from pydantic import Field

from filters.base import Document
from filters.hashing import keyed_hash, keyed_unit
from filters.langid import ModelError, load_fasttext, predict_lines
from filters.params import StrictModel, internal, params_model

POSITIVE = "__label__hq"
NEGATIVE = "__label__lq"
Mode = Literal["threshold", "top_percentile", "pareto", "tag"]
MODES: tuple[str, ...] = get_args(Mode)
FOLDS = 2
_PUNCT = re.compile(r"([.!?,;:()\[\]{}\"'`])")


def normalize(text: str, max_chars: int) -> str:
    """The one line fastText sees: first ``max_chars`` characters, lowercased, punctuation split off.

    ``__label__`` inside a document would read as a label in a training line, so it is defused.
    """
    return " ".join(_PUNCT.sub(r" \1 ", text[:max_chars].lower().replace("__label__", "_label_")).split())


class QualityModel:
    """A trained quality classifier: ``score(texts)`` is P(``__label__hq``) per text."""

    def __init__(self, path: str | Path, max_chars: int = 5_000) -> None:
        self.path, self.max_chars = Path(path), max_chars
        self.model = load_fasttext(self.path, "quality")
        labels = set(self.model.get_labels())
        if POSITIVE not in labels:
            raise ModelError(f"quality: {self.path} has labels {sorted(labels)[:5]}, not {POSITIVE}; "
                             "train one with `mixlab quality train SPEC`")

    def score(self, texts: Sequence[str]) -> list[float]:
        """Batched prediction; every label's probability is returned, so P(hq) is read off directly."""
        if not texts:
            return []
        labels, probs = predict_lines(self.model, [normalize(t, self.max_chars) for t in texts], k=-1)
        return [min(float(dict(zip(lab, p, strict=True)).get(POSITIVE, 0.0)), 1.0)
                for lab, p in zip(labels, probs, strict=True)]

    def score_docs(self, docs: Sequence[Document]) -> list[float]:
        """Scores of documents (one model for all of them: in-sample for the documents it was trained on)."""
        return self.score([d.text for d in docs])


def fold_of(seed: int, source: str, doc_id: str) -> int:
    """A document's cross-fitting fold: a hash of (seed, source, id) mod ``FOLDS``, independent of other docs."""
    return keyed_hash(seed, f"{source}/quality-fold", doc_id) % FOLDS


def fold_model_paths(model: str | Path) -> list[Path]:
    """The fold models trained next to ``model``: ``model.fold0.bin``, ``model.fold1.bin``."""
    path = Path(model)
    return [path.with_name(f"{path.stem}.fold{k}{path.suffix}") for k in range(FOLDS)]


class CrossFitModel:
    """Out-of-fold scoring: a document of fold ``k`` is scored by model ``k``, which never saw fold ``k``."""

    def __init__(self, paths: Sequence[str | Path], seed: int, max_chars: int = 5_000) -> None:
        if len(paths) != FOLDS:
            raise ModelError(f"quality: cross-fitting needs {FOLDS} fold models, got {len(paths)}")
        self.models, self.seed = [QualityModel(p, max_chars) for p in paths], seed

    def score_docs(self, docs: Sequence[Document]) -> list[float]:
        """Each document's score from the model of its fold (one batched predict per fold)."""
        folds = [fold_of(self.seed, d.source, d.id) for d in docs]
        scores = [0.0] * len(docs)
        for k, model in enumerate(self.models):
            index = [i for i, f in enumerate(folds) if f == k]
            for i, score in zip(index, model.score([docs[i].text for i in index]), strict=True):
                scores[i] = score
        return scores


def pareto_draw(seed: int, source: str, doc_id: str, alpha: float) -> float:
    """A Lomax(alpha) draw (what ``numpy.random.pareto`` samples) by inverse CDF of a hashed uniform."""
    return keyed_unit(seed, f"{source}/pareto", doc_id) ** (-1.0 / alpha) - 1.0


@dataclass(frozen=True)
class QualityRule:
    """Which documents a quality step keeps, from the parameters of a spec's ``quality`` step."""

    model: Annotated[str | None, Field(description=(
        "fastText model with `__label__hq`; default the spec's trained model, else `$MIXLAB_QUALITY_MODEL`"))] = None
    mode: Annotated[Mode, Field(description=(
        "`threshold`, `top_percentile` (per source), `pareto` (GPT-3 sampling) or `tag` (score only)"))] = "threshold"
    threshold: Annotated[float, Field(ge=0, le=1, description=(
        "`threshold`: keep `quality_score >= threshold`, else `quality.below_threshold`"))] = 0.5
    top_percent: Annotated[float, Field(gt=0, le=100, description=(
        "`top_percentile`: keep the best N % of each source (ties kept), else `quality.below_top_percentile`"))] = 50.0
    alpha: Annotated[float, Field(gt=0, description=(
        "`pareto`: keep when `pareto(alpha) > 1 - score`, else `quality.pareto_rejected`"))] = 9.0
    seed: Annotated[int, Field(description="`pareto`: seed of the per-document draw")] = 0
    max_chars: Annotated[int, Field(gt=0, description=(
        "characters scored; must match training (default: the model's `manifest.json`, else 5000)"))] = 5_000
    batch_size: Annotated[int, Field(gt=0, description="most documents per fastText predict call")] = 256
    trained: Annotated[str | None, internal(
        "the training fingerprint (`mixlab mixture`), so a retrained classifier re-cleans")] = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"quality: unknown mode {self.mode!r}; expected one of {', '.join(MODES)}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"quality: threshold must be in [0, 1], got {self.threshold}")
        if not 0.0 < self.top_percent <= 100.0:
            raise ValueError(f"quality: top_percent must be in (0, 100], got {self.top_percent}")
        if self.alpha <= 0 or self.batch_size <= 0 or self.max_chars <= 0:
            raise ValueError("quality: alpha, batch_size and max_chars must be positive")

    def reason(self, source: str, doc_id: str, score: float, cutoff: float | None = None) -> str | None:
        """Why the document is removed, or None to keep it (``cutoff``: the source's top-percentile score)."""
        if self.mode == "threshold" and score < self.threshold:
            return "quality.below_threshold"
        if self.mode == "top_percentile" and cutoff is not None and score < cutoff:
            return "quality.below_top_percentile"
        if self.mode == "pareto" and pareto_draw(self.seed, source, doc_id, self.alpha) <= 1.0 - score:
            return "quality.pareto_rejected"
        return None


if TYPE_CHECKING:  # generated at run time from QualityRule's fields; type checkers see the base class
    QualityParams = StrictModel
else:
    QualityParams = params_model(QualityRule, "QualityParams", doc=(
        "Score every document with the fastText quality classifier, then keep documents by the rule."))


def top_percent_cutoff(scores: Sequence[float], top_percent: float) -> float:
    """The lowest score among the best ``top_percent`` % (at least one document); ties at it are kept."""
    ordered = sorted(scores, reverse=True)
    k = max(1, -(-len(ordered) * top_percent // 100))
    return ordered[int(k) - 1]

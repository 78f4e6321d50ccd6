"""The ``quality:`` section of a spec: how ``mixlab quality train`` builds the fastText quality classifier.

Example::

    quality:
      positive: [wiki, papers, instruct]   # reference-quality sources (label __label__hq)
      negative: [web]                       # raw web (label __label__lq)
      max_docs: 2000                        # per class, after balancing
      holdout: 0.2
      seed: 0
      epoch: 25
      lr: 0.5
      word_ngrams: 2
      dim: 64
      # model: path/to/model.bin           # default runs/<name>/quality/model.bin

A source's ``quality`` filter step without a ``model`` parameter uses this model; when the file is missing,
``mixlab mixture`` trains it first, with two cross-fitted fold models (``model.fold0.bin``, ``model.fold1.bin``)
so every document of the run is scored by a model that never saw it (see ``docs/classifiers.md``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationInfo, model_validator

from filters.params import StrictModel


class QualitySpec(StrictModel):
    """Training data (positive and negative sources), balancing, split and fastText hyper-parameters."""

    positive: list[str] = Field(min_length=1, description="sources whose documents are 'good' (__label__hq)")
    negative: list[str] = Field(min_length=1, description="raw sources to score against (__label__lq)")
    max_docs: int = Field(2000, gt=0, description="documents per class after balancing")
    holdout: float = Field(0.2, gt=0, lt=1, description="fraction of each class held out for evaluation")
    seed: int = 0
    epoch: int = Field(25, gt=0, description="a document is one example, so small corpora need many epochs")
    lr: float = Field(0.5, gt=0)
    word_ngrams: int = Field(2, ge=1, le=5)
    dim: int = Field(64, ge=2)
    bucket: int = Field(100_000, ge=1000, description="hash buckets for n-grams (model size ~ bucket x dim)")
    min_count: int = Field(2, ge=1)
    max_chars: int = Field(5_000, gt=0, description="characters of a document used to train and score")
    model: str | None = Field(None, description="model path (relative: to the current directory, like output_dir); "
                                            "default <run dir>/quality/model.bin")

    @model_validator(mode="after")
    def _disjoint(self) -> QualitySpec:
        both = sorted(set(self.positive) & set(self.negative))
        if both:
            raise ValueError(f"source(s) {', '.join(both)} cannot be both positive and negative")
        return self


def _known_sources(value: QualitySpec | None, info: ValidationInfo) -> QualitySpec | None:
    sources: dict[str, Any] = info.data.get("sources") or {}
    if value is not None and sources:
        unknown = [n for n in (*value.positive, *value.negative) if n not in sources]
        if unknown:
            raise ValueError(f"unknown source(s) {', '.join(unknown)}; sources: {', '.join(sources)}")
    return value


QualityField = Annotated[QualitySpec | None, AfterValidator(_known_sources)]

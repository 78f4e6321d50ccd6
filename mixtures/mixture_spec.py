"""The ``mixture:`` section of a spec: tokenizer, token budget, per-source weights or targets, packing.

Example::

    mixture:
      tokenizer: {name: bpe, vocab_size: 8192}   # or name: EleutherAI/gpt-neox-20b, or a tokenizer.json path
      budget_tokens: 2_000_000
      max_seq_len: 512
      epoch_cap: 4                # how often a source may repeat (per-source override: sources.<s>.epoch_cap)
      on_shortfall: error         # or redistribute
      prefer_quality: false       # downsample by quality_score instead of a seeded uniform sample
      sources:
        web:  {weight: 0.6}
        wiki: {weight: 0.4, epoch_cap: 8}
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from filters.params import StrictModel

DEFAULT_EPOCH_CAP = 4.0  # Muennighoff et al. 2023: up to ~4 epochs of repeated data cost little


class TokenizerSpec(StrictModel):
    """``bpe``: a byte-level BPE trained on the run's cleaned data; else an HF id or a local file."""

    name: str = "bpe"
    vocab_size: int = Field(8192, ge=512, le=1 << 20, description="bpe only: vocabulary size")
    sample_chars: int = Field(4_000_000, gt=0, description="bpe only: training sample size")
    eos_token: str = "<|endoftext|>"


class SourceMix(StrictModel):
    """One source's share: a relative ``weight`` or an absolute ``tokens`` target; an optional epoch cap."""

    weight: float | None = Field(None, ge=0)
    tokens: int | None = Field(None, ge=0)
    epoch_cap: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_of(self) -> SourceMix:
        if (self.weight is None) == (self.tokens is None):
            raise ValueError("give exactly one of weight or tokens")
        return self


class ValidationSpec(StrictModel):
    """Held-out documents per source (a fraction, at least ``min_docs``); never trained on."""

    fraction: float = Field(0.04, ge=0, lt=0.5)
    min_docs: int = Field(1, ge=1)
    max_docs: int = Field(500, ge=1)


class MixtureSpec(StrictModel):
    """How many tokens of each source go into the packed MDS streams, and how they are sampled."""

    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec)
    budget_tokens: int | None = Field(None, gt=0, description="training tokens; default: sum of targets")
    max_seq_len: int = Field(512, ge=8)
    epoch_cap: float = Field(DEFAULT_EPOCH_CAP, gt=0)
    on_shortfall: Literal["error", "redistribute"] = "error"
    prefer_quality: bool = False
    seed: int | None = Field(None, description="sampling seed; the spec's top-level seed if omitted")
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    shard_size: str = Field("32mb", description="MDS shard size limit (streaming's size_limit)")
    count_removed: bool = Field(True, description="also count tokens of removed documents for the catalogue")
    sources: dict[str, SourceMix] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> MixtureSpec:
        by_weight = [s.weight is not None for s in self.sources.values()]
        if any(by_weight) and not all(by_weight):
            raise ValueError("sources: use weight for every source or tokens for every source, not both")
        if all(by_weight):
            if sum(s.weight or 0 for s in self.sources.values()) <= 0:
                raise ValueError("sources: all weights are zero; at least one source needs a positive weight")
            if self.budget_tokens is None:
                raise ValueError("budget_tokens is required when sources are given by weight")
        else:
            total = sum(s.tokens or 0 for s in self.sources.values())
            if total <= 0:
                raise ValueError("sources: all token targets are zero")
            if self.budget_tokens is not None and self.budget_tokens != total:
                raise ValueError(f"budget_tokens {self.budget_tokens} is not the sum of targets {total}")
        return self

    def cap(self, source: str) -> float:
        """The epoch cap of a source: its own, else the section's."""
        own = self.sources[source].epoch_cap
        return self.epoch_cap if own is None else own

    @property
    def total_tokens(self) -> int:
        """The training budget: ``budget_tokens`` or the sum of per-source targets."""
        return self.budget_tokens or sum(s.tokens or 0 for s in self.sources.values())

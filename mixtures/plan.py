"""The mixture plan: how many tokens of each source, in how many epochs, and which documents.

Pure math, no I/O. Targets are apportioned in whole packed sequences with the largest-remainder (Hamilton)
method, so per-source targets sum exactly to the budget (rounded down to a multiple of ``max_seq_len``) and
each stream's sample count is its token count divided by ``max_seq_len``. A source may repeat at most
``epoch_cap`` times; a target beyond that is an error naming the source, or (``redistribute``) the excess
goes to the other sources in proportion to their weights. Upsampling repeats whole epochs, then a partial one.

At corpus scale a source is written by many workers, one per *part* (a row-group range of its cleaned Parquet):
:func:`part_weights` says how many of the source's target tokens each part should write (its share of the full
epochs and of the partial epoch: by its tokens, or with ``prefer_quality`` by its tokens above the source's
quality threshold, found from the parts' quality histograms), :func:`apportion_parts` rounds that to whole
sequences (Hamilton again, so the quotas sum exactly to the target), and :func:`part_schedule` decides one part's
epochs and partial epoch from its own quota with keyed hashes of document ids, so every part's stream holds
exactly its quota and the source's streams together exactly the planned tokens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from filters.hashing import keyed_digest, keyed_hash


class PlanError(ValueError):
    """A mixture that cannot be built as asked (names the source and its available tokens)."""


@dataclass(frozen=True)
class SourcePlan:
    """One source's line of the plan; tokens count each document's EOS."""

    source: str
    weight: float
    available_docs: int
    available_tokens: int
    epoch_cap: float
    target_tokens: int
    full_epochs: int
    partial_tokens: int

    @property
    def epochs(self) -> float:
        """How many times the source's tokens are seen (fractional)."""
        return self.target_tokens / self.available_tokens if self.available_tokens else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with the derived epoch count."""
        return {**asdict(self), "epochs": round(self.epochs, 6)}


def hamilton(total: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Largest-remainder apportionment of ``total`` units by ``weights``; ties go to the earlier name."""
    norm = math.fsum(weights.values())
    if total < 0 or norm <= 0 or any(w < 0 for w in weights.values()):
        raise PlanError(f"cannot apportion {total} by weights {dict(weights)}")
    quotas = {k: total * w / norm for k, w in weights.items()}
    seats = {k: math.floor(q) for k, q in quotas.items()}
    left = total - sum(seats.values())
    for k in sorted(quotas, key=lambda k: (-(quotas[k] - seats[k]), k))[:left]:
        seats[k] += 1
    return seats


def apportion_with_caps(total: int, weights: Mapping[str, float], caps: Mapping[str, int],
                        redistribute: bool) -> dict[str, int]:
    """Hamilton apportionment where no name gets more than its cap; the excess moves on or raises."""
    fixed: dict[str, int] = {}
    while True:
        free = {k: w for k, w in weights.items() if k not in fixed and w > 0}
        left = total - sum(fixed.values())
        if left and not free:
            raise PlanError(f"all capped: {sum(fixed.values())}")
        seats = hamilton(left, free) if free else {}
        over = [k for k in sorted(seats) if seats[k] > caps[k]]
        if not over:
            return {k: fixed.get(k, seats.get(k, 0)) for k in weights}
        if not redistribute:
            raise PlanError(f"over the epoch cap: {over[0]}")
        fixed.update({k: caps[k] for k in over})


def make_plan(weights: Mapping[str, float], available: Mapping[str, tuple[int, int]],
              caps: Mapping[str, float], budget_tokens: int, seq_len: int,
              redistribute: bool) -> list[SourcePlan]:
    """Per-source targets (multiples of ``seq_len``); ``available`` maps source -> (docs, tokens)."""
    total = budget_tokens // seq_len
    if total == 0:
        raise PlanError(f"budget_tokens {budget_tokens} is less than one sequence (max_seq_len {seq_len})")
    for source, w in weights.items():
        if w > 0 and available[source][1] == 0:
            raise PlanError(f"source {source!r} has weight {w} but no training data left after filtering "
                            f"({available[source][0]} documents, 0 tokens)")
    max_seqs = {s: int(caps[s] * available[s][1] // seq_len) for s in weights}
    try:
        seqs = apportion_with_caps(total, weights, max_seqs, redistribute)
    except PlanError as err:
        raise PlanError(_shortfall_message(str(err), total, weights, available, caps, seq_len)) from None
    plans = []
    for s in weights:
        docs, tokens = available[s]
        target = seqs[s] * seq_len
        full = target // tokens if tokens else 0
        plans.append(SourcePlan(s, float(weights[s]), docs, tokens, float(caps[s]), target, full,
                                target - full * tokens))
    return plans


def _shortfall_message(err: str, total: int, weights: Mapping[str, float],
                       available: Mapping[str, tuple[int, int]], caps: Mapping[str, float],
                       seq_len: int) -> str:
    if err.startswith("all capped: "):
        allowed = int(err.removeprefix("all capped: ")) * seq_len
        caps_text = ", ".join(f"{s}: {caps[s]:g} x {available[s][1]:,}" for s in weights)
        return (f"the budget of {total * seq_len:,} tokens exceeds the {allowed:,} tokens all sources allow "
                f"under their epoch caps ({caps_text})")
    if not err.startswith("over the epoch cap: "):
        return err
    source = err.removeprefix("over the epoch cap: ")
    want = hamilton(total, {k: w for k, w in weights.items() if w > 0})[source] * seq_len
    tokens = available[source][1]
    return (f"source {source!r}: target {want:,} tokens needs {want / tokens:.2f} epochs of its {tokens:,} "
            f"available tokens ({available[source][0]:,} documents), over its epoch cap {caps[source]:g}; "
            f"lower its weight, raise epoch_cap, or set on_shortfall: redistribute")


def seeded_rank(ids: Sequence[str], seed: int, salt: str) -> np.ndarray:
    """A deterministic pseudo-random order of ``ids`` from the seed (stable across runs and machines)."""
    keys = [keyed_digest(seed, salt, i) for i in ids]
    return np.array(sorted(range(len(ids)), key=keys.__getitem__), dtype=np.int64)


def rng_for(seed: int, salt: str) -> np.random.Generator:
    """A numpy generator seeded from the seed and a label (one independent stream per purpose)."""
    return np.random.default_rng(int.from_bytes(keyed_digest(seed, salt), "little"))  # little: streams since v0.1


def partial_order(ids: Sequence[str], seed: int, source: str,
                  quality: Sequence[float | None] | None) -> np.ndarray:
    """Order in which a partial epoch takes documents: best ``quality`` first (seeded ties), else seeded."""
    order = seeded_rank(ids, seed, f"{source}/partial")
    if quality is None:
        return order
    score = np.array([-math.inf if q is None else q for q in quality], dtype=np.float64)
    return order[np.argsort(-score[order], kind="stable")]


def take_tokens(order: np.ndarray, lengths: np.ndarray, budget: int) -> np.ndarray:
    """The prefix of ``order`` whose token lengths first reach ``budget`` (the last one may be cut)."""
    if budget <= 0:
        return order[:0]
    cum = np.cumsum(lengths[order])
    return order[: int(np.searchsorted(cum, budget)) + 1]


def epoch_schedule(plan: SourcePlan, ids: Sequence[str], lengths: np.ndarray, seed: int,
                   quality: Sequence[float | None] | None) -> list[np.ndarray]:
    """Document indices per epoch: ``full_epochs`` seeded permutations of all, then the partial epoch."""
    epochs = [rng_for(seed, f"{plan.source}/epoch{e}").permutation(len(ids)) for e in range(plan.full_epochs)]
    if plan.partial_tokens:
        # kept in selection order, so exactly these documents are written (only the last may be cut)
        epochs.append(take_tokens(partial_order(ids, seed, plan.source, quality), lengths, plan.partial_tokens))
    return epochs


QUALITY_BINS = 1024  # quality histograms: bins of 1/1024 over [0, 1], plus bin 0 for documents without a score


def quality_bins(scores: Sequence[float | None]) -> np.ndarray:
    """Each score's histogram bin: 0 without a score (taken last), else ``1 + floor(score * 1024)`` (clipped)."""
    q = np.array([np.nan if x is None else x for x in scores], dtype=np.float64)
    bins = 1 + np.clip(np.floor(np.nan_to_num(q, nan=0.0) * QUALITY_BINS), 0, QUALITY_BINS - 1).astype(np.int64)
    bins[np.isnan(q)] = 0
    return bins


def part_weights(full_epochs: int, partial_tokens: int, part_tokens: Sequence[int],
                 part_hists: Sequence[np.ndarray] | None = None) -> list[float]:
    """The tokens each part should write of a source's ``full_epochs * A + partial_tokens`` (fractional).

    Every part repeats its own tokens ``full_epochs`` times; the partial epoch is shared by tokens, or, given each
    part's histogram of training tokens by quality bin (:func:`quality_bins`), by the tokens each part holds above
    the source's threshold bin plus its share of that bin: so quality-first parts together take about the source's
    best documents, not each part its own best fraction.
    """
    total = sum(part_tokens)
    if not total:
        return [0.0] * len(part_tokens)
    if part_hists is None or not partial_tokens:
        return [full_epochs * a + partial_tokens * a / total for a in part_tokens]
    hist = np.sum(part_hists, axis=0)
    from_top = np.cumsum(hist[::-1])
    j = min(int(np.searchsorted(from_top, partial_tokens)), len(hist) - 1)
    cut = len(hist) - 1 - j  # the threshold bin: every bin above it is taken whole
    above = int(from_top[j - 1]) if j else 0
    frac = (partial_tokens - above) / hist[cut] if hist[cut] else 0.0
    return [full_epochs * a + float(h[cut + 1:].sum()) + float(h[cut]) * frac for a, h in zip(part_tokens, part_hists,
                                                                                              strict=True)]


def apportion_parts(target_tokens: int, seq_len: int, part_tokens: Sequence[float]) -> list[int]:
    """A source's target split over its parts in whole sequences, by weights (Hamilton): their training tokens,
    or :func:`part_weights`.

    Quotas are multiples of ``seq_len`` summing exactly to ``target_tokens`` (itself a multiple); a part of
    weight 0 gets 0. Ties go to the earlier part.
    """
    if target_tokens % seq_len:
        raise PlanError(f"target {target_tokens} is not a whole number of {seq_len}-token sequences")
    weights = {f"{i:09d}": float(t) for i, t in enumerate(part_tokens) if t > 0}
    if not target_tokens or not weights:
        if target_tokens:
            raise PlanError(f"target {target_tokens} tokens but no part holds training tokens")
        return [0] * len(part_tokens)
    seats = hamilton(target_tokens // seq_len, weights)
    return [seats.get(f"{i:09d}", 0) * seq_len for i in range(len(part_tokens))]


def epoch_rank(ids: Sequence[str], seed: int, source: str, epoch: int) -> np.ndarray:
    """A full epoch's order of a part's documents: by a keyed hash of each id (independent of the partition)."""
    keys = np.fromiter((keyed_hash(seed, f"{source}/epoch{epoch}", i) for i in ids), dtype=np.uint64, count=len(ids))
    return np.argsort(keys, kind="stable")


def part_schedule(source: str, ids: Sequence[str], lengths: np.ndarray, quota: int, seed: int,
                  quality: Sequence[float | None] | None) -> list[np.ndarray]:
    """Document indices per epoch of one part for ``quota`` tokens: ``quota // A`` full epochs (each ordered by a
    keyed hash of the ids), then a partial epoch of ``quota mod A`` tokens taken by :func:`partial_order`
    (best ``quality`` first, seeded ties; else seeded), the last document possibly cut. ``A = lengths.sum()``."""
    available = int(lengths.sum())
    if quota <= 0:
        return []
    if available <= 0:
        raise PlanError(f"{source}: a part with quota {quota} has no training tokens")
    full, partial = divmod(quota, available)
    epochs = [epoch_rank(ids, seed, source, e) for e in range(full)]
    if partial:
        epochs.append(take_tokens(partial_order(ids, seed, source, quality), lengths, partial))
    return epochs

"""The mixture plan's math with hand-computed numbers: Hamilton apportionment, epoch caps, shortfalls."""

from __future__ import annotations

import numpy as np
import pytest

from mixtures.plan import (
    PlanError,
    apportion_parts,
    epoch_schedule,
    hamilton,
    make_plan,
    part_schedule,
    partial_order,
    take_tokens,
)


def test_hamilton_gives_remainders_to_largest_fractions() -> None:
    # weights 5:3:2 over 7 seats: quotas 3.5, 2.1, 1.4 -> floors 3, 2, 1; the one left goes to 0.5
    assert hamilton(7, {"a": 5, "b": 3, "c": 2}) == {"a": 4, "b": 2, "c": 1}


def test_hamilton_sums_exactly_and_breaks_ties_by_name() -> None:
    seats = hamilton(10, {"x": 1, "y": 1, "z": 1})
    assert seats == {"x": 4, "y": 3, "z": 3}
    assert sum(hamilton(1_000_003, {"a": 0.1, "b": 0.2, "c": 0.7}).values()) == 1_000_003


def test_plan_targets_are_whole_sequences_summing_to_budget() -> None:
    plans = make_plan({"web": 0.5, "wiki": 0.3, "code": 0.2}, {"web": (10, 10_000), "wiki": (5, 5_000),
                      "code": (4, 4_000)}, {"web": 4, "wiki": 4, "code": 4}, 10_050, 100, redistribute=False)
    by = {p.source: p for p in plans}
    # 100 sequences of 100 tokens: 50/30/20
    assert [by[s].target_tokens for s in ("web", "wiki", "code")] == [5_000, 3_000, 2_000]
    assert by["web"].full_epochs == 0 and by["web"].partial_tokens == 5_000


def test_upsampling_counts_whole_epochs_then_partial() -> None:
    (plan,) = make_plan({"wiki": 1.0}, {"wiki": (3, 300)}, {"wiki": 4}, 1_000, 10, redistribute=False)
    assert (plan.target_tokens, plan.full_epochs, plan.partial_tokens) == (1_000, 3, 100)
    assert plan.epochs == pytest.approx(1_000 / 300)


def test_over_cap_error_names_source_and_available_tokens() -> None:
    with pytest.raises(PlanError, match=r"'wiki'.*target 800 tokens.*8\.00 epochs.*100 available.*cap 4"):
        make_plan({"web": 0.2, "wiki": 0.8}, {"web": (9, 10_000), "wiki": (2, 100)}, {"web": 4, "wiki": 4},
                  1_000, 10, redistribute=False)


def test_redistribute_moves_excess_to_other_sources_by_weight() -> None:
    plans = make_plan({"web": 0.2, "code": 0.2, "wiki": 0.6}, {"web": (9, 10_000), "code": (9, 10_000),
                      "wiki": (2, 100)}, {"web": 4, "code": 4, "wiki": 4}, 1_000, 10, redistribute=True)
    by = {p.source: p.target_tokens for p in plans}
    # wiki capped at 4 * 100 = 400 tokens = 40 sequences; the other 60 split 1:1
    assert by == {"web": 300, "code": 300, "wiki": 400}


def test_redistribute_fails_when_all_sources_are_capped() -> None:
    with pytest.raises(PlanError, match=r"budget of 1,000 tokens exceeds the 800 tokens.*a: 4 x 100"):
        make_plan({"a": 1, "b": 1}, {"a": (1, 100), "b": (1, 100)}, {"a": 4, "b": 4}, 1_000, 10,
                  redistribute=True)


def test_positive_weight_without_data_is_an_error() -> None:
    with pytest.raises(PlanError, match=r"'code' has weight 0\.5 but no training data"):
        make_plan({"web": 0.5, "code": 0.5}, {"web": (5, 500), "code": (0, 0)}, {"web": 4, "code": 4},
                  100, 10, redistribute=False)


def test_zero_weight_source_gets_nothing() -> None:
    plans = make_plan({"web": 1.0, "code": 0.0}, {"web": (5, 500), "code": (0, 0)}, {"web": 4, "code": 4},
                      100, 10, redistribute=False)
    assert [p.target_tokens for p in plans] == [100, 0]


def test_take_tokens_stops_at_first_prefix_reaching_budget() -> None:
    lengths = np.array([5, 7, 3, 9])
    assert take_tokens(np.array([2, 0, 3, 1]), lengths, 8).tolist() == [2, 0]
    assert take_tokens(np.array([2, 0, 3, 1]), lengths, 9).tolist() == [2, 0, 3]


def test_partial_order_prefers_quality_and_is_seeded_otherwise() -> None:
    ids = [f"d{i}" for i in range(50)]
    quality = [i / 50 for i in range(50)]
    assert partial_order(ids, 0, "web", quality)[:3].tolist() == [49, 48, 47]
    a, b = partial_order(ids, 0, "web", None), partial_order(ids, 1, "web", None)
    assert sorted(a.tolist()) == list(range(50)) and a.tolist() != b.tolist()
    assert a.tolist() == partial_order(ids, 0, "web", None).tolist()


def test_epoch_schedule_repeats_every_document_per_full_epoch() -> None:
    (plan,) = make_plan({"s": 1.0}, {"s": (4, 40)}, {"s": 4}, 100, 10, redistribute=False)
    epochs = epoch_schedule(plan, ["a", "b", "c", "d"], np.array([10, 10, 10, 10]), 0, None)
    assert [sorted(e.tolist()) for e in epochs[:2]] == [[0, 1, 2, 3]] * 2
    assert len(epochs) == 3 and len(epochs[2]) == 2


def test_a_target_is_split_over_parts_in_whole_sequences_by_their_tokens() -> None:
    # 10 sequences of 100 over parts of 500, 300, 0 and 200 training tokens: quotas 5, 3, 0, 2
    assert apportion_parts(1_000, 100, [500, 300, 0, 200]) == [500, 300, 0, 200]
    # 7 sequences: quotas 3.5, 2.1, 1.4 -> 3, 2, 1 and the one left to the largest remainder (the first part)
    assert apportion_parts(700, 100, [50, 30, 20]) == [400, 200, 100]
    assert sum(apportion_parts(1_000_000, 128 // 2, [7, 11, 13, 17])) == 1_000_000
    assert apportion_parts(0, 10, [5, 5]) == [0, 0]
    with pytest.raises(PlanError, match="whole number"):
        apportion_parts(105, 10, [5, 5])


def test_a_part_repeats_whole_epochs_then_takes_its_partial_quota() -> None:
    ids = [f"d{i}" for i in range(4)]
    lengths = np.array([10, 10, 10, 10])
    epochs = part_schedule("s", ids, lengths, 100, 0, None)  # 2.5 epochs of the part
    assert [sorted(e.tolist()) for e in epochs[:2]] == [[0, 1, 2, 3]] * 2 and len(epochs[2]) == 2
    # the order of a full epoch depends on the ids only: the same documents in another part order alike
    again = part_schedule("s", ids[::-1], lengths, 80, 0, None)
    assert [ids[::-1][i] for i in again[0]] == [ids[i] for i in epochs[0]]
    quality = [0.1, 0.9, None, 0.5]
    best = part_schedule("s", ids, lengths, 15, 0, quality)
    assert best[0].tolist() == [1, 3]  # quality first: 10 + 5 tokens (the second one cut)
    assert part_schedule("s", ids, lengths, 0, 0, None) == []
    with pytest.raises(PlanError, match="no training tokens"):
        part_schedule("s", [], np.zeros(0, dtype=np.int64), 10, 0, None)


def test_quality_weights_share_the_partial_epoch_by_tokens_above_the_threshold() -> None:
    from mixtures.plan import QUALITY_BINS, part_weights, quality_bins

    assert quality_bins([None, 0.0, 0.5, 1.0, 1.2]).tolist() == [0, 1, 1 + QUALITY_BINS // 2, QUALITY_BINS,
                                                                 QUALITY_BINS]
    high, low = np.zeros(QUALITY_BINS + 1), np.zeros(QUALITY_BINS + 1)
    high[900], low[100], low[900] = 600, 300, 100  # part 0: 600 good tokens; part 1: 100 good, 300 poor
    weights = part_weights(1, 500, [600, 400], [high, low])
    # 500 of the 700 tokens in bin 900 are taken, shared 6:1; on top one full epoch of each part
    assert weights == pytest.approx([600 + 500 * 6 / 7, 400 + 500 / 7])
    assert part_weights(1, 500, [600, 400]) == pytest.approx([900, 600])  # without quality: by tokens
    assert sum(apportion_parts(1_500, 10, weights)) == 1_500

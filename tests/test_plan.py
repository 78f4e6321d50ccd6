"""The mixture plan's math with hand-computed numbers: Hamilton apportionment, epoch caps, shortfalls."""

from __future__ import annotations

import numpy as np
import pytest

from mixtures.plan import PlanError, epoch_schedule, hamilton, make_plan, partial_order, take_tokens


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

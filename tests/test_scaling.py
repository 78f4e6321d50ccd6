"""The data-constrained scaling law (Muennighoff et al. 2023) against hand-computed numbers."""

from __future__ import annotations

import math

import pytest

from mixtures import scaling


def test_one_epoch_is_worth_its_tokens() -> None:
    assert scaling.effective_data(1e9, 1.0) == pytest.approx(1e9)
    assert scaling.effective_data(1e9, 0.5) == pytest.approx(5e8)


def test_second_epoch_is_worth_slightly_less_than_fresh_data() -> None:
    # R_D = 1: D' = U + U * 15.387756 * (1 - exp(-1/15.387756)) = U * 1.9682 (by hand)
    expected = 1 + 15.387756 * (1 - math.exp(-1 / 15.387756))
    assert expected == pytest.approx(1.9682, abs=1e-4)
    assert scaling.effective_data(1.0, 2.0) == pytest.approx(expected)


def test_many_epochs_saturate_at_one_plus_r_star() -> None:
    assert scaling.effective_data(100.0, 1e6) == pytest.approx(100 * (1 + 15.387756))
    assert scaling.effective_data(100.0, 100.0) < 100 * (1 + 15.387756)


def test_constants_match_the_paper() -> None:
    assert pytest.approx(521.0, rel=1e-3) == scaling.A
    assert pytest.approx(1488.0, rel=1e-3) == scaling.B
    assert pytest.approx(1.87, abs=1e-2) == scaling.E
    # Chinchilla-style allocation: about 20 tokens per parameter when alpha == beta
    assert pytest.approx(19.6, abs=0.2) == 1 / scaling.G**2


def test_loss_without_repetition_is_the_chinchilla_form() -> None:
    n, d = 1e9, 20e9
    by_hand = 1.8691 + 520.82 / n**0.3526596 + 1487.7 / d**0.3526596
    assert scaling.loss(n, d, unique=1e12) == pytest.approx(by_hand, abs=1e-3)


def test_repetition_costs_loss() -> None:
    fresh = scaling.loss(1e9, 20e9, unique=20e9)
    repeated = scaling.loss(1e9, 20e9, unique=1e9)
    assert repeated > fresh


def test_compare_prefers_fresh_data_when_the_penalty_is_zero() -> None:
    compute = 6 * 1e9 * 100e9
    tiers = [scaling.Tier("excellent", 1e9), scaling.Tier("mediocre", 1e12)]
    options, verdict = scaling.compare(compute, tiers)
    assert options[0].epochs > 1 and options[1].epochs < 1
    assert "'mediocre' wins" in verdict


def test_compare_prefers_few_repeats_of_good_data_over_a_large_penalty() -> None:
    compute = 6 * 1e9 * 100e9
    tiers = [scaling.Tier("excellent", 50e9), scaling.Tier("mediocre", 1e12, loss_offset=0.3)]
    options, verdict = scaling.compare(compute, tiers)
    assert "'excellent' wins" in verdict
    assert options[1].loss == pytest.approx(options[1].law_loss + 0.3)
    table = scaling.markdown_table(options)
    assert table.count("\n") == 3 and "| excellent |" in table


def test_best_option_spends_the_whole_budget() -> None:
    compute = 1e21
    option = scaling.best_option(compute, scaling.Tier("t", 1e10))
    assert 6 * option.params * option.tokens == pytest.approx(compute)


def test_compare_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        scaling.compare(0, [scaling.Tier("t", 1e9)])

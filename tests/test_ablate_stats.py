"""Ablation statistics on small synthetic result tables whose answers are known by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mixtures import ablation_stats as st


def _results(values: dict[str, list[float]], metric: str = "bpb/wiki", higher: bool = False) -> pd.DataFrame:
    rows = [{"mix": mix, "seed": seed, "metric": metric, "value": v, "higher_is_better": higher}
            for mix, vals in values.items() for seed, v in enumerate(vals)]
    return pd.DataFrame(rows)


def test_bootstrap_ci_contains_the_mean_and_is_seeded() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0])
    low, high = st.bootstrap_ci(values, seed=1)
    assert low < 2.5 < high
    assert (low, high) == st.bootstrap_ci(values, seed=1)
    assert low >= 1.0 and high <= 4.0


def test_bootstrap_ci_of_one_value_is_that_value() -> None:
    assert st.bootstrap_ci(np.array([0.7])) == (0.7, 0.7)


def test_summary_mean_and_spread() -> None:
    summary = st.summarize(_results({"a": [1.0, 2.0, 3.0], "b": [2.0, 2.0, 2.0]}))
    a = summary.set_index("mix").loc["a"]
    assert a["mean"] == pytest.approx(2.0) and a["std"] == pytest.approx(1.0) and a["seeds"] == 3
    b = summary.set_index("mix").loc["b"]
    assert b["ci_low"] == b["ci_high"] == pytest.approx(2.0)


def test_beat_probability_when_a_is_always_better() -> None:
    # lower bits-per-byte is better: a beats b on every seed
    assert st.beat_probability(np.array([1.0, 1.1, 1.2]), np.array([2.0, 2.1, 2.2]), False) == 1.0
    assert st.beat_probability(np.array([1.0, 1.1, 1.2]), np.array([2.0, 2.1, 2.2]), True) == 0.0


def test_beat_probability_of_identical_runs_is_one_half() -> None:
    assert st.beat_probability(np.array([1.0, 2.0]), np.array([1.0, 2.0]), True) == 0.5


def test_seed_pair_share_by_hand() -> None:
    # pairs (a, b): (1,0) win, (1,2) loss, (3,0) win, (3,2) win -> 3/4
    assert st.seed_pair_share(np.array([1.0, 3.0]), np.array([0.0, 2.0]), True) == 0.75


def test_pairwise_rows_are_complementary() -> None:
    pairs = st.pairwise(_results({"a": [1.0, 1.5, 0.9], "b": [1.2, 1.1, 1.3]}))
    ab = pairs[(pairs.a == "a") & (pairs.b == "b")].iloc[0]
    ba = pairs[(pairs.a == "b") & (pairs.b == "a")].iloc[0]
    assert ab.p_a_beats_b + ba.p_a_beats_b == pytest.approx(1.0)
    assert 0.0 < ab.p_a_beats_b < 1.0


def test_ranking_stability_agreeing_and_reversed_seeds() -> None:
    agree = _results({"a": [1.0, 1.0, 1.0], "b": [2.0, 2.1, 2.2], "c": [3.0, 3.1, 3.2]})
    assert st.ranking_stability(agree).iloc[0].mean_tau == pytest.approx(1.0)
    # seed 1 reverses the order of seed 0
    flip = _results({"a": [1.0, 3.0], "b": [2.0, 2.0], "c": [3.0, 1.0]})
    row = st.ranking_stability(flip).iloc[0]
    assert row.mean_tau == pytest.approx(-1.0) and row.seed_pairs == 1


def test_check_results_names_the_problem() -> None:
    with pytest.raises(ValueError, match="lacks columns"):
        st.summarize(pd.DataFrame({"mix": ["a"]}))
    doubled = pd.concat([_results({"a": [1.0]})] * 2)
    with pytest.raises(ValueError, match="repeats mix=a seed=0"):
        st.summarize(doubled)


def test_report_has_tables_and_plots(tmp_path: Path) -> None:
    bpb = _results({"a": [1.0, 1.1, 1.05], "b": [1.3, 1.2, 1.25]})
    mc = _results({"a": [0.3, 0.32, 0.31], "b": [0.25, 0.27, 0.26]}, metric="mc/arc_easy", higher=True)
    results = pd.concat([bpb, mc], ignore_index=True)
    curves = pd.DataFrame([{"mix": m, "seed": s, "step": k, "loss": 5.0 - k * 0.1}
                           for m in "ab" for s in range(3) for k in range(10)])
    report = st.write_report(results, curves, tmp_path, "demo", {"proxy": "tiny"})
    text = report.read_text()
    assert "| bpb/wiki | a | b | 1.00 |" in text
    assert "| mc/arc_easy | a | b | 1.00 |" in text
    assert "![loss_curves](loss_curves.svg)" in text
    for name in ("bpb.svg", "mc.svg", "loss_curves.svg", "summary.csv", "pairwise.csv"):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "bpb.svg").read_text().lstrip().startswith("<?xml")


def test_ranking_stability_needs_two_mixes() -> None:
    row = st.ranking_stability(_results({"a": [1.0, 2.0]})).iloc[0]
    assert row.seed_pairs == 0 and np.isnan(row.mean_tau)


def test_report_of_a_single_mix_has_no_pairs(tmp_path: Path) -> None:
    assert st.pairwise(_results({"a": [1.0, 1.1]})).empty
    text = st.write_report(_results({"a": [1.0, 1.1]}), pd.DataFrame(columns=st.CURVE_COLUMNS), tmp_path, "one",
                           {}).read_text()
    assert "| bpb/wiki | a | 2 |" in text and "n/a (needs 2 mixes and 2 seeds)" in text

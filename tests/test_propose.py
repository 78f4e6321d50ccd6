"""The mixture proposer: Dirichlet sampling within epoch caps, regression, search, and the written spec."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from mixtures import regmix as propose
from mixtures.spec import load_spec

BEST = np.array([0.5, 0.3, 0.2])  # the optimum of the synthetic objective below


def _objective(w: np.ndarray) -> np.ndarray:
    """A known bowl over the simplex, lowest at BEST (stands in for a proxy's bits-per-byte)."""
    return 1.0 + ((np.atleast_2d(w) - BEST) ** 2).sum(axis=1)


def _prior() -> propose.Prior:
    return propose.make_prior({"code": 1.0, "web": 1.0, "wiki": 1.0}, {"code": 0.8, "web": 0.8, "wiki": 0.6})


def test_max_weights_follow_epoch_caps() -> None:
    limits = propose.max_weights({"wiki": 1000, "web": 10_000}, budget=4000, caps={"wiki": 2, "web": 4})
    assert limits == {"wiki": 0.5, "web": 1.0}


def test_infeasible_caps_are_an_error_naming_sources() -> None:
    with pytest.raises(ValueError, match=r"wiki <= 0\.300"):
        propose.make_prior({"web": 1, "wiki": 1}, {"web": 0.5, "wiki": 0.3})


def test_samples_are_mixtures_within_caps_and_seeded() -> None:
    prior = _prior()
    x = propose.sample_mixtures(prior, 200, seed=3)
    assert x.shape == (200, 3)
    assert np.allclose(x.sum(axis=1), 1.0)
    assert (x <= prior.max_weights + 1e-12).all()
    assert np.array_equal(x, propose.sample_mixtures(prior, 200, seed=3))
    assert not np.array_equal(x, propose.sample_mixtures(prior, 200, seed=4))


def test_strong_concentration_stays_near_the_prior() -> None:
    prior = propose.make_prior({"a": 0.7, "b": 0.3}, {"a": 1.0, "b": 1.0}, floor=0.0)
    x = propose.sample_mixtures(prior, 500, seed=0, min_strength=200, max_strength=400)
    assert np.abs(x.mean(axis=0) - [0.7, 0.3]).max() < 0.01


@pytest.mark.parametrize("kind", ["lightgbm", "linear"])
def test_regressors_rank_unseen_mixtures(kind: str) -> None:
    x = propose.sample_mixtures(_prior(), 80, seed=1)
    y = x @ np.array([1.0, 2.0, 3.0]) if kind == "linear" else _objective(x)
    check = propose.holdout_check(x, y, kind, seed=0)
    assert check["heldout"] == 20
    assert check["spearman"] > 0.8


def test_unknown_regressor_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown regressor"):
        propose.Regressor("forest")


def test_run_proposal_finds_the_optimum() -> None:
    prior = _prior()
    seen: list[int] = []

    def evaluate(weights: dict[str, float], index: int) -> float:
        seen.append(index)
        return float(_objective(np.array([weights[s] for s in prior.sources]))[0])

    proposal, x, y = propose.run_proposal(prior, evaluate, n_proxies=60, target="bpb/mean", seed=0,
                                          n_search=5000, n_boot=5)
    assert seen == list(range(60)) and x.shape == (60, 3) and y.min() >= 1.0
    got = np.array([proposal.weights[s] for s in prior.sources])
    assert np.abs(got - BEST).max() < 0.12
    assert sum(proposal.weights.values()) == pytest.approx(1.0, abs=1e-5)
    assert proposal.interval[0] <= proposal.interval[1] and proposal.std >= 0
    assert proposal.heldout["spearman"] > 0.5


def _base_spec(directory: Path) -> Path:
    data = {"name": "mix_v1", "data_root": "data", "sources": {"web": {"paths": ["web.jsonl"]},
                                                                "wiki": {"paths": ["wiki.jsonl"]}},
            "mixture": {"budget_tokens": 10_000, "sources": {"web": {"weight": 0.7},
                                                             "wiki": {"weight": 0.3, "epoch_cap": 8}}}}
    path = directory / "mix_v1.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_next_spec_path_takes_the_next_free_number(tmp_path: Path) -> None:
    assert propose.next_spec_path(tmp_path).name == "mix_v1.yaml"
    for name in ("mix_v1.yaml", "mix_v3.yaml", "mix_vx.yaml"):
        (tmp_path / name).write_text("")
    assert propose.next_spec_path(tmp_path).name == "mix_v4.yaml"


def test_written_spec_is_valid_and_states_the_prediction(tmp_path: Path) -> None:
    base = _base_spec(tmp_path)
    proposal = propose.Proposal({"web": 0.4, "wiki": 0.6}, 1.234, 0.05, (1.2, 1.3),
                                {"heldout": 5.0, "spearman": 0.9, "kendall": 0.8}, 20, "bpb/mean", True,
                                "lightgbm")
    out = propose.write_spec(base, tmp_path / "out" / "mix_v2.yaml", proposal.weights,
                             propose.proposal_header(proposal, base.name), "proposed")
    text = out.read_text()
    assert text.startswith("# Proposed by `mixlab propose` from mix_v1.yaml: 20 proxies")
    assert "Predicted bpb/mean (lower is better): 1.2340 +- 0.0500" in text
    spec = load_spec(out, check_files=False)
    assert spec.name == "mix_v2"
    assert spec.mixture.sources["wiki"].weight == 0.6 and spec.mixture.sources["wiki"].epoch_cap == 8
    assert spec.root == (tmp_path / "data").resolve()


def test_propose_trains_proxies_and_writes_a_valid_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mixlab.propose import ProposeConfig, run
    from mixtures.spec import find_spec
    from mixtures.tiny import shrink_spec

    origin = find_spec("mix_v1.yaml").resolve()
    spec = shrink_spec(origin, tmp_path / "specs", docs=40, output_dir=tmp_path / "runs")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mix_v3.yaml").write_text("")  # the next free number is 4
    cfg = ProposeConfig(proxies=6, tokens=8 * 64 * 3, regressor="linear", n_search=500, top_k=8)
    path = run(spec, cfg, tmp_path / "work", tmp_path / "out", origin=origin)

    assert path.name == "mix_v4.yaml"
    assert len(list((tmp_path / "work" / "proxies").glob("p*/score.json"))) == 6
    text = path.read_text()
    assert "# Proposed by `mixlab propose` from mix_v1.yaml: 6 proxies, linear regression." in text
    assert "Predicted bpb/mean (lower is better):" in text
    proposed = load_spec(path)
    weights = {s: m.weight for s, m in proposed.mixture.sources.items()}
    assert set(weights) == set(proposed.sources) and sum(weights.values()) == pytest.approx(1.0, abs=1e-4)
    assert proposed.root == spec.root

"""Propose a mixture: sample weights around a prior, score them with proxies, regress, pick the best.

The method is RegMix's (Liu et al., ICLR 2025, arXiv:2407.01492; sail-sg/regmix): Dirichlet draws around the
prior, rejected when a source would repeat more than its epoch cap; one small proxy per draw; a LightGBM
regression from weights to a target metric; then many more draws scored by the regression, and the mean of the
``top_k`` best predicted becomes the proposal (RegMix averages its top 128 of 100k). NeMo's CLIMB iterates the
same loop with a shrinking search region; this module does the single round.

A held-out check fits the regression on part of the proxies and reports the Spearman and Kendall rank
correlation of its predictions with the proxies it did not see. The proposal's uncertainty is the spread of
its prediction over regressions refitted on bootstrap resamples of the proxies.

Training is not done here: :func:`run_proposal` takes an ``evaluate(weights, index)`` callable (the proxy
trainer lives in :mod:`proxy_train`), so this module stays free of torch.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from scipy.stats import kendalltau, spearmanr

log = logging.getLogger(__name__)

REGRESSORS = ("lightgbm", "linear")


@dataclass(frozen=True)
class Prior:
    """Sources, their prior weights (sum 1) and the largest weight each may take within its epoch cap."""

    sources: tuple[str, ...]
    weights: np.ndarray
    max_weights: np.ndarray

    def __post_init__(self) -> None:
        if len(self.sources) < 2:
            raise ValueError("proposing a mixture needs at least two sources")
        if self.max_weights.sum() < 1 - 1e-9:
            caps = ", ".join(f"{s} <= {m:.3f}" for s, m in zip(self.sources, self.max_weights, strict=True))
            raise ValueError(f"no mixture fits the epoch caps: weights must sum to 1 but {caps}; "
                             "raise epoch caps or lower the token budget")


def max_weights(available: Mapping[str, float], budget: float, caps: Mapping[str, float]) -> dict[str, float]:
    """Largest weight per source: ``cap * available tokens / budget``, at most 1."""
    return {s: min(1.0, caps[s] * available[s] / budget) for s in available}


def make_prior(weights: Mapping[str, float], limits: Mapping[str, float], floor: float = 0.01) -> Prior:
    """A prior from spec weights (normalised, mixed with ``floor`` of uniform so no source is ruled out)."""
    sources = tuple(sorted(weights))
    w = np.array([weights[s] for s in sources], dtype=float)
    if w.sum() <= 0:
        raise ValueError("prior weights are all zero")
    w = (1 - floor) * w / w.sum() + floor / len(w)
    return Prior(sources, w, np.array([limits[s] for s in sources], dtype=float))


def sample_mixtures(prior: Prior, n: int, seed: int, min_strength: float = 0.5, max_strength: float = 20.0,
                    max_tries: int = 200) -> np.ndarray:
    """``n`` Dirichlet draws around the prior within the epoch caps, shape (n, sources).

    Concentration = strength * number of sources * prior, strength log-uniform in [min, max]: small strengths
    explore far from the prior, large ones stay near it. Draws above a cap are rejected and redrawn.
    """
    rng = np.random.default_rng(seed)
    k = len(prior.sources)
    out: list[np.ndarray] = []
    for _ in range(max_tries):
        strength = np.exp(rng.uniform(np.log(min_strength), np.log(max_strength), size=n))
        draws = np.vstack([rng.dirichlet(s * k * prior.weights) for s in strength])
        out.extend(draws[(draws <= prior.max_weights + 1e-12).all(axis=1)])
        if len(out) >= n:
            return np.vstack(out[:n])
    raise ValueError(f"only {len(out)} of {n} Dirichlet draws fit the epoch caps "
                     f"{dict(zip(prior.sources, prior.max_weights.round(3), strict=True))}; relax the caps")


class Regressor:
    """Weights -> predicted metric: LightGBM (RegMix's choice) or a ridge-regularised linear model."""

    def __init__(self, kind: str = "lightgbm", seed: int = 0) -> None:
        if kind not in REGRESSORS:
            raise ValueError(f"unknown regressor {kind!r}; choose one of {REGRESSORS}")
        self.kind, self.seed = kind, seed
        self._model: object = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> Regressor:
        """Fit on weights ``x`` (n, sources) and targets ``y`` (n,)."""
        if self.kind == "linear":
            design = np.hstack([x, np.ones((len(x), 1))])
            ridge = 1e-3 * np.eye(design.shape[1])
            self._model = np.linalg.solve(design.T @ design + ridge, design.T @ y)
        else:
            import lightgbm as lgb

            params = {"objective": "regression", "learning_rate": 0.05, "num_leaves": 15,
                      "min_data_in_leaf": max(2, len(x) // 10), "min_data_in_bin": 1, "verbose": -1,
                      "num_threads": 1, "seed": self.seed, "deterministic": True}
            data = lgb.Dataset(x, y, params={"min_data_in_bin": 1})
            self._model = lgb.train(params, data, num_boost_round=300)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted metric for each row of weights."""
        if self.kind == "linear":
            return np.hstack([x, np.ones((len(x), 1))]) @ self._model
        return self._model.predict(x)  # type: ignore[attr-defined]


def holdout_check(x: np.ndarray, y: np.ndarray, kind: str, seed: int,
                  fraction: float = 0.25) -> dict[str, float]:
    """Fit on ``1 - fraction`` of the proxies; rank correlation of predictions on the rest."""
    n_test = max(3, round(len(x) * fraction))
    if len(x) - n_test < 3:
        raise ValueError(f"{len(x)} proxies are too few for a held-out check; use at least 6")
    order = np.random.default_rng(seed).permutation(len(x))
    test, train = order[:n_test], order[n_test:]
    pred = Regressor(kind, seed).fit(x[train], y[train]).predict(x[test])
    return {"heldout": float(n_test), "spearman": float(spearmanr(pred, y[test]).statistic),
            "kendall": float(kendalltau(pred, y[test]).statistic)}


@dataclass(frozen=True)
class Proposal:
    """The predicted-best weights with the prediction, its bootstrap interval and the held-out check."""

    weights: dict[str, float]
    predicted: float
    std: float
    interval: tuple[float, float]
    heldout: dict[str, float]
    proxies: int
    target: str
    minimize: bool
    regressor: str


def search(prior: Prior, x: np.ndarray, y: np.ndarray, *, target: str, minimize: bool, kind: str = "lightgbm",
           seed: int = 0, n_search: int = 20000, top_k: int = 32, n_boot: int = 20) -> Proposal:
    """Fit on all proxies, score ``n_search`` draws, average the ``top_k`` best; bootstrap the prediction."""
    model = Regressor(kind, seed).fit(x, y)
    candidates = sample_mixtures(prior, n_search, seed + 1)
    scores = model.predict(candidates)
    best = np.argsort(scores if minimize else -scores)[:top_k]
    weights = candidates[best].mean(axis=0)
    rng = np.random.default_rng(seed + 2)
    boot = []
    for b in range(n_boot):
        idx = rng.integers(0, len(x), len(x))
        boot.append(float(Regressor(kind, seed + b).fit(x[idx], y[idx]).predict(weights[None, :])[0]))
    return Proposal(weights=dict(zip(prior.sources, (round(float(w), 6) for w in weights), strict=True)),
                    predicted=float(model.predict(weights[None, :])[0]), std=float(np.std(boot, ddof=1)),
                    interval=(float(np.percentile(boot, 5)), float(np.percentile(boot, 95))),
                    heldout=holdout_check(x, y, kind, seed), proxies=len(x), target=target, minimize=minimize,
                    regressor=kind)


def run_proposal(prior: Prior, evaluate: Callable[[dict[str, float], int], float], *, n_proxies: int,
                 target: str, minimize: bool = True, kind: str = "lightgbm", seed: int = 0,
                 **search_args: int) -> tuple[Proposal, np.ndarray, np.ndarray]:
    """Sample ``n_proxies`` mixtures, score each with ``evaluate(weights, index)``, search for the best."""
    x = sample_mixtures(prior, n_proxies, seed)
    y = np.empty(n_proxies)
    for i, row in enumerate(x):
        y[i] = evaluate(dict(zip(prior.sources, row.tolist(), strict=True)), i)
        log.info("proxy %d/%d: %s = %.4f", i + 1, n_proxies, target, y[i])
    return search(prior, x, y, target=target, minimize=minimize, kind=kind, seed=seed, **search_args), x, y


def next_spec_path(directory: Path) -> Path:
    """``mix_vN.yaml`` with N one above the highest existing in ``directory``."""
    found = (re.fullmatch(r"mix_v(\d+)\.yaml", p.name) for p in directory.glob("mix_v*.yaml"))
    numbers = [int(m.group(1)) for m in found if m]
    return directory / f"mix_v{max(numbers, default=0) + 1}.yaml"


def proposal_header(p: Proposal, base: str) -> list[str]:
    """YAML comment lines stating how the proposal was made and how sure it is."""
    better = "lower" if p.minimize else "higher"
    return [
        f"Proposed by `mixlab propose` from {base}: {p.proxies} proxies, {p.regressor} regression.",
        f"Predicted {p.target} ({better} is better): {p.predicted:.4f} +- {p.std:.4f} "
        f"(bootstrap std; 90% interval [{p.interval[0]:.4f}, {p.interval[1]:.4f}]).",
        f"Held-out check on {int(p.heldout['heldout'])} unseen proxies: "
        f"Spearman {p.heldout['spearman']:.2f}, Kendall {p.heldout['kendall']:.2f}.",
        "A prediction from tiny proxies: confirm it with `mixlab ablate` against the base mixture.",
    ]


def write_spec(base_path: Path, out_path: Path, weights: Mapping[str, float], header: list[str],
               description: str, fallback_mixture: dict | None = None, overrides: dict | None = None) -> Path:
    """Copy the base spec with new mixture weights, name and description; comments on top; return the path.

    A base spec without a ``mixture:`` section takes ``fallback_mixture`` (the section the proxies used);
    ``overrides`` replace keys of the mixture section (e.g. ``budget_tokens``, ``epoch_cap``).
    """
    data = yaml.safe_load(base_path.read_text(encoding="utf-8"))
    if not isinstance(data.get("mixture"), dict):
        if fallback_mixture is None:
            raise ValueError(f"{base_path}: the base spec has no mixture: section to take weights from")
        data["mixture"] = fallback_mixture
        header = [*header, "The base spec had no mixture: section; this one is the proxies' (tiny) setting."]
    mix = data["mixture"]
    mix.update(overrides or {})
    if any("tokens" in (s or {}) for s in mix["sources"].values()):
        mix["budget_tokens"] = sum(int(s["tokens"]) for s in mix["sources"].values())
    for source in sorted(set(mix["sources"]) | set(weights)):  # a source the proxies did not see gets 0
        entry = {k: v for k, v in (mix["sources"].get(source) or {}).items() if k not in ("tokens", "weight")}
        mix["sources"][source] = {"weight": float(weights.get(source, 0.0)), **entry}
    data["name"] = out_path.stem
    data["description"] = description
    base_root = base_path.resolve().parent / str(data.get("data_root", "."))
    if out_path.resolve().parent != base_path.resolve().parent and not Path(str(data.get("data_root", "."))
                                                                           ).is_absolute():
        data["data_root"] = os.path.relpath(base_root, out_path.resolve().parent)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"# {line}\n" for line in header) + yaml.safe_dump(data, sort_keys=False)
    out_path.write_text(text, encoding="utf-8")
    return out_path

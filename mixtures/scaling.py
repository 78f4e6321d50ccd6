"""Quality versus repetition: the data-constrained scaling law of Muennighoff et al. (2023).

Paper: "Scaling Data-Constrained Language Models", N. Muennighoff, A. Rush, B. Barak, T. Le Scao, A. Piktus,
N. Tazi, S. Pyysalo, T. Wolf, C. Raffel, NeurIPS 2023, arXiv:2305.16264.

Repeated tokens are worth less than fresh ones. With U unique tokens seen for ``epochs`` epochs, the number of
*repetitions* is R_D = epochs - 1 and the effective data is

    D' = U + U * R*_D * (1 - exp(-R_D / R*_D))            (paper eq. 5)

so one epoch gives D' = U and infinitely many epochs saturate at U * (1 + R*_D). Parameters beyond the
compute-optimal size for U decay the same way with R*_N. Loss follows the Chinchilla form the paper refits on
its own runs (C4, decoder-only GPT-2 style models):

    L(N', D') = E + A / N'^alpha + B / D'^beta

The constants below are the paper's fitted values (appendix; the same numbers ship in the authors' repository
huggingface/datablations and, to all printed digits, in re-implementations of it): A = exp(6.255414) ~ 521,
B = exp(7.3049974) ~ 1488, E = exp(0.6254804) ~ 1.87, alpha = beta = 0.3526596, R*_D = 15.387756,
R*_N = 5.309743. Compute is C = 6 * N * D FLOPs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mixtures.report import tables

# Muennighoff et al. 2023, fitted constants (see module docstring).
A = math.exp(6.255414)
B = math.exp(7.3049974)
E = math.exp(0.6254804)
ALPHA = 0.3526596
BETA = 0.3526596
R_STAR_D = 15.387756  # repetitions after which repeated data has lost 1 - 1/e of its value
R_STAR_N = 5.309743  # the same for excess parameters
# Chinchilla allocation N_opt = G * (C/6)^(beta/(alpha+beta)), D_opt = (C/6)^(alpha/(alpha+beta)) / G.
G = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))


def effective_data(unique: float, epochs: float, r_star: float = R_STAR_D) -> float:
    """Effective tokens D' of ``unique`` tokens seen ``epochs`` times (under one epoch: the tokens seen)."""
    if epochs <= 1.0:
        return unique * epochs
    return unique + unique * r_star * (1.0 - math.exp(-(epochs - 1.0) / r_star))


def optimal_params_for_data(tokens: float) -> float:
    """The compute-optimal parameter count for ``tokens`` unique tokens under the fitted Chinchilla law."""
    return G * (tokens * G) ** (BETA / ALPHA)


def effective_params(params: float, unique: float) -> float:
    """Effective parameters N': those beyond the optimum for ``unique`` tokens decay with R*_N."""
    base = min(params, optimal_params_for_data(unique))
    return effective_data(base, params / base, R_STAR_N)


def loss(params: float, tokens: float, unique: float) -> float:
    """Predicted loss of a model of ``params`` trained on ``tokens`` drawn from ``unique`` unique tokens."""
    n_eff = effective_params(params, unique)
    d_eff = effective_data(unique, tokens / unique)
    return E + A / n_eff**ALPHA + B / d_eff**BETA


@dataclass(frozen=True)
class Tier:
    """A pool of training data: its unique tokens and how much worse its text is than the best tier.

    ``loss_offset`` is added to, and ``loss_multiplier`` multiplies, the law's predicted loss; both are user
    judgements (e.g. measured on proxies), not part of the paper.
    """

    name: str
    unique_tokens: float
    loss_offset: float = 0.0
    loss_multiplier: float = 1.0


@dataclass(frozen=True)
class Option:
    """The best use of a compute budget on one tier: model size, tokens, epochs and predicted loss."""

    tier: str
    params: float
    tokens: float
    unique_tokens: float
    epochs: float
    effective_tokens: float
    law_loss: float
    loss: float


def best_option(compute: float, tier: Tier, grid: int = 400) -> Option:
    """Search model sizes (log grid) for the lowest penalised loss at ``compute`` FLOPs on ``tier``."""
    n_opt = G * (compute / 6) ** (BETA / (ALPHA + BETA))
    best: Option | None = None
    for params in np.geomspace(n_opt / 1000, n_opt * 1000, grid):
        tokens = compute / (6 * params)
        base = loss(params, tokens, tier.unique_tokens)
        penalised = base * tier.loss_multiplier + tier.loss_offset
        if best is None or penalised < best.loss:
            best = Option(tier.name, float(params), tokens, tier.unique_tokens, tokens / tier.unique_tokens,
                          effective_data(tier.unique_tokens, tokens / tier.unique_tokens), base, penalised)
    assert best is not None
    return best


def compare(compute: float, tiers: list[Tier]) -> tuple[list[Option], str]:
    """Best option per tier at ``compute`` FLOPs and a verdict sentence naming the winner and the margin."""
    if compute <= 0 or not tiers:
        raise ValueError("compare needs a positive compute budget and at least one tier")
    options = [best_option(compute, t) for t in tiers]
    ranked = sorted(options, key=lambda o: o.loss)
    win = ranked[0]
    verdict = (f"At {compute:.3g} FLOPs, '{win.tier}' wins: a {_si(win.params)}-parameter model on "
               f"{_si(win.tokens)} tokens ({win.epochs:.3g} epochs of {_si(win.unique_tokens)} unique) "
               f"reaches loss {win.loss:.4f}")
    if len(ranked) > 1:
        run = ranked[1]
        verdict += (f", {run.loss - win.loss:.4f} below '{run.tier}' ({run.epochs:.3g} epochs, "
                    f"loss {run.loss:.4f})")
    return options, verdict + "."


def markdown_table(options: list[Option]) -> str:
    """The options as a Markdown table."""
    return "\n".join(tables.markdown_table(
        ["tier", "params", "tokens", "unique", "epochs", "effective tokens D'", "law loss", "penalised loss"],
        [(o.tier, _si(o.params), _si(o.tokens), _si(o.unique_tokens), f"{o.epochs:.3g}", _si(o.effective_tokens),
          f"{o.law_loss:.4f}", f"{o.loss:.4f}") for o in options]))


def _si(x: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"

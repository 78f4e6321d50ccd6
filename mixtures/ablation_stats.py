"""Statistics, plots and the Markdown report of an ablation: mixtures x seeds of proxy results.

The results table is long-form, one row per (mix, seed, metric): columns ``mix``, ``seed``, ``metric``
(e.g. ``bpb/wiki``, ``bpb/mean``, ``mc/arc_easy``), ``value`` and ``higher_is_better``. Loss curves are a
second table with ``mix``, ``seed``, ``step``, ``loss``. Everything random here takes a seed, so reports
are reproducible.

Uncertainty, in the words the report uses:
- seed spread: the sample standard deviation of a metric over seeds;
- confidence interval: percentile bootstrap of the mean over seeds (seeds resampled with replacement);
- "A beats B on X with probability p": paired bootstrap over the seeds both mixes share (the same init seed
  trained on each mix), p = share of resamples where A's mean is better, ties counted half. Next to it, the
  exact share of all (A seed, B seed) pairs where A's proxy is better;
- ranking stability: Kendall tau between the rankings of the mixes by two seeds, averaged over seed pairs.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from mixtures.report.ablation_html import write_ablation_html
from mixtures.report.svg import save_svg

RESULT_COLUMNS = ["mix", "seed", "metric", "value", "higher_is_better"]
CURVE_COLUMNS = ["mix", "seed", "step", "loss"]
PAIR_COLUMNS = ["metric", "a", "b", "seeds", "p_a_beats_b", "seed_pair_share"]


def check_results(results: pd.DataFrame) -> None:
    """Raise ValueError naming the missing columns or duplicated (mix, seed, metric) rows."""
    missing = [c for c in RESULT_COLUMNS if c not in results.columns]
    if missing:
        raise ValueError(f"results table lacks columns {missing}; expected {RESULT_COLUMNS}")
    dup = results.duplicated(["mix", "seed", "metric"])
    if dup.any():
        first = results[dup].iloc[0]
        raise ValueError(f"results table repeats mix={first.mix} seed={first.seed} metric={first.metric}")


def bootstrap_ci(values: np.ndarray, level: float = 0.95, n_boot: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``."""
    values = np.asarray(values, dtype=float)
    if len(values) == 1:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def summarize(results: pd.DataFrame, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per (metric, mix): seeds, mean, seed spread (std) and bootstrap CI of the mean."""
    check_results(results)
    rows = []
    for (metric, mix), group in results.groupby(["metric", "mix"], sort=True):
        values = group.sort_values("seed")["value"].to_numpy(float)
        low, high = bootstrap_ci(values, level, n_boot, seed)
        rows.append({"metric": metric, "mix": mix, "seeds": len(values), "mean": values.mean(),
                     "std": values.std(ddof=1) if len(values) > 1 else 0.0, "ci_low": low, "ci_high": high,
                     "higher_is_better": bool(group["higher_is_better"].iloc[0])})
    return pd.DataFrame(rows)


def _wide(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """seed x mix values of one metric."""
    return results[results.metric == metric].pivot(index="seed", columns="mix", values="value")


def beat_probability(a: np.ndarray, b: np.ndarray, higher_is_better: bool, n_boot: int = 2000,
                     seed: int = 0) -> float:
    """Paired bootstrap probability that ``a``'s mean beats ``b``'s (arrays aligned by seed)."""
    diff = np.asarray(a, float) - np.asarray(b, float)
    if not higher_is_better:
        diff = -diff
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (n_boot, len(diff)))].mean(axis=1)
    return float((means > 0).mean() + 0.5 * (means == 0).mean())


def seed_pair_share(a: np.ndarray, b: np.ndarray, higher_is_better: bool) -> float:
    """Exact share of all (a seed, b seed) pairs where a's proxy is better, ties counted half."""
    a, b = np.asarray(a, float)[:, None], np.asarray(b, float)[None, :]
    better = (a > b) if higher_is_better else (a < b)
    return float(better.mean() + 0.5 * (a == b).mean())


def pairwise(results: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """For every metric and ordered pair of mixes: P(A beats B) (paired bootstrap) and the seed-pair share."""
    check_results(results)
    rows = []
    for metric in sorted(results.metric.unique()):
        wide = _wide(results, metric)
        higher = bool(results.loc[results.metric == metric, "higher_is_better"].iloc[0])
        for a, b in itertools.permutations(sorted(wide.columns), 2):
            both = wide[[a, b]].dropna()
            if both.empty:
                continue
            rows.append({"metric": metric, "a": a, "b": b, "seeds": len(both),
                         "p_a_beats_b": beat_probability(both[a], both[b], higher, n_boot, seed),
                         "seed_pair_share": seed_pair_share(wide[a].dropna(), wide[b].dropna(), higher)})
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def ranking_stability(results: pd.DataFrame) -> pd.DataFrame:
    """Per metric: mean and minimum Kendall tau between the mix rankings of every two seeds."""
    check_results(results)
    rows = []
    for metric in sorted(results.metric.unique()):
        wide = _wide(results, metric).dropna(axis=1, how="all").dropna(axis=0)
        taus = []
        pairs = itertools.combinations(wide.index, 2) if wide.shape[1] > 1 else []
        for s1, s2 in pairs:
            a, b = wide.loc[s1].to_numpy(float), wide.loc[s2].to_numpy(float)
            # a seed that ties every mix has no ranking: count it as no agreement (tau 0)
            tau = kendalltau(a, b).statistic if np.ptp(a) > 0 and np.ptp(b) > 0 else 0.0
            taus.append(float(tau))
        rows.append({"metric": metric, "mixes": wide.shape[1], "seed_pairs": len(taus),
                     "mean_tau": float(np.mean(taus)) if taus else float("nan"),
                     "min_tau": float(np.min(taus)) if taus else float("nan")})
    return pd.DataFrame(rows)


def plot_metrics(summary: pd.DataFrame, path: Path, prefix: str) -> Path | None:
    """Bar chart of the metrics starting with ``prefix`` per mix, CI as error bars; None if there are none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    part = summary[summary.metric.str.startswith(prefix)]
    if part.empty:
        return None
    metrics, mixes = sorted(part.metric.unique()), sorted(part.mix.unique())
    width = 0.8 / len(mixes)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(metrics) * len(mixes) ** 0.5), 4))
    for i, mix in enumerate(mixes):
        rows = part[part.mix == mix].set_index("metric").reindex(metrics)
        err = np.vstack([rows["mean"] - rows["ci_low"], rows["ci_high"] - rows["mean"]])
        ax.bar(np.arange(len(metrics)) + i * width, rows["mean"], width, yerr=err, capsize=3, label=mix)
    ax.set_xticks(np.arange(len(metrics)) + 0.4 - width / 2, [m.removeprefix(prefix) for m in metrics],
                  rotation=30, ha="right")
    ax.set_ylabel(prefix.rstrip("/") + " (mean over seeds, 95% bootstrap CI)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return save_svg(fig, path)


def plot_curves(curves: pd.DataFrame, path: Path) -> Path | None:
    """Training loss against step: one line per seed (thin), the mean per mix (thick); None without curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if curves.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (mix, group) in enumerate(curves.groupby("mix", sort=True)):
        color = f"C{i}"
        for _, run in group.groupby("seed"):
            ax.plot(run["step"], run["loss"], color=color, alpha=0.3, linewidth=0.8)
        mean = group.groupby("step")["loss"].mean()
        ax.plot(mean.index, mean.to_numpy(), color=color, linewidth=2, label=mix)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (nats/token)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return save_svg(fig, path)


def _fmt(x: float) -> str:
    return f"{x:.4f}"


def _summary_table(summary: pd.DataFrame) -> list[str]:
    lines = ["| metric | mix | seeds | mean | seed std | 95% CI | better |", "|---|---|---|---|---|---|---|"]
    for r in summary.itertuples():
        better = "higher" if r.higher_is_better else "lower"
        lines.append(f"| {r.metric} | {r.mix} | {r.seeds} | {_fmt(r.mean)} | {_fmt(r.std)} | "
                     f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}] | {better} |")
    return lines


def _pairwise_table(pairs: pd.DataFrame) -> list[str]:
    lines = ["| metric | A | B | P(A beats B) | share of seed pairs A wins | seeds |",
             "|---|---|---|---|---|---|"]
    for r in pairs[pairs.p_a_beats_b >= 0.5].itertuples():
        lines.append(f"| {r.metric} | {r.a} | {r.b} | {r.p_a_beats_b:.2f} | {r.seed_pair_share:.2f} "
                     f"| {r.seeds} |")
    return lines


def _stability_table(stability: pd.DataFrame) -> list[str]:
    lines = ["| metric | mixes | seed pairs | mean Kendall tau | min Kendall tau |", "|---|---|---|---|---|"]
    for r in stability.itertuples():
        if r.seed_pairs:
            lines.append(f"| {r.metric} | {r.mixes} | {r.seed_pairs} | {r.mean_tau:.2f} | {r.min_tau:.2f} |")
        else:
            lines.append(f"| {r.metric} | {r.mixes} | 0 | n/a (needs 2 mixes and 2 seeds) | n/a |")
    return lines


def lead_first(table: pd.DataFrame, lead: str | None) -> pd.DataFrame:
    """Rows whose metric shares ``lead``'s prefix (``bpb_common/`` for ``bpb_common/mean``) first, order kept."""
    if lead is None or table.empty:
        return table
    prefix = lead.split("/")[0] + "/"
    first = table.metric.str.startswith(prefix)
    return pd.concat([table[first], table[~first]], ignore_index=True)


def _headline(summary: pd.DataFrame, lead: str) -> list[str]:
    """Mixes ranked by the mean of the lead metric, with seed spread and interval."""
    part = summary[summary.metric == lead]
    if part.empty:
        return [f"No results for `{lead}` (see the notes below), so no headline ranking."]
    part = part.sort_values("mean", ascending=not bool(part.higher_is_better.iloc[0]))
    lines = [f"Mixes ranked by `{lead}` ({'higher' if part.higher_is_better.iloc[0] else 'lower'} is better).", "",
             "| rank | mix | seeds | mean | seed std | 95% CI |", "|---|---|---|---|---|---|"]
    for rank, r in enumerate(part.itertuples(), 1):
        lines.append(f"| {rank} | {r.mix} | {r.seeds} | {_fmt(r.mean)} | {_fmt(r.std)} | "
                     f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}] |")
    return lines


def write_report(results: pd.DataFrame, curves: pd.DataFrame, out_dir: Path, title: str,
                 settings: Mapping[str, object], seed: int = 0, lead: str | None = None,
                 sections: dict[str, list[str]] | None = None) -> Path:
    """Write report.md and report.html (with summary.csv, pairwise.csv and SVG plots) into ``out_dir``.

    Returns report.md's path. Every file has the same bytes for the same inputs (seeded bootstrap, fixed SVG ids).

    With ``lead`` (a metric), the report opens with the mixes ranked by it, and its family of metrics comes first
    in every table; ``sections`` are extra Markdown sections (title -> lines) placed after the settings.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    summary, pairs, stability = lead_first(summarize(results, seed=seed), lead), \
        lead_first(pairwise(results, seed=seed), lead), lead_first(ranking_stability(results), lead)
    summary.to_csv(out_dir / "summary.csv", index=False)
    pairs.to_csv(out_dir / "pairwise.csv", index=False)
    figures = [plot_metrics(summary, out_dir / "bpb_common.svg", "bpb_common/"),
               plot_metrics(summary, out_dir / "bpb.svg", "bpb/"),
               plot_metrics(summary, out_dir / "mc.svg", "mc/"),
               plot_curves(curves, out_dir / "loss_curves.svg")]
    lines = [f"# Ablation {title}", "", "## Settings", ""]
    lines += [f"- {key}: {value}" for key, value in settings.items()]
    if lead is not None:
        lines += ["", "## Headline ranking", "", *_headline(summary, lead)]
    for heading, body in (sections or {}).items():
        lines += ["", f"## {heading}", "", *body]
    lines += ["", "## Results per mixture", "",
              "Mean over seeds, the seed spread (sample std) and a 95% percentile bootstrap interval of the "
              "mean (seeds resampled, 2000 draws). bpb = bits per byte on held-out text of a domain "
              "(lower is better); mc = multiple-choice accuracy (higher is better).", ""]
    lines += _summary_table(summary)
    lines += ["", "## Figures", ""] + [f"![{f.stem}]({f.name})" for f in figures if f is not None]
    lines += ["", "## Pairwise: A beats B on X with probability p", "",
              "P(A beats B): paired bootstrap over the seeds both mixes share (same init seed on each mix), "
              "the share of 2000 resamples in which A's mean is better. The last column is exact: the "
              "share of all (A seed, B seed) pairs in which A's proxy did better. Only rows with P >= 0.5 "
              "are shown; the converse row is 1 - P.", ""]
    lines += _pairwise_table(pairs)
    lines += ["", "## Ranking stability across seeds", "",
              "Kendall tau between the orderings of the mixes by two seeds (1 = same order, -1 = reversed), "
              "over every pair of seeds. Low tau means the seeds disagree: treat the ranking as unsettled.",
              ""]
    lines += _stability_table(stability)
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_ablation_html(out_dir / "report.html", summary, pairs, stability, curves, title, settings, lead, sections)
    return path


# ---- experiments: effects against a baseline, agreement across proxy sizes, the repetition law ----------------
# (statistics only; mixlab/experiments.py writes the experiment reports from these tables)

EFFECT_COLUMNS = ["metric", "variant", "seeds", "baseline_mean", "variant_mean", "effect", "ci_low", "ci_high",
                  "p_better", "higher_is_better"]


def paired_effects(results: pd.DataFrame, baseline: str, level: float = 0.95, n_boot: int = 2000,
                   seed: int = 0) -> pd.DataFrame:
    """Per metric and variant: the mean of (variant - baseline) over the seeds both have, with its interval.

    Paired by seed (seed k of every mix starts from the same initialisation), so the difference cancels the
    luck of the init both share. ``effect`` > 0 means the metric went up (for bpb: worse). The interval is a
    percentile bootstrap of the mean paired difference (seeds resampled, ``n_boot`` draws); ``p_better`` is the
    paired-bootstrap probability that the variant beats the baseline (ties half), as :func:`beat_probability`.
    """
    check_results(results)
    if baseline not in set(results.mix):
        raise ValueError(f"baseline {baseline!r} has no results; mixes: {', '.join(sorted(set(results.mix)))}")
    rows = []
    for metric in sorted(results.metric.unique()):
        wide = _wide(results, metric)
        if baseline not in wide.columns:
            continue
        higher = bool(results.loc[results.metric == metric, "higher_is_better"].iloc[0])
        for variant in sorted(c for c in wide.columns if c != baseline):
            both = wide[[baseline, variant]].dropna()
            if both.empty:
                continue
            diff = (both[variant] - both[baseline]).to_numpy(float)
            low, high = bootstrap_ci(diff, level, n_boot, seed)
            rows.append({"metric": metric, "variant": variant, "seeds": len(diff),
                         "baseline_mean": float(both[baseline].mean()), "variant_mean": float(both[variant].mean()),
                         "effect": float(diff.mean()), "ci_low": low, "ci_high": high,
                         "p_better": beat_probability(both[variant], both[baseline], higher, n_boot, seed),
                         "higher_is_better": higher})
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


def _pair_signs(means: np.ndarray) -> np.ndarray:
    """sign(mean_i - mean_j) for every pair i < j of mixes (the last axis holds the mixes)."""
    i, j = np.triu_indices(means.shape[-1], k=1)
    return np.sign(means[..., i] - means[..., j])


def _agreement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of mix pairs two orderings agree on (signs of pairwise differences; a tie on either side counts half)."""
    tie = (a == 0) | (b == 0)
    return np.where(tie, 0.5, (a == b).astype(float)).mean(axis=-1)


def size_agreement(a: pd.DataFrame, b: pd.DataFrame, level: float = 0.95, n_boot: int = 2000,
                   seed: int = 0) -> dict:
    """How often two proxy sizes order the mixes the same way (DataDecide's decision accuracy between scales).

    ``a`` and ``b`` are seed x mix tables of one metric (rows: seeds, columns: mixes) from the two sizes. The
    point estimate compares the mixes' means over seeds: the share of mix pairs whose order is the same at both
    sizes (a tie counts half). The interval resamples the seeds of each size independently (rows with
    replacement, the same rows for every mix of that size, so seed pairing within a size is kept) and recomputes
    the share, ``n_boot`` times; ``pair_agreement`` is, per mix pair, the share of resamples in which the sizes
    agree. Direction does not matter here (the same metric at both sizes), only whether the orders match.
    """
    mixes = sorted(set(a.columns) & set(b.columns))
    if len(mixes) < 2:
        raise ValueError(f"size agreement needs two mixes scored at both sizes, got {mixes}")
    a, b = a[mixes].dropna().to_numpy(float), b[mixes].dropna().to_numpy(float)
    if not len(a) or not len(b):
        raise ValueError("size agreement needs at least one seed with every mix at each size")
    point = float(_agreement(_pair_signs(a.mean(axis=0)), _pair_signs(b.mean(axis=0))))
    rng = np.random.default_rng(seed)
    draws_a = a[rng.integers(0, len(a), (n_boot, len(a)))].mean(axis=1)  # (n_boot, mixes)
    draws_b = b[rng.integers(0, len(b), (n_boot, len(b)))].mean(axis=1)
    sa, sb = _pair_signs(draws_a), _pair_signs(draws_b)
    shares = _agreement(sa, sb)
    tail = (1 - level) / 2 * 100
    i, j = np.triu_indices(len(mixes), k=1)
    per_pair = np.where((sa == 0) | (sb == 0), 0.5, (sa == sb).astype(float)).mean(axis=0)
    return {"mixes": mixes, "pairs": len(i), "seeds": (len(a), len(b)), "agreement": point,
            "ci_low": float(np.percentile(shares, tail)), "ci_high": float(np.percentile(shares, 100 - tail)),
            "pair_agreement": {f"{mixes[x]} vs {mixes[y]}": float(p) for x, y, p in zip(i, j, per_pair, strict=True)}}


def size_agreements(results: dict[str, pd.DataFrame], metrics: list[str], level: float = 0.95,
                    n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """:func:`size_agreement` for every metric and every two sizes (``results``: size -> results table)."""
    rows = []
    for metric in metrics:
        for small, large in itertools.combinations(results, 2):
            a, b = _wide(results[small], metric), _wide(results[large], metric)
            if a.empty or b.empty or len(set(a.columns) & set(b.columns)) < 2:
                continue
            agree = size_agreement(a, b, level, n_boot, seed)
            rows.append({"metric": metric, "size_a": small, "size_b": large, "mixes": len(agree["mixes"]),
                         "pairs": agree["pairs"], "agreement": agree["agreement"], "ci_low": agree["ci_low"],
                         "ci_high": agree["ci_high"],
                         "pair_agreement": "; ".join(f"{k} {v:.2f}" for k, v in agree["pair_agreement"].items())})
    return pd.DataFrame(rows, columns=["metric", "size_a", "size_b", "mixes", "pairs", "agreement", "ci_low",
                                       "ci_high", "pair_agreement"])


def repetition_law(params: float, sources: dict[str, tuple[float, float]]) -> dict[str, float]:
    """The data-constrained law's loss for a proxy whose sources are seen ``seen`` times from ``unique`` tokens.

    ``sources``: source -> (unique tokens available, tokens the proxy trained on from it). Muennighoff et al.'s
    effective data (:func:`mixtures.scaling.effective_data`) is taken per source and summed, the effective
    parameters use the total unique tokens; the loss is the paper's fitted ``E + A / N'^alpha + B / D'^beta``.
    The law knows nothing of quality: it predicts only what repetition costs. Its constants are fitted on
    GPT-2-tokenised C4 at 10M-9B parameters, so at proxy scale read its *relative* change, not its level.
    """
    from mixtures import scaling

    unique = sum(u for u, _ in sources.values())
    seen = sum(s for _, s in sources.values())
    if unique <= 0 or seen <= 0 or params <= 0:
        raise ValueError("repetition_law needs positive params, unique and seen tokens")
    d_eff = sum(scaling.effective_data(u, s / u) for u, s in sources.values() if u > 0)
    n_eff = scaling.effective_params(params, unique)
    loss = scaling.E + scaling.A / n_eff**scaling.ALPHA + scaling.B / d_eff**scaling.BETA
    return {"unique_tokens": unique, "seen_tokens": seen, "effective_tokens": d_eff, "effective_params": n_eff,
            "law_loss": loss}

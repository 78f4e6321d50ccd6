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
                 settings: dict[str, object], seed: int = 0, lead: str | None = None,
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

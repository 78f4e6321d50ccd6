"""``ablations/<name>/report.html``: an ablation as charts (ranking with intervals, who beats whom, loss curves).

Built from the tables :mod:`mixtures.ablation_stats` computes (summary, pairwise, stability) and the loss curves;
one self-contained page like the run report (:mod:`mixtures.report.html`), the same bytes for the same results.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from mixtures.report import html as H
from mixtures.report import svg

MAX_METRIC_CHARTS = 24


def _ranked(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    part = summary[summary.metric == metric]
    if part.empty:
        return part
    return part.sort_values(["mean", "mix"], ascending=[not bool(part.higher_is_better.iloc[0]), True])


def _colors(summary: pd.DataFrame) -> dict[str, str]:
    """One colour per mix (sorted by name), the same in every chart of the page."""
    return {m: svg.PALETTE[i % len(svg.PALETTE)] for i, m in enumerate(sorted(summary.mix.unique()))}


def _ranking_chart(summary: pd.DataFrame, metric: str, width: int = 640, long: bool = True) -> str | None:
    part = _ranked(summary, metric)
    if part.empty:
        return None
    better = "higher" if part.higher_is_better.iloc[0] else "lower"
    rows = [(r.mix, float(r["mean"]), float(r.ci_low), float(r.ci_high)) for _, r in part.iterrows()]
    title = (f"{metric}: mean over seeds, 95% bootstrap interval ({better} is better)" if long
             else f"{metric} ({better} is better)")
    colors = _colors(summary)
    return svg.intervals(rows, title, metric, width=width, colors=[colors[r[0]] for r in rows])


def _heatmap(pairs: pd.DataFrame, metric: str) -> str | None:
    part = pairs[pairs.metric == metric]
    if part.empty:
        return None
    mixes = sorted(set(part.a) | set(part.b))
    p = {(r.a, r.b): float(r.p_a_beats_b) for r in part.itertuples()}
    matrix = [[None if a == b else p.get((a, b)) for b in mixes] for a in mixes]
    return svg.heatmap(mixes, matrix, f"{metric}: P(row beats column), paired bootstrap over seeds")


def _curves(curves: pd.DataFrame) -> str | None:
    if curves.empty:
        return None
    series: list[svg.Series] = []
    for i, (mix, group) in enumerate(curves.groupby("mix", sort=True)):
        color = svg.PALETTE[i % len(svg.PALETTE)]
        for seed, run in group.groupby("seed", sort=True):
            run = run.sort_values("step")
            series.append(svg.Series(f"{mix} seed {seed}", run["loss"].astype(float).tolist(),
                                     run["step"].astype(float).tolist(), color, width=0.9, opacity=0.35,
                                     legend=False))
        mean = group.groupby("step")["loss"].mean().sort_index()
        series.append(svg.Series(f"{mix} (mean of {group.seed.nunique()} seeds)", mean.astype(float).tolist(),
                                 mean.index.astype(float).tolist(), color, width=2.4))
    return svg.lines(series, "Training loss per step: each seed (thin) and the mean per mix (thick)", "step",
                     "loss (nats/token)", width=760, height=340)


def _summary_table(summary: pd.DataFrame) -> H.Markup:
    rows = [[H.code(r.metric), r.mix, int(r.seeds), float(r["mean"]), float(r["std"]),
             H.text(f"[{r.ci_low:.4f}, {r.ci_high:.4f}]"), "higher" if r.higher_is_better else "lower"]
            for _, r in summary.iterrows()]
    return H.table(["metric", "mix", "seeds", "mean", "seed std", "95% CI", "better"], rows)


def _pairwise_table(pairs: pd.DataFrame) -> H.Markup:
    rows = [[H.code(r.metric), r.a, r.b, H.text(f"{r.p_a_beats_b:.2f}"), H.text(f"{r.seed_pair_share:.2f}"),
             int(r.seeds)] for r in pairs[pairs.p_a_beats_b >= 0.5].itertuples()]
    return H.table(["metric", "A", "B", "P(A beats B)", "share of seed pairs A wins", "seeds"], rows)


def _stability_table(stability: pd.DataFrame) -> H.Markup:
    rows = [[H.code(r.metric), int(r.mixes), int(r.seed_pairs),
             H.text(f"{r.mean_tau:.2f}" if r.seed_pairs else "n/a (needs 2 mixes and 2 seeds)"),
             H.text(f"{r.min_tau:.2f}" if r.seed_pairs else "n/a")] for r in stability.itertuples()]
    return H.table(["metric", "mixes", "seed pairs", "mean Kendall tau", "min Kendall tau"], rows)


def render_ablation_html(summary: pd.DataFrame, pairs: pd.DataFrame, stability: pd.DataFrame,
                         curves: pd.DataFrame, title: str, settings: Mapping[str, object], lead: str | None = None,
                         sections: dict[str, list[str]] | None = None) -> str:
    """The ablation page from the already computed tables."""
    lead = lead if lead is not None and (summary.metric == lead).any() else (
        "bpb/shared_mean" if (summary.metric == "bpb/shared_mean").any()
        else (str(summary.metric.iloc[0]) if not summary.empty else None))
    out: list[H.Section] = [H.Section("settings", "Settings", [H.table(
        ["setting", "value"], [[k, H.markdown_inline(str(v))] for k, v in settings.items()])])]
    if lead is not None:
        body = [H.para("The mixes ranked by the lead metric: the dot is the mean over seeds, the whisker a 95% "
                       "percentile bootstrap interval of that mean (seeds resampled). Overlapping whiskers mean "
                       "the seeds do not settle the order; the matrix beside says how often one mix beats "
                       "another when the same init seeds are resampled.")]
        body.append(H.charts(*(c for c in (_ranking_chart(summary, lead), _heatmap(pairs, lead)) if c)))
        out.append(H.Section("ranking", f"Ranking by {lead}", body))
    for heading, lines in (sections or {}).items():
        out.append(H.Section(H.slug(heading), heading, [H.markdown_block(lines)]))
    metrics = [m for m in summary.metric.drop_duplicates().tolist() if m != lead]
    charts = [c for c in (_ranking_chart(summary, m, 420, long=False) for m in metrics[:MAX_METRIC_CHARTS]) if c]
    if charts:
        more = len(metrics) - MAX_METRIC_CHARTS
        out.append(H.Section("metrics", "Every metric", [
            H.para("bpb = bits per byte on held-out text (lower is better); mc = multiple-choice accuracy (higher "
                   "is better). bpb/* are each mix's own validation texts, so only bpb_common/* compares mixes on "
                   "the same bytes." + (f" {more} more metrics are in the tables below." if more > 0 else "")),
            H.charts(*charts)]))
    curve = _curves(curves)
    if curve:
        out.append(H.Section("curves", "Loss curves", [H.charts(curve)]))
    heatmaps = [h for h in (_heatmap(pairs, m) for m in metrics[:MAX_METRIC_CHARTS]) if h]
    pair_body: list[str] = [
        H.para("P(A beats B): paired bootstrap over the seeds both mixes share, the share of 2000 resamples in "
               "which A's mean is better; the last column is exact: the share of all (A seed, B seed) pairs in "
               "which A's proxy did better. Rows with P >= 0.5; the converse is 1 - P."), _pairwise_table(pairs)]
    if heatmaps:
        pair_body.append(H.details(f"Matrices for the other metrics ({len(heatmaps)})", [H.charts(*heatmaps)]))
    out += [H.Section("pairwise", "Pairwise", pair_body),
            H.Section("stability", "Ranking stability across seeds", [
                H.para("Kendall tau between the orderings of the mixes by two seeds (1 = same order, -1 = "
                       "reversed), over every pair of seeds. Low tau: treat the ranking as unsettled."),
                _stability_table(stability)]),
            H.Section("results", "All results", [_summary_table(summary)])]
    mixes = summary.mix.nunique() if not summary.empty else 0
    seeds = int(summary.seeds.max()) if not summary.empty else 0
    return H.page(f"Mixlab ablation: {title}", f"{mixes} mixes, up to {seeds} seeds each", out)


def write_ablation_html(path: Path, summary: pd.DataFrame, pairs: pd.DataFrame, stability: pd.DataFrame,
                        curves: pd.DataFrame, title: str, settings: Mapping[str, object], lead: str | None = None,
                        sections: dict[str, list[str]] | None = None) -> Path:
    """Write the ablation's ``report.html``; return its path."""
    return H.write_page(path, render_ablation_html(summary, pairs, stability, curves, title, settings, lead,
                                                   sections))

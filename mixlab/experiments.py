"""Experiments: ablations over spec variants (leave one rule out, sweep one parameter) and across proxy sizes.

The driver only: variants come from :mod:`mixtures.variants` (written as specs into ``<root>/variants/``), runs are
built by :mod:`mixlab.jobs`, proxies trained and scored by :mod:`proxy_train.ablate`, the statistics are
:mod:`mixtures.ablation_stats`'. This module writes the experiment reports from their tables.

Layout of ``ablations/<name>/`` (one proxy size: the ablation itself; several: one ablation per size)::

    variants/<variant>.yaml         every spec of the experiment (full size; the baseline first)
    specs/, runs/                   tiny copies and their runs (--tiny-docs)
    config.json, results.parquet, report.md, ...      the ablation (one size), or
    proxy-<size>/config.json, ...                     one ablation per size (--proxy tiny,small)
    attribution.md, effects.csv     leave one out: each rule's effect on every metric, with intervals
    sweep.md, sweep.csv             sweep: the measured curve beside the data-constrained law
    cross_size.md, cross_size.csv   several sizes: does the ranking hold across sizes
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from mixtures import ablation_stats
from mixtures.layout import RunLayout
from mixtures.variants import Variant, write_variants

if TYPE_CHECKING:
    from proxy_train.ablate import Ablation, AblationConfig, Mix

log = logging.getLogger(__name__)

LEAD = "bpb_common/mean"


@dataclass
class Experiment:
    """What an experiment compares and where: its mixes (variants, baseline first), sizes and directories."""

    root: Path
    mixes: list[Mix]
    configs: dict[str, AblationConfig]  # proxy size -> the settings its proxies share
    variants: list[Variant] = field(default_factory=list)
    kind: str = "ablate"  # ablate | leave-one-out | sweep
    command: str = ""
    metric: str = LEAD  # the sweep's curve

    @property
    def baseline(self) -> str | None:
        return next((v.name for v in self.variants if v.baseline), None)

    def ablation_dir(self, size: str) -> Path:
        """The ablation of one proxy size: the root itself when there is one size."""
        return self.root if len(self.configs) == 1 else self.root / f"proxy-{size}"


def prepare_variants(variants: list[Variant], root: Path, origin: str, tiny_docs: int | None,
                     source_docs: dict[str, int] | None, budget_tokens: int | None = None) -> list[Mix]:
    """Write the variants as specs into ``root/variants/`` and build each (as a tiny copy with ``tiny_docs``)."""
    from mixlab.jobs import resolve_variant

    paths = write_variants(variants, root / "variants", origin)
    log.info("experiment %s: %d specs in %s", root.name, len(paths), root / "variants")
    return [resolve_variant(path, root, tiny_docs, source_docs, budget_tokens) for path in paths]


def run(experiment: Experiment, seeds: int) -> dict[str, Path]:
    """Run every size's ablation, then the experiment's reports; returns report name -> path."""
    from proxy_train.ablate import open_ablation, run_ablation

    reports: dict[str, Path] = {}
    ablations: dict[str, Ablation] = {}
    warn_repeats(experiment)
    for size, cfg in experiment.configs.items():
        if experiment.baseline is not None:
            cfg = replace(cfg, reference_mix=experiment.baseline)
        ablation = open_ablation(experiment.ablation_dir(size), cfg)
        ablation.mixes = experiment.mixes
        reports[f"report ({size})"] = run_ablation(ablation, seeds)
        ablations[size] = ablation
    results = {size: _results(a, seeds) for size, a in ablations.items()}
    if len(results) > 1:
        reports["cross-size"] = write_cross_size(experiment, results)
    if experiment.kind == "sweep":
        reports["sweep"] = write_sweep(experiment, results, ablations, experiment.metric)
    elif experiment.kind == "leave-one-out":
        reports["attribution"] = write_attribution(experiment, results)
    return reports


def warn_repeats(experiment: Experiment) -> None:
    """Warn when a proxy trains on more tokens than a mix's streams hold (its documents then repeat)."""
    from proxy_train.train import SIZE_DEFAULTS

    for size, cfg in experiment.configs.items():
        tokens = cfg.tokens or SIZE_DEFAULTS[size]["tokens"]
        for mix in experiment.mixes:
            plan = mix.run_dir / "plan.json"
            total = json.loads(plan.read_text(encoding="utf-8")).get("total_tokens") if plan.is_file() else None
            if total and tokens > total:
                log.warning("%s proxy: %d tokens, but %s's streams hold %d: its documents repeat %.1f times more "
                            "than the plan says (raise the mixture's budget_tokens)", size, tokens, mix.name, total,
                            tokens / total)


def _results(ablation: Ablation, seeds: int) -> pd.DataFrame:
    from proxy_train.ablate import shared_mean

    results = pd.read_parquet(ablation.results_path)
    results = results[(results.seed < seeds) & results.mix.isin([m.name for m in ablation.mixes])]
    return pd.concat([results, shared_mean(results)], ignore_index=True)


# ---- what a variant's run kept ----------------------------------------------------------------------------------

def kept(run_dir: Path, source: str) -> dict[str, float]:
    """Documents and characters the run kept of ``source`` (stats.json), and its plan (plan.json) if built."""
    layout = RunLayout(run_dir)
    out: dict[str, float] = {}
    if layout.stats.is_file():
        stats = json.loads(layout.stats.read_text(encoding="utf-8"))["sources"].get(source, {})
        out.update(docs=stats.get("kept", {}).get("docs", 0), chars=stats.get("kept", {}).get("chars", 0))
    plan = run_dir / "plan.json"
    if plan.is_file():
        data = json.loads(plan.read_text(encoding="utf-8"))
        total = data.get("total_tokens") or 1
        for row in data["sources"]:
            if row["source"] == source:
                out.update(unique_tokens=_unique(row), share=row["target_tokens"] / total)
    return out


def _unique(row: dict) -> int:
    """Unique tokens of a source in the streams: all it has when it repeats, the sample when it is downsampled."""
    return min(int(row["available_tokens"]), int(row["target_tokens"]))


def _pct(new: float, old: float) -> str:
    return f"{(new - old) / old:+.1%}" if old else "n/a"


def _interval(effect: float, low: float, high: float) -> str:
    return f"{effect:+.4f} [{low:+.4f}, {high:+.4f}]"


def _settings(experiment: Experiment, results: dict[str, pd.DataFrame]) -> list[str]:
    lines = [f"- command: `{experiment.command}`" if experiment.command else "- command: (Python API)"]
    for size, cfg in experiment.configs.items():
        n = results[size].groupby("mix").seed.nunique()
        lines.append(f"- proxy {size}: {cfg.tokens or 'the size default'} tokens, {int(n.min()) if len(n) else 0} "
                     f"seeds per variant; report: `{experiment.ablation_dir(size).relative_to(experiment.root)}"
                     "/report.md`".replace("`./report.md`", "`report.md`"))
    lines.append(f"- common evaluation set: the documents every variant held out, scored on the baseline "
                 f"({experiment.baseline})'s cleaned text, so a variant that edits lines differently is scored "
                 "on the same bytes; `bpb_common/mean` averages the sources")
    lines.append("- effect = variant - baseline, paired by seed; 95% percentile bootstrap interval over seeds (2000 "
                 "draws; with 3 seeds coarse and somewhat too narrow); P(better) = paired-bootstrap probability "
                 "that the variant beats the baseline. For bpb, + is worse.")
    return lines


# ---- leave one out ----------------------------------------------------------------------------------------------

def write_attribution(experiment: Experiment, results: dict[str, pd.DataFrame], source: str | None = None) -> Path:
    """attribution.md and effects.csv: each rule's effect on every metric, documents kept, the variant specs."""
    base = experiment.baseline
    assert base is not None
    source = source or _varied_source(experiment)
    runs = {m.name: m.run_dir for m in experiment.mixes}
    base_kept = kept(runs[base], source)
    labels = {v.name: v for v in experiment.variants}
    tables = []
    lines = [f"# Rule attribution: {base}, source {source}", "", "## Settings", "", *_settings(experiment, results)]
    for size, table in results.items():
        effects = ablation_stats.paired_effects(table, base, seed=experiment.configs[size].bootstrap_seed)
        effects.insert(0, "size", size)
        tables.append(effects)
        lead = f"bpb_common/{source}" if f"bpb_common/{source}" in set(effects.metric) else LEAD
        lines += ["", f"## Effect of removing each rule on `{lead}` ({size} proxy)", "",
                  f"Baseline {base}: {source} keeps {base_kept.get('docs', 0):,.0f} documents "
                  f"({base_kept.get('chars', 0):,.0f} characters).", "",
                  f"| rule removed | {source} docs kept | {source} chars kept | effect on {lead} [95% CI] | "
                  f"P(better) | effect on {LEAD} [95% CI] |", "|---|---:|---:|---|---:|---|"]
        part = effects[effects.metric == lead].sort_values("effect")
        mean = effects[effects.metric == LEAD].set_index("variant")
        sentences = []
        for r in part.itertuples():
            k = kept(runs[r.variant], source)
            m = mean.loc[r.variant] if r.variant in mean.index else None
            on_mean = _interval(m.effect, m.ci_low, m.ci_high) if m is not None else "n/a"
            rule = labels[r.variant].label.removeprefix("without ") if r.variant in labels else r.variant
            lines.append(f"| {rule} | {_pct(k.get('docs', 0), base_kept.get('docs', 0))} | "
                         f"{_pct(k.get('chars', 0), base_kept.get('chars', 0))} | "
                         f"{_interval(r.effect, r.ci_low, r.ci_high)} | {r.p_better:.2f} | {on_mean} |")
            word = "worse" if (r.effect > 0) != r.higher_is_better else "better"
            sure = "the interval excludes 0" if r.ci_low > 0 or r.ci_high < 0 else "the interval includes 0"
            sentences.append(f"- Removing {rule.split(' (')[0]} changes {lead} by "
                             f"{_interval(r.effect, r.ci_low, r.ci_high)} ({word}; {sure}) and keeps "
                             f"{_pct(k.get('docs', 0), base_kept.get('docs', 0))} documents of {source}.")
        lines += ["", *sentences]
    effects_all = pd.concat(tables, ignore_index=True)
    effects_all.to_csv(experiment.root / "effects.csv", index=False)
    lines += ["", "## Every metric", "", "All effects (variant - baseline) with intervals are in `effects.csv` "
              "(one row per size, metric and variant: baseline and variant means, effect, ci_low, ci_high, "
              "p_better).", ""]
    lines += _variant_list(experiment)
    path = experiment.root / "attribution.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _varied_source(experiment: Experiment) -> str:
    """The source whose filters the variants change (from the change strings: ``sources.<s>.filters...``)."""
    found = {v.change.split(".")[1] for v in experiment.variants if v.change.startswith("sources.")}
    return sorted(found)[0] if found else "web"


def _variant_list(experiment: Experiment) -> list[str]:
    lines = ["## Variant specs", "", "| variant | change | spec |", "|---|---|---|"]
    for v in experiment.variants:
        lines.append(f"| {v.name} | {v.label}: {v.change} | `variants/{v.name}.yaml` |")
    return lines


# ---- sweep ------------------------------------------------------------------------------------------------------

def write_sweep(experiment: Experiment, results: dict[str, pd.DataFrame], ablations: dict[str, Ablation],
                metric: str = LEAD) -> Path:
    """sweep.md and sweep.csv: per value, what the source kept, epochs, the measured metric and the law's loss."""
    base = experiment.baseline
    assert base is not None
    source = _varied_source(experiment)
    runs = {m.name: m.run_dir for m in experiment.mixes}
    rows = []
    for size, table in results.items():
        summary = ablation_stats.summarize(table, seed=experiment.configs[size].bootstrap_seed)
        effects = ablation_stats.paired_effects(table, base, seed=experiment.configs[size].bootstrap_seed)
        params, tokens = _proxy_scale(ablations[size])
        for v in experiment.variants:
            s = summary[(summary.metric == metric) & (summary.mix == v.name)]
            if s.empty:
                continue
            e = effects[(effects.metric == metric) & (effects.variant == v.name)]
            row = {"size": size, "variant": v.name, "value": json.dumps(v.value), "metric": metric,
                   "mean": float(s["mean"].iloc[0]), "ci_low": float(s.ci_low.iloc[0]),
                   "ci_high": float(s.ci_high.iloc[0]), "effect": float(e.effect.iloc[0]) if len(e) else 0.0,
                   "effect_low": float(e.ci_low.iloc[0]) if len(e) else 0.0,
                   "effect_high": float(e.ci_high.iloc[0]) if len(e) else 0.0, "params": params, "tokens": tokens}
            k = kept(runs[v.name], source)
            row.update({f"{source}_docs": k.get("docs"), f"{source}_unique_tokens": k.get("unique_tokens")})
            law = _law(runs[v.name], params, tokens)
            row.update(law)
            if law and "unique_tokens" in k and "share" in k:
                row[f"{source}_epochs"] = tokens * k["share"] / k["unique_tokens"] if k["unique_tokens"] else None
            rows.append(row)
    table = pd.DataFrame(rows)
    for size in results:
        part = table[table["size"] == size] if len(table) else table
        if len(part) and "law_loss" in part:
            first = part.iloc[0]
            table.loc[part.index, "law_change"] = part.law_loss / first.law_loss - 1
            table.loc[part.index, "measured_change"] = part["mean"] / first["mean"] - 1
    table.to_csv(experiment.root / "sweep.csv", index=False)
    path_label = experiment.variants[0].change.split(":")[0] if experiment.variants else "?"
    lines = [f"# Sweep: `{path_label}` on {base.split('--')[0]}", "", "## Settings", "",
             *_settings(experiment, results),
             "- law: Muennighoff et al. 2023 (mixtures/scaling.py) with the proxy's parameters and tokens; each "
             "source's effective data D' from its unique tokens in the streams (plan.json: all it has when it "
             "repeats, the sample when downsampled) and the tokens the proxy drew from it (its share of the "
             "proxy's budget), summed. The law prices repetition only, never quality, and its "
             "constants are fitted at 10M-9B parameters on GPT-2 tokens: compare its *relative* change with the "
             "measured one. measured - law is what the swept setting did beyond the repetition it causes."]
    for size in results:
        part = table[table["size"] == size] if len(table) else table
        lines += ["", f"## {metric} per value ({size} proxy)", "",
                  f"| value | {source} docs kept | {source} unique tokens in the streams | {source} epochs seen | "
                  f"{metric} [95% CI] | vs first value [95% CI] | measured change | law loss | law change | "
                  "measured - law |",
                  "|---|---:|---:|---:|---|---|---:|---:|---:|---:|"]
        for r in part.to_dict("records"):
            epochs, law_change, change = r.get(f"{source}_epochs"), r.get("law_change"), r.get("measured_change")
            docs, unique = r.get(f"{source}_docs") or 0, r.get(f"{source}_unique_tokens") or 0
            cells = [r["value"], f"{docs:,.0f}", f"{unique:,.0f}",
                     f"{epochs:.2f}" if epochs is not None else "-",
                     f"{r['mean']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]",
                     _interval(r["effect"], r["effect_low"], r["effect_high"]), f"{change:+.2%}"]
            if law_change is not None and r.get("law_loss") is not None:
                cells += [f"{r['law_loss']:.4f}", f"{law_change:+.2%}", f"{change - law_change:+.2%}"]
            else:
                cells += ["-", "-", "-"]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *_variant_list(experiment)]
    path = experiment.root / "sweep.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _proxy_scale(ablation: Ablation) -> tuple[float, float]:
    """(parameters, tokens) of the ablation's proxies, from a trained proxy's summary."""
    first = next(iter(sorted(ablation.root.glob("proxies/*/seed-*/summary.parquet"))), None)
    if first is None:
        return float("nan"), float("nan")
    row = pd.read_parquet(first).iloc[0]
    return float(row["params"]), float(row["tokens"])


def _law(run_dir: Path, params: float, tokens: float) -> dict[str, float]:
    """The repetition law's loss for a proxy of ``params`` trained ``tokens`` on this run's plan."""
    plan = run_dir / "plan.json"
    if not plan.is_file() or math.isnan(params):  # NaN: no trained proxy
        return {}
    data = json.loads(plan.read_text(encoding="utf-8"))
    total = data.get("total_tokens") or 1
    sources = {r["source"]: (float(_unique(r)), tokens * r["target_tokens"] / total)
               for r in data["sources"] if r["target_tokens"] > 0 and r["available_tokens"] > 0}
    return ablation_stats.repetition_law(params, sources) if sources else {}


# ---- across proxy sizes -----------------------------------------------------------------------------------------

def write_cross_size(experiment: Experiment, results: dict[str, pd.DataFrame]) -> Path:
    """cross_size.md and cross_size.csv: per metric, how often two sizes order the mixes the same way."""
    metrics = sorted({m for t in results.values() for m in t.metric.unique() if m.startswith("bpb_common/")})
    metrics = [LEAD] + [m for m in metrics if m != LEAD] if LEAD in metrics else metrics
    agree = ablation_stats.size_agreements(results, metrics)
    agree.to_csv(experiment.root / "cross_size.csv", index=False)
    sizes = list(results)
    lines = [f"# Does the ranking hold across proxy sizes? {', '.join(sizes)}", "",
             "DataDecide (Magnusson et al. 2025) asks whether the order small proxies give two mixtures is the order "
             "a larger model gives them (decision accuracy). Here: for every two sizes and every metric, the share "
             "of mix pairs the two sizes order the same way (by the mean over seeds; a tie counts half), with a 95% "
             "bootstrap interval (each size's seeds resampled independently, 2000 draws), and per pair the share "
             "of resamples in which they agree.", "",
             "| metric | sizes | mixes | mix pairs | agreement [95% CI] | per pair |", "|---|---|---:|---:|---|---|"]
    for r in agree.itertuples():
        lines.append(f"| {r.metric} | {r.size_a} vs {r.size_b} | {r.mixes} | {r.pairs} | {r.agreement:.2f} "
                     f"[{r.ci_low:.2f}, {r.ci_high:.2f}] | {r.pair_agreement} |")
    lines += ["", f"## Rankings by `{LEAD}` and seed-to-seed Kendall tau per size", "",
              "| size | ranking (best first, mean over seeds) | mean Kendall tau | min Kendall tau |",
              "|---|---|---:|---:|"]
    for size, table in results.items():
        part = table[table.metric == LEAD]
        order = part.groupby("mix")["value"].mean().sort_values()
        stab = ablation_stats.ranking_stability(part) if len(part) else pd.DataFrame()
        tau = stab.iloc[0] if len(stab) else None
        lines.append(f"| {size} | {' < '.join(f'{m} ({v:.4f})' for m, v in order.items())} | "
                     f"{tau.mean_tau:.2f} | {tau.min_tau:.2f} |" if tau is not None else f"| {size} | - | - | - |")
    path = experiment.root / "cross_size.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path

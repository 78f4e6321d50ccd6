"""Turn a run's event counts into ``stats.json``, a funnel chart and a readable ``report.md``."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from filters.jsonl import iter_jsonl
from mixtures.chains import stage_names
from mixtures.contamination import write_decontam_outputs
from mixtures.layout import RunLayout
from mixtures.report.dedup import render_section as render_dedup_section
from mixtures.report.quality import quality_section
from mixtures.report.svg import save_svg
from mixtures.report.tables import markdown_table
from mixtures.spec import Spec


def load_events(path: Path) -> list[dict[str, Any]]:
    """The run's combined event counts (``_work/events.jsonl``)."""
    return [row for _, row in iter_jsonl(path)]


def build_stats(spec: Spec, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Per source: input, quarantined, removed per rule (documents and characters), line edits, kept, funnel."""
    per: dict[str, dict[str, Any]] = {
        s: {"input": {"docs": 0, "chars": 0}, "quarantined": {"docs": 0, "by_reason": {}},
            "removed": {}, "line_edits": {}, "kept": {"docs": 0, "chars": 0}}
        for s in sorted(spec.sources)
    }
    removed_by_stage: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for ev in events:
        st, kind = per[ev["source"]], ev["kind"].split("\t")
        if kind[0] in ("input", "kept"):
            st[kind[0]] = {"docs": ev["docs"], "chars": ev["chars"]}
        elif kind[0] == "quarantine":
            st["quarantined"]["docs"] += ev["docs"]
            st["quarantined"]["by_reason"][kind[1]] = ev["docs"]
        elif kind[0] == "removed":
            stage = int(kind[1])
            st["removed"][kind[2]] = {"docs": ev["docs"], "chars": ev["chars"], "stage": stage}
            removed_by_stage[ev["source"]][stage] += ev["docs"]
        elif kind[0] == "edit":
            st["line_edits"][kind[1]] = ev["chars"]
    for source, st in per.items():
        remaining, funnel = st["input"]["docs"], []
        for stage, name in sorted(stage_names(spec, source).items()):
            gone = removed_by_stage[source].get(stage, 0)
            funnel.append({"stage": stage, "step": name, "docs_in": remaining, "removed": gone,
                           "docs_out": remaining - gone})
            remaining -= gone
        st["funnel"] = funnel
        st["removed"] = dict(sorted(st["removed"].items(), key=lambda kv: (kv[1]["stage"], kv[0])))
    return {"spec": spec.name, "sources": per}


def funnel_chart(stats: dict[str, Any], path: Path) -> None:
    """Horizontal bars: documents left after each step, one panel per source (SVG, same bytes every run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = list(stats["sources"])
    fig, axes = plt.subplots(len(sources), 1, figsize=(8, 1.2 + 0.45 * sum(
        len(stats["sources"][s]["funnel"]) + 1 for s in sources)), squeeze=False)
    for ax, source in zip(axes[:, 0], sources, strict=True):
        st = stats["sources"][source]
        labels = ["input", *(f"{f['stage']}: {f['step']}" for f in st["funnel"])]
        values = [st["input"]["docs"], *(f["docs_out"] for f in st["funnel"])]
        ax.barh(labels[::-1], values[::-1], color="#4C72B0")
        for y, v in enumerate(values[::-1]):
            ax.text(v, y, f" {v:,}", va="center", fontsize=8)
        ax.set_title(f"{source}: documents remaining after each step", fontsize=10, loc="left")
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    save_svg(fig, path)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def render_markdown(stats: dict[str, Any]) -> str:
    """The run report: per source the funnel, each rule's removals, line edits and quarantine.

    No timings: the report is a compared output (two runs of a spec give the same bytes); the pipeline's wall time
    is in ``_work/clean_timings.json``.
    """
    out = [f"# Cleaning report: {stats['spec']}", "", "Charts and example documents: `report.html`.", ""]
    out += ["![funnel](funnel.svg)", ""]
    out += markdown_table(
        ["source", "input docs", "quarantined", "kept docs", "kept chars"],
        [(source, f"{st['input']['docs']:,}", f"{st['quarantined']['docs']:,}",
          f"{st['kept']['docs']:,} ({_pct(st['kept']['docs'], st['input']['docs'])})",
          f"{st['kept']['chars']:,} ({_pct(st['kept']['chars'], st['input']['chars'])})")
         for source, st in stats["sources"].items()], "lrrrr")
    for source, st in stats["sources"].items():
        out += ["", f"## {source}", ""]
        out += markdown_table(["stage", "step", "docs in", "removed", "docs out"],
                              [(f["stage"], f["step"], f"{f['docs_in']:,}", f"{f['removed']:,}", f"{f['docs_out']:,}")
                               for f in st["funnel"]], "rlrrr")
        if st["removed"]:
            out += ["", *markdown_table(["removal reason", "docs", "chars"],
                                        [(f"`{r}`", f"{v['docs']:,}", f"{v['chars']:,}")
                                         for r, v in st["removed"].items()], "lrr")]
        if st["line_edits"]:
            out += ["", *markdown_table(["line-level reason (page kept or not)", "chars removed"],
                                        [(f"`{r}`", f"{c:,}") for r, c in sorted(st["line_edits"].items())], "lr")]
        if st["quarantined"]["docs"]:
            reasons = sorted(st["quarantined"]["by_reason"].items())
            out += ["", *markdown_table(["quarantine reason", "records"], [(f"`{r}`", f"{n:,}") for r, n in reasons],
                                        "lr")]
            out += ["", f"Quarantined records with file and line: `quarantine/{source}/`."]
    return "\n".join(out) + "\n"


def write_stats_and_report(spec: Spec, layout: RunLayout, seconds: float | None = None) -> dict[str, Any]:
    """Write stats.json, funnel.svg and report.md for a finished run (``seconds`` to _work/); return the stats."""
    stats = build_stats(spec, load_events(layout.events))
    if seconds is not None:
        layout.work.mkdir(parents=True, exist_ok=True)
        layout.clean_timings.write_text(json.dumps({"pipeline_seconds": round(seconds, 3)}) + "\n", encoding="utf-8")
    layout.stats.write_text(json.dumps(stats, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    funnel_chart(stats, layout.funnel_chart)
    dedup = render_dedup_section(layout.dedup_clusters)
    decontam = write_decontam_outputs(spec, layout.root)
    quality = quality_section(layout.root)
    layout.report.write_text(render_markdown(stats) + dedup + decontam + quality, encoding="utf-8")
    return stats

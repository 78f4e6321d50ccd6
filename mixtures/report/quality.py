"""The report's language and quality section: languages per source, score distributions, examples near the cut.

Reads the run's kept and removed Parquet files; a run without ``lang`` or ``quality_score`` columns filled gets
no section. The examples are the kept documents with the lowest scores and the removed ones with the highest,
so a curator can judge by eye whether the classifier's cut is where they would put it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from mixtures.layout import RunLayout
from mixtures.report.svg import save_svg
from mixtures.report.tables import markdown_table

COLUMNS = ["id", "source", "lang", "lang_score", "quality_score"]  # text is read only for the examples
EXAMPLES = 3
SNIPPET = 160
BINS = 20


def _rows(directory: Path, extra: list[str]) -> list[dict[str, Any]]:
    return [{**row, "path": str(path)} for path in sorted(directory.glob("*/*.parquet"))
            for row in pq.read_table(path, columns=COLUMNS + extra).to_pylist()]


def _with_text(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with their ``text``, read from their Parquet files for just these ids."""
    texts: dict[tuple[str, str], str] = {}
    for path in sorted({r["path"] for r in rows}):
        ids = [r["id"] for r in rows if r["path"] == path]
        table = pq.read_table(path, columns=["id", "text"], filters=[("id", "in", ids)])
        texts.update(((path, i), t) for i, t in zip(table["id"].to_pylist(), table["text"].to_pylist(), strict=True))
    return [{**r, "text": texts[(r["path"], r["id"])]} for r in rows]


def _quantile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat[:SNIPPET] + ("…" if len(flat) > SNIPPET else "")  # the table writer escapes "|"


def _language_table(kept: list[dict[str, Any]]) -> list[str]:
    by_source: dict[str, Counter[str]] = {}
    for row in kept:
        if row["lang"] is not None:
            by_source.setdefault(row["source"], Counter())[row["lang"]] += 1
    if not by_source:
        return []
    rows = []
    for source, counts in sorted(by_source.items()):
        total = sum(counts.values())
        rows.append((source, f"{total:,}", ", ".join(f"{lang} {100 * n / total:.0f}%"
                                                       for lang, n in counts.most_common(5))))
    return ["", "### Languages of kept documents", "",
            *markdown_table(["source", "docs", "top languages"], rows, "lrl")]


def _histogram_svg(scores: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    edges = [i / BINS for i in range(BINS + 1)]
    for source, values in sorted(scores.items()):
        counts = [0] * BINS
        for s in values:
            counts[min(int(s * BINS), BINS - 1)] += 1
        ax.stairs([c / len(values) for c in counts], edges, label=f"{source} (n={len(values):,})", linewidth=1.5)
    ax.set_xlabel("quality_score")
    ax.set_ylabel("share of scored documents")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_svg(fig, path)


def _examples(title: str, rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    return ["", title, "", *markdown_table(
        ["score", "id", "reason", "text"],
        [(f"{r['quality_score']:.3g}", f"`{r['id']}`", r.get("reason") or "kept", _snippet(r["text"]))
         for r in _with_text(rows)], "rlll")]


def _quality_tables(kept: list[dict[str, Any]], removed: list[dict[str, Any]], root: Path) -> list[str]:
    scored = [r for r in kept + removed if r["quality_score"] is not None]
    if not scored:
        return []
    by_source: dict[str, list[float]] = {}
    for row in scored:
        by_source.setdefault(row["source"], []).append(row["quality_score"])
    _histogram_svg(by_source, root / "quality_scores.svg")
    rows = []
    for source, values in sorted(by_source.items()):
        values.sort()
        gone = sum(1 for r in removed if r["source"] == source and (r["reason"] or "").startswith("quality."))
        rows.append((source, f"{len(values):,}", f"{sum(values) / len(values):.3f}", f"{_quantile(values, 0.1):.3f}",
                     f"{_quantile(values, 0.5):.3f}", f"{_quantile(values, 0.9):.3f}", f"{gone:,}"))
    out = ["", "### Quality scores", "", "![quality scores](quality_scores.svg)", "",
           *markdown_table(["source", "scored", "mean", "p10", "p50", "p90", "removed by quality"], rows, "lrrrrrr")]
    for source in sorted(by_source):
        low_kept = sorted((r for r in kept if r["source"] == source and r["quality_score"] is not None),
                          key=lambda r: (r["quality_score"], r["id"]))[:EXAMPLES]
        high_removed = sorted((r for r in removed if r["source"] == source
                               and (r["reason"] or "").startswith("quality.")),
                              key=lambda r: (-r["quality_score"], r["id"]))[:EXAMPLES]
        if high_removed:
            out += ["", f"#### {source}: documents near the quality cut"]
            out += _examples("Kept, lowest scores:", low_kept)
            out += _examples("Removed, highest scores:", high_removed)
    return out


def quality_section(root: Path) -> str:
    """Markdown for the run in ``root`` (empty when no document was language-tagged or scored)."""
    layout = RunLayout(root)
    kept = _rows(layout.docs, [])
    removed = _rows(layout.removed, ["reason"])
    lines = _language_table(kept) + _quality_tables(kept, removed, root)
    return "\n".join(["", "## Language and quality", *lines]) + "\n" if lines else ""

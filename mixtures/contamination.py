"""Decontamination and PII in a finished run: every hit listed, contamination per source and per task.

- The orchestrator (``mixlab.jobs``) builds each ``decontam`` step's index once into
  ``runs/<mix>/decontam/index-<key>.npz`` before the pipeline, so Beam workers only load it.
- :func:`write_decontam_outputs` (called by the report) writes ``runs/<mix>/decontam/hits.parquet``, one row per
  (document, eval item) with the action taken, and returns the report's markdown section with contamination per
  source and per task and PII masks per source.
- :func:`clean_items` gives the proxy evaluation, per task, the items no document of the run overlapped.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from filters.decontam import EvalIndex
from mixtures.layout import RunLayout
from mixtures.report.tables import markdown_table
from mixtures.spec import Spec

HITS_SCHEMA = pa.schema([("source", pa.string()), ("doc_id", pa.string()), ("task", pa.string()),
                         ("item_id", pa.string()), ("ngrams", pa.int64()), ("action", pa.string()),
                         ("kept", pa.bool_())])
PII_KINDS = ("email", "ip", "phone")


def decontam_dir(run_dir: Path) -> Path:
    """Where a run keeps its eval index and hits."""
    return RunLayout(Path(run_dir)).decontam


def _meta_rows(directory: Path, key: str) -> list[dict[str, Any]]:
    """Rows (id, source, meta as dict) of a run's Parquet directory whose meta JSON mentions ``key``."""
    rows: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*/*.parquet")):
        table = pq.read_table(path, columns=["id", "source", "meta"])
        if table.num_rows == 0:
            continue
        table = table.filter(pc.fill_null(pc.match_substring(table["meta"], f'"{key}"'), False))
        rows.extend({**r, "meta": json.loads(r["meta"])} for r in table.to_pylist())
    return rows


def collect_hits(run_dir: Path) -> list[dict[str, Any]]:
    """One row per (document, eval item) from kept and removed documents' ``meta["contamination"]``."""
    hits = []
    layout = RunLayout(Path(run_dir))
    for directory, kept in ((layout.docs, True), (layout.removed, False)):
        for row in _meta_rows(directory, "contamination"):
            for rec in row["meta"].get("contamination", []):
                hits.append({"source": row["source"], "doc_id": row["id"], "task": rec["task"],
                             "item_id": rec["item"], "ngrams": rec["ngrams"], "action": rec["action"],
                             "kept": kept})
    return sorted(hits, key=lambda h: (h["source"], h["doc_id"], h["task"], h["item_id"]))


def pii_counts(run_dir: Path) -> dict[str, dict[str, int]]:
    """Per source: kept documents with PII masked and masks per kind."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for row in _meta_rows(RunLayout(Path(run_dir)).docs, "pii"):
        counts = row["meta"].get("pii") or {}
        if counts:
            out[row["source"]]["docs"] += 1
            out[row["source"]].update(counts)
    return {s: dict(c) for s, c in sorted(out.items())}


def load_indexes(run_dir: Path) -> list[EvalIndex]:
    """Every eval index built for this run."""
    return [EvalIndex.load(p) for p in sorted(decontam_dir(run_dir).glob("index-*.npz"))]


def _users(spec: Spec, name: str) -> list[str]:
    """Sources whose chain has the step ``name``."""
    return sorted(s for s, src in spec.sources.items() if any(step.name == name for step in src.filters))


def _contamination_tables(sources: list[str], hits: list[dict[str, Any]], indexes: list[EvalIndex]) -> list[str]:
    per_source = []
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for h in hits:
        by_source[h["source"]].append(h)
    for source in sorted(set(sources) | set(by_source)):
        rows = by_source[source]
        actions = {a: len({h["doc_id"] for h in rows if h["action"] == a}) for a in ("drop", "remove_span", "tag")}
        per_source.append((source, f"{len({h['doc_id'] for h in rows}):,}", f"{actions['drop']:,}",
                           f"{actions['remove_span']:,}", f"{actions['tag']:,}",
                           f"{len({(h['task'], h['item_id']) for h in rows}):,}"))
    out = markdown_table(["source", "docs hit", "dropped", "spans removed", "tagged", "eval items hit"], per_source,
                         "lrrrrr")
    items: dict[str, set[str]] = defaultdict(set)
    short: Counter[str] = Counter()
    for index in indexes:
        for task, ids in index.items_of_task().items():
            items[task] |= ids
        short.update(index.short_items)
    per_task = []
    for task in sorted(set(items) | {h["task"] for h in hits}):
        rows = [h for h in hits if h["task"] == task]
        hit_items = {h["item_id"] for h in rows}
        docs = Counter(s for s, _ in {(h["source"], h["doc_id"]) for h in rows})
        hit_by = ", ".join(f"{s} {n}" for s, n in sorted(docs.items()))
        per_task.append((task, f"{len(items[task]):,}", f"{len(hit_items):,}", f"{len(items[task] - hit_items):,}",
                         f"{short[task]:,}", f"{sum(docs.values()):,}", hit_by or "-"))
    return [*out, "", *markdown_table(["task", "items", "items hit", "clean items", "shorter than n (never hit)",
                                       "docs hit", "sources"], per_task, "lrrrrrl")]


def render_section(hits: list[dict[str, Any]], indexes: list[EvalIndex], pii: dict[str, dict[str, int]],
                   decontam: list[str], masked: list[str]) -> str:
    """Markdown: contamination per source and per task, and PII masks per source."""
    out = ["", "## Contamination and PII", ""]
    if decontam:
        n = indexes[0].n if indexes else "?"
        out += [f"Eval items share a normalised {n}-gram with these documents (every hit: "
                "`decontam/hits.parquet`; per document: `meta.contamination`).", ""]
        out += _contamination_tables(decontam, hits, indexes)
    if masked:
        rows = [(source, f"{pii.get(source, {}).get('docs', 0):,}",
                 *(f"{pii.get(source, {}).get(k, 0):,}" for k in PII_KINDS))
                for source in sorted(set(masked) | set(pii))]  # sources with nothing masked get a row of zeros
        out += ["", *markdown_table(["source", "kept docs with PII", "e-mails", "IP addresses", "phone numbers"],
                                    rows, "lrrrr")]
    return "\n".join(out) + "\n"


def write_decontam_outputs(spec: Spec, run_dir: Path) -> str:
    """Write ``decontam/hits.parquet`` and return the report section ('' when the spec uses neither filter)."""
    decontam, masked = _users(spec, "decontam"), _users(spec, "pii")
    if not (decontam or masked):
        return ""
    hits = collect_hits(run_dir) if decontam else []
    if decontam:
        decontam_dir(run_dir).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(hits, schema=HITS_SCHEMA), decontam_dir(run_dir) / "hits.parquet")
    return render_section(hits, load_indexes(run_dir) if decontam else [], pii_counts(run_dir) if masked else {},
                          decontam, masked)


def contaminated_items(run_dir: Path, kept_only: bool = False) -> dict[str, set[str]]:
    """Per task, the eval items some document of the run overlapped (``kept_only``: a document still trained on)."""
    path = decontam_dir(run_dir) / "hits.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no decontamination hits; run a spec with a decontam step first")
    out: dict[str, set[str]] = defaultdict(set)
    for h in pq.read_table(path).to_pylist():
        if not kept_only or h["kept"]:
            out[h["task"]].add(h["item_id"])
    return dict(out)


def clean_items(run_dir: Path, kept_only: bool = False) -> dict[str, set[str]]:
    """Per task, the eval items no document of the run overlapped: the clean subset to score a proxy on.

    By default an item is unclean when any document that reached the decontam step overlapped it, whatever was
    done to that document (GPT-3's convention); ``kept_only`` counts only documents still in the mixture.
    """
    indexes = load_indexes(run_dir)
    if not indexes:
        raise FileNotFoundError(f"{decontam_dir(run_dir)}: no eval index; run a spec with a decontam step first")
    dirty = contaminated_items(run_dir, kept_only)
    out: dict[str, set[str]] = defaultdict(set)
    for index in indexes:
        for task, ids in index.items_of_task().items():
            out[task] |= ids
    return {task: ids - dirty.get(task, set()) for task, ids in sorted(out.items())}

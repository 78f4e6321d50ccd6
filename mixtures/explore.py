"""Questions a reader asks of a finished run, answered with DuckDB over its Parquet files (notebook 1).

How much text is there per source and language, what did each filter remove, what do kept and removed
documents look like (with the reason), and how are quality scores spread. Every sample is seeded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    import duckdb


def _connect() -> duckdb.DuckDBPyConnection:
    import duckdb

    return duckdb.connect()


def _parquet(run_dir: Path, part: str) -> str:
    files = sorted((Path(run_dir) / part).glob("*/*.parquet"))
    if not files:
        raise FileNotFoundError(f"{run_dir}/{part}/ has no Parquet files: run `mixlab mixture SPEC` first")
    names = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    return f"read_parquet([{names}], union_by_name = true)"


def counts(run_dir: Path) -> pd.DataFrame:
    """Kept documents, characters and whitespace-separated words per source and language."""
    query = f"""
        SELECT source, coalesce(lang, '(not identified)') AS lang, count(*) AS docs,
               sum(n_chars) AS chars, sum(len(string_split_regex(trim(text), '\\s+'))) AS words
        FROM {_parquet(run_dir, 'docs')} GROUP BY ALL ORDER BY source, docs DESC"""
    return _connect().sql(query).df()


def funnel(run_dir: Path) -> pd.DataFrame:
    """The filter funnel of every source from stats.json: documents in, removed and out per step."""
    stats = json.loads((Path(run_dir) / "stats.json").read_text(encoding="utf-8"))
    rows = []
    for source, st in sorted(stats["sources"].items()):
        rows.append({"source": source, "stage": -1, "step": "input", "docs_in": st["input"]["docs"],
                     "removed": 0, "docs_out": st["input"]["docs"]})
        rows.extend({"source": source, **{k: f[k] for k in ("stage", "step", "docs_in", "removed", "docs_out")}}
                    for f in st["funnel"])
    return pd.DataFrame(rows)


def removal_reasons(run_dir: Path) -> pd.DataFrame:
    """Removed documents per source and reason, most frequent first."""
    query = f"""SELECT source, reason, stage, count(*) AS docs, sum(n_chars) AS chars
                FROM {_parquet(run_dir, 'removed')} GROUP BY ALL ORDER BY source, docs DESC"""
    return _connect().sql(query).df()


def examples(run_dir: Path, kind: str = "removed", n: int = 5, seed: int = 0, source: str | None = None,
             reason: str | None = None, chars: int = 300) -> pd.DataFrame:
    """A seeded random sample of kept (``docs``) or ``removed`` documents: id, source, reason, the start of the text."""
    if kind not in ("docs", "removed"):
        raise ValueError(f"kind must be 'docs' or 'removed', got {kind!r}")
    where = []
    params: list[object] = []
    if source is not None:
        where.append("source = ?")
        params.append(source)
    if reason is not None:
        where.append("reason = ?")
        params.append(reason)
    why = "reason" if kind == "removed" else "NULL AS reason"
    query = f"""SELECT id, source, {why}, left(text, {int(chars)}) AS text_start,
                       hash(id || '{int(seed)}') AS _key
                FROM {_parquet(run_dir, kind)} {'WHERE ' + ' AND '.join(where) if where else ''}
                ORDER BY _key LIMIT {int(n)}"""
    return _connect().execute(query, params).df().drop(columns="_key")


def quality_scores(run_dir: Path) -> pd.DataFrame:
    """Per kept document with a quality score: source and score (empty if no classifier ran)."""
    query = f"""SELECT source, quality_score FROM {_parquet(run_dir, 'docs')}
                WHERE quality_score IS NOT NULL ORDER BY source, quality_score"""
    return _connect().sql(query).df()

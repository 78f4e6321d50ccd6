"""A run's Parquet catalogue (``docs``, ``shards``, ``streams``) and DuckDB over it.

``runs/<mix>/catalogue/docs/*.parquet`` has one row per document, kept or removed, with its tokens and how often
it was used, written in parts by the build's workers (one file per kept part, per held-out stream and per removed
part: no process ever holds the whole table); ``shards.parquet`` one row per MDS shard; ``streams.parquet`` one
row per MDS stream. :func:`connect` opens DuckDB with these as views plus a few summaries (``VIEWS``).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

DOCS_SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("url", pa.string()), ("lang", pa.string()),
    ("lang_score", pa.float64()), ("quality_score", pa.float64()), ("n_chars", pa.int64()),
    ("n_tokens", pa.int64()), ("kept", pa.bool_()), ("reason", pa.string()), ("dup_cluster_id", pa.string()),
    ("split", pa.string()), ("epochs", pa.int32()), ("shard", pa.string()),
])
SHARDS_SCHEMA = pa.schema([
    ("split", pa.string()), ("source", pa.string()), ("shard", pa.string()), ("file", pa.string()),
    ("first_sample", pa.int64()), ("samples", pa.int64()), ("raw_bytes", pa.int64()),
    ("stored_bytes", pa.int64()), ("sha1", pa.string()),
])
STREAMS_SCHEMA = pa.schema([
    ("split", pa.string()), ("source", pa.string()), ("path", pa.string()), ("samples", pa.int64()),
    ("tokens", pa.int64()), ("n_bytes", pa.int64()), ("proportion", pa.float64()), ("docs", pa.int64()),
    ("epochs", pa.float64()), ("shards", pa.int64()),
])
TABLES = {"docs": DOCS_SCHEMA, "shards": SHARDS_SCHEMA, "streams": STREAMS_SCHEMA}
PARTED = {"docs"}  # tables stored as a folder of Parquet parts

# Summaries defined on top of the three tables (each documented in the README's catalogue section).
VIEWS = {
    "tokens_by_source": """
        SELECT source, count(*) FILTER (kept) AS kept_docs, sum(n_tokens) FILTER (kept) AS kept_tokens,
               count(*) FILTER (NOT kept) AS removed_docs, sum(n_tokens) FILTER (NOT kept) AS removed_tokens,
               sum(n_tokens * epochs) FILTER (split = 'train') AS train_doc_tokens,
               sum(n_tokens) FILTER (split = 'valid') AS valid_tokens
        FROM docs GROUP BY source ORDER BY source""",
    "tokens_by_reason": """
        SELECT source, coalesce(reason, 'kept') AS reason, count(*) AS docs, sum(n_tokens) AS tokens,
               sum(n_chars) AS chars
        FROM docs GROUP BY ALL ORDER BY source, tokens DESC NULLS LAST, reason""",
    "mixture": """
        SELECT source, tokens, round(100 * proportion, 3) AS pct, epochs, docs, samples, shards,
               round(n_bytes / tokens, 3) AS bytes_per_token
        FROM streams WHERE split = 'train' ORDER BY source""",
}
DEFAULT_QUERY = """
SELECT source, coalesce(lang, '?') AS lang, coalesce(reason, 'kept') AS reason, count(*) AS docs,
       sum(n_tokens) AS tokens, sum(n_tokens * epochs) AS train_tokens
FROM docs GROUP BY ALL ORDER BY source, lang, tokens DESC NULLS LAST, reason"""


def write_table(root: Path, name: str, rows: list[dict[str, Any]]) -> Path:
    """Write one catalogue table (rows in the given order) where :func:`table_files` says it lives.

    A table stored in parts (``docs``) gets one part, ``catalogue/docs/part-00000.parquet``.
    """
    where = table_files(root, name)
    path = where / "part-00000.parquet" if name in PARTED else where
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=TABLES[name]), path, compression="zstd")
    return path


def write_docs_part(path: Path, columns: dict[str, Any]) -> Path:
    """Write one part of the ``docs`` table (columns by name, any array-likes) as ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({f.name: _array(columns[f.name], f.type) for f in DOCS_SCHEMA}, schema=DOCS_SCHEMA)
    pq.write_table(table, path, compression="zstd")
    return path


def _array(values: Any, kind: pa.DataType) -> Any:
    return values.cast(kind) if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values, kind)


def table_files(run_dir: Path, name: str) -> Path:
    """Where a table is stored: ``catalogue/<name>.parquet``, or for ``docs`` the folder ``catalogue/docs/``."""
    folder = Path(run_dir) / "catalogue"
    return folder / name if name in PARTED else folder / f"{name}.parquet"


def _exists(path: Path, name: str) -> bool:
    return any(path.glob("*.parquet")) if name in PARTED and path.is_dir() else path.is_file()


def connect(run_dir: Path) -> Any:
    """An in-memory DuckDB connection with the run's catalogue tables and summaries as views."""
    import duckdb

    folder = Path(run_dir) / "catalogue"
    missing = [n for n in TABLES if not _exists(table_files(run_dir, n), n)]
    if missing:
        raise FileNotFoundError(f"{folder}: no catalogue tables {missing}; build the mixture first "
                                "(mixlab mixture SPEC with a mixture: section)")
    con = duckdb.connect()
    for name in TABLES:
        where = table_files(run_dir, name)
        path = str(where / "*.parquet" if name in PARTED else where).replace("'", "''")
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}')")
    for name, sql in VIEWS.items():
        con.execute(f"CREATE VIEW {name} AS {sql}")
    hits = Path(run_dir) / "decontam" / "hits.parquet"  # (document, eval item) hits of a decontam step
    if hits.exists():
        path = str(hits).replace("'", "''")
        con.execute(f"CREATE VIEW contamination AS SELECT * FROM read_parquet('{path}')")
    return con


def query(run_dir: Path, sql: str | None = None) -> pa.Table:
    """Run SQL (default: tokens by source, language and reason) over a run's catalogue; an Arrow table."""
    return connect(run_dir).sql(sql or DEFAULT_QUERY).to_arrow_table()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):  # DuckDB's sum() of integers is a HUGEINT, read back as a decimal
        value = int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def format_table(table: pa.Table, max_rows: int = 200) -> str:
    """A plain-text table: header, rule, right-aligned numbers; notes rows left out."""
    names = table.column_names
    rows = [[_cell(v) for v in row.values()] for row in table.slice(0, max_rows).to_pylist()]
    numeric = [pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
               for t in table.schema.types]
    widths = [max([len(n), *(len(r[i]) for r in rows)]) for i, n in enumerate(names)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric,
                                                                               strict=True)).rstrip()

    out = [line(names), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    if table.num_rows > max_rows:
        out.append(f"... {table.num_rows - max_rows} more rows")
    return "\n".join(out)

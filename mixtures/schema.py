"""Row layout of a run's Parquet outputs (kept and removed documents), shared by every writer and reader."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from filters.base import Document

# Tags that filters and dedup put in ``meta`` and that the catalogue queries as columns.
PROMOTED: dict[str, pa.DataType] = {
    "lang": pa.string(),
    "lang_score": pa.float64(),
    "quality_score": pa.float64(),
    "dup_cluster_id": pa.string(),
    "dup_cluster_size": pa.int64(),
    "dup_survivor_id": pa.string(),
}

DOC_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("url", pa.string()),
        ("text", pa.string()),
        ("n_chars", pa.int64()),
        *PROMOTED.items(),
        ("meta", pa.string()),
    ]
)

REMOVED_SCHEMA = DOC_SCHEMA.append(pa.field("reason", pa.string())).append(pa.field("stage", pa.int32()))


def _json_default(value: Any) -> str:
    return str(value)


def doc_row(doc: Document) -> dict[str, Any]:
    """A document as a Parquet row: promoted tags as columns, the rest of meta as sorted JSON."""
    meta = {k: v for k, v in doc.meta.items() if k not in PROMOTED}
    row: dict[str, Any] = {
        "id": doc.id,
        "source": doc.source,
        "url": doc.url,
        "text": doc.text,
        "n_chars": len(doc.text),
        "meta": json.dumps(meta, sort_keys=True, ensure_ascii=False, default=_json_default),
    }
    for key in PROMOTED:
        row[key] = doc.meta.get(key)
    return row


def removed_row(doc: Document, reason: str, stage: int) -> dict[str, Any]:
    """A removed document as a row: the document plus why and at which chain position."""
    return {**doc_row(doc), "reason": reason, "stage": stage}


def row_doc(row: dict[str, Any]) -> Document:
    """Rebuild a Document from a row written by :func:`doc_row`."""
    meta = json.loads(row["meta"]) if row.get("meta") else {}
    for key in PROMOTED:
        if row.get(key) is not None:
            meta[key] = row[key]
    return Document(id=row["id"], text=row["text"], source=row["source"], url=row.get("url"), meta=meta)


def read_rows(folder: Path, columns: list[str] | None = None, batch_rows: int = 4096) -> Iterator[dict[str, Any]]:
    """Rows of every Parquet part under ``folder`` in file order, read in batches (memory stays flat)."""
    import pyarrow.parquet as pq

    for path in sorted(folder.glob("*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns):
            yield from batch.to_pylist()


def read_docs(folder: Path) -> Iterator[Document]:
    """The documents stored under ``folder`` (one source's ``docs/<source>/``), in stored order."""
    return map(row_doc, read_rows(folder))

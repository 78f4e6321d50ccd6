"""Dedup outputs of a run: ``dedup/clusters.parquet`` (one row per cluster member) and the report section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mixtures.report.tables import markdown_table

SNIPPET_CHARS = 160
SIZE_BINS = [(2, 2), (3, 3), (4, 4), (5, 8), (9, 16), (17, 64), (65, 1024), (1025, None)]
CLUSTER_SCHEMA = pa.schema([
    ("cluster_id", pa.string()), ("method", pa.string()), ("cluster_size", pa.int64()), ("doc_id", pa.string()),
    ("source", pa.string()), ("status", pa.string()), ("survivor_id", pa.string()), ("n_chars", pa.int64()),
    ("snippet", pa.string()),
])
_COLUMNS = ["id", "source", "n_chars", "text", "dup_cluster_id", "dup_cluster_size", "dup_survivor_id"]


def _members(path: Path, status: str | None) -> pa.Table:
    """Rows of one output file that belong to a duplicate cluster, in the clusters.parquet layout."""
    columns = _COLUMNS + ([] if status else ["reason"])
    table = pq.read_table(path, columns=columns)
    table = table.filter(pc.is_valid(table["dup_cluster_id"]))
    texts = table["text"].to_pylist()
    cluster = table["dup_cluster_id"]
    return pa.table({
        "cluster_id": cluster,
        "method": pa.array([c.split("-", 1)[0] for c in cluster.to_pylist()], pa.string()),
        "cluster_size": table["dup_cluster_size"],
        "doc_id": table["id"],
        "source": table["source"],
        "status": pa.array([status] * len(table), pa.string()) if status else table["reason"],
        "survivor_id": table["dup_survivor_id"],
        "n_chars": table["n_chars"],
        "snippet": pa.array([" ".join(t[:SNIPPET_CHARS].split()) for t in texts], pa.string()),
    }, schema=CLUSTER_SCHEMA)


def collect_clusters(docs_dir: Path, removed_dir: Path) -> pa.Table:
    """Every kept or removed document with a cluster id, sorted by cluster, then kept first, then id."""
    parts = [_members(p, "kept") for p in sorted(docs_dir.glob("*/*.parquet"))]
    parts += [_members(p, None) for p in sorted(removed_dir.glob("*/*.parquet"))]
    table = pa.concat_tables(parts) if parts else CLUSTER_SCHEMA.empty_table()
    return table.sort_by([("cluster_id", "ascending"), ("status", "ascending"), ("source", "ascending"),
                          ("doc_id", "ascending")])


def write_clusters(layout: Any) -> Path | None:
    """Write ``dedup/clusters.parquet`` for a finished run when any document was clustered; return its path."""
    path: Path = layout.dedup_clusters
    path.unlink(missing_ok=True)
    table = collect_clusters(layout.docs, layout.removed)
    if not len(table):
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    return path


def _bin_label(lo: int, hi: int | None) -> str:
    return str(lo) if lo == hi else (f"{lo}-{hi}" if hi else f">={lo}")


def render_section(clusters_path: Path, top: int = 5) -> str:
    """Markdown: clusters per method, a cluster-size histogram and the largest clusters with examples."""
    if not clusters_path.exists():
        return ""
    rows = pq.read_table(clusters_path).to_pylist()
    clusters: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        clusters.setdefault(row["cluster_id"], []).append(row)
    out = ["", "## Dedup", "", f"Cluster members with survivor and reason: `{clusters_path.parent.name}/"
           f"{clusters_path.name}`.", ""]
    methods = []
    for method in sorted({r["method"] for r in rows}):
        members = [r for r in rows if r["method"] == method]
        removed = sum(r["status"] != "kept" for r in members)
        methods.append((method, f"{len({r['cluster_id'] for r in members}):,}", f"{len(members):,}", f"{removed:,}"))
    out += markdown_table(["method", "clusters", "documents in clusters", "removed"], methods, "lrrr")
    sizes = [max(r["cluster_size"] for r in members) for members in clusters.values()]
    bins = [(_bin_label(lo, hi), sum(1 for s in sizes if s >= lo and (hi is None or s <= hi))) for lo, hi in SIZE_BINS]
    out += ["", *markdown_table(["cluster size", "clusters"], [(label, f"{n:,}") for label, n in bins if n], "lr")]
    largest = sorted(clusters.items(), key=lambda kv: (-max(r["cluster_size"] for r in kv[1]), kv[0]))[:top]
    examples = []
    for cid, members in largest:
        example = next((m for m in members if m["status"] != "kept"), members[0])
        examples.append((f"`{cid}`", max(m["cluster_size"] for m in members), f"`{members[0]['survivor_id']}`",
                         f"`{example['source']}/{example['doc_id']}`: {_cell(example['snippet'])}"))
    out += ["", f"Largest {len(largest)} clusters:", "",
            *markdown_table(["cluster", "size", "survivor", "example member"], examples, "lrll")]
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("`", "'")[:120]  # the table writer escapes "|"

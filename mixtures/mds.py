"""Pack tokenized documents into fixed-length sequences and write them as a MosaicML MDS stream.

Each sample is ``tokens`` (``ndarray:int32``, exactly ``max_seq_len`` ids: documents joined with EOS, as
llm-foundry's text dataloader reads them) and ``n_bytes`` (``int``: UTF-8 bytes those tokens cover; EOS
counts 0). Shards are zstd-compressed and carry sha1 and xxh64 hashes. Because every sample holds the same
number of tokens, streaming's sample ``proportion`` equals a token share.
"""

from __future__ import annotations

import bisect
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mixtures.streaming_compat import import_streaming

log = logging.getLogger(__name__)

COLUMNS = {"tokens": "ndarray:int32", "n_bytes": "int"}
COMPRESSION = "zstd"
HASHES = ["sha1", "xxh64"]
FLUSH_ROWS = 256  # sequences packed per numpy step


@dataclass
class StreamStats:
    """What a stream holds: samples, tokens, bytes, where each document first starts, the dropped tail."""

    samples: int = 0
    tokens: int = 0
    n_bytes: int = 0
    first_sample: dict[int, int] = field(default_factory=dict)
    dropped_tokens: int = 0


def pack(docs: Iterable[tuple[int, np.ndarray, np.ndarray]], eos: int, seq_len: int, limit: int | None,
         stats: StreamStats) -> Iterator[tuple[np.ndarray, int]]:
    """Yield ``(tokens, n_bytes)`` rows of ``seq_len`` from ``(doc_index, ids, bytes)``, each doc + EOS.

    With ``limit`` the stream stops after exactly that many tokens (a multiple of ``seq_len``; the last
    document may be cut); without it the final partial sequence is dropped and counted in ``stats``.
    """
    ids_buf: list[np.ndarray] = []
    bytes_buf: list[np.ndarray] = []
    buffered = written = 0
    eos_ids, eos_bytes = np.array([eos], dtype=np.int32), np.zeros(1, dtype=np.int32)
    for index, ids, nbytes in docs:
        if limit is not None and written + buffered >= limit:
            break
        stats.first_sample.setdefault(index, (written + buffered) // seq_len)
        ids_buf += [ids, eos_ids]
        bytes_buf += [nbytes, eos_bytes]
        buffered += len(ids) + 1
        if buffered >= FLUSH_ROWS * seq_len:
            rows, ids_buf, bytes_buf, buffered = _rows(ids_buf, bytes_buf, seq_len, limit, written)
            written += len(rows[0]) * seq_len
            yield from _emit(rows, stats)
    rows, ids_buf, bytes_buf, buffered = _rows(ids_buf, bytes_buf, seq_len, limit, written)
    yield from _emit(rows, stats)
    stats.dropped_tokens = buffered if limit is None else 0


def _rows(ids_buf: list[np.ndarray], bytes_buf: list[np.ndarray], seq_len: int, limit: int | None,
          written: int) -> tuple[tuple[np.ndarray, np.ndarray], list[np.ndarray], list[np.ndarray], int]:
    """Cut the buffer into whole rows (stopping at ``limit``); return rows and the carried remainder."""
    ids = np.concatenate(ids_buf) if ids_buf else np.zeros(0, dtype=np.int32)
    nbytes = np.concatenate(bytes_buf) if bytes_buf else np.zeros(0, dtype=np.int32)
    usable = len(ids) - len(ids) % seq_len
    if limit is not None:
        usable = min(usable, limit - written)
    rows = ids[:usable].reshape(-1, seq_len), nbytes[:usable].reshape(-1, seq_len)
    rest_ids, rest_bytes = ids[usable:], nbytes[usable:]
    if limit is not None and written + usable >= limit:
        rest_ids, rest_bytes = rest_ids[:0], rest_bytes[:0]
    return rows, [rest_ids], [rest_bytes], len(rest_ids)


def _emit(rows: tuple[np.ndarray, np.ndarray], stats: StreamStats) -> Iterator[tuple[np.ndarray, int]]:
    ids, nbytes = rows
    row_bytes = nbytes.sum(axis=1)
    for i in range(len(ids)):
        stats.samples += 1
        stats.tokens += ids.shape[1]
        stats.n_bytes += int(row_bytes[i])
        yield ids[i], int(row_bytes[i])


def write_stream(out: Path, docs: Iterable[tuple[int, np.ndarray, np.ndarray]], eos: int, seq_len: int,
                 limit: int | None, size_limit: str) -> StreamStats:
    """Pack ``docs`` and write them with ``streaming.MDSWriter`` into the empty directory ``out``."""
    streaming = import_streaming()
    stats = StreamStats()
    out.parent.mkdir(parents=True, exist_ok=True)
    with streaming.MDSWriter(out=str(out), columns=COLUMNS, compression=COMPRESSION, hashes=HASHES,
                             size_limit=size_limit) as writer:
        for tokens, nbytes in pack(docs, eos, seq_len, limit, stats):
            writer.write({"tokens": tokens, "n_bytes": nbytes})
    if limit is not None and stats.tokens != limit:
        raise RuntimeError(f"{out}: wrote {stats.tokens} tokens, planned {limit}")
    return stats


def shard_table(out: Path) -> list[dict[str, object]]:
    """Per shard of a written stream (from its ``index.json``): file name, samples, bytes, hashes."""
    index = json.loads((out / "index.json").read_text())
    rows, first = [], 0
    for shard in index["shards"]:
        stored = shard["zip_data"] or shard["raw_data"]
        rows.append({"shard": shard["raw_data"]["basename"], "file": stored["basename"],
                     "first_sample": first, "samples": shard["samples"], "raw_bytes": shard["raw_data"]["bytes"],
                     "stored_bytes": stored["bytes"], "sha1": stored["hashes"].get("sha1", "")})
        first += shard["samples"]
    return rows


def shard_of(shards: list[dict[str, object]], sample: int) -> str:
    """The shard file name holding a sample index."""
    starts = [int(str(s["first_sample"])) for s in shards]
    return str(shards[bisect.bisect_right(starts, sample) - 1]["shard"])

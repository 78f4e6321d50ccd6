"""Pack tokenized documents into fixed-length sequences and write them as a MosaicML MDS stream.

Each sample is ``tokens`` (``ndarray:int32``, exactly ``max_seq_len`` ids: documents joined with EOS, as
llm-foundry's text dataloader reads them) and ``n_bytes`` (``int``: UTF-8 bytes those tokens cover; EOS
counts 0). Shards are zstd-compressed and carry sha1 and xxh64 hashes. Because every sample holds the same
number of tokens, streaming's sample weights (``choose``, ``proportion``) are token shares.

A stream is written by many workers, each into its own ``part-NNNNN/`` folder (``MDSWriter``'s shards and
``index.json``); :func:`merge_indexes` then writes the stream's ``index.json`` listing every part's shards with
the part folder in their basenames, the layout of ``streaming.base.util.merge_index``. Shards are cut every
``samples_per_shard`` samples (:func:`samples_per_shard`: the same count for every stream of a mixture, and small,
so a shuffled read mixes the streams from its first batch), never above the ``size_limit`` bytes.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mixtures.streaming_compat import import_streaming

log = logging.getLogger(__name__)

COLUMNS = {"tokens": "ndarray:int32", "n_bytes": "int"}
COMPRESSION = "zstd"
HASHES = ["sha1", "xxh64"]
FLUSH_ROWS = 256  # sequences packed per numpy step
TARGET_SHARDS = 1024  # shards of a whole mixture's training streams, by default (each the same sample count)


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
                 limit: int | None, size_limit: str, samples_per_shard: int | None = None) -> StreamStats:
    """Pack ``docs`` and write them with ``streaming.MDSWriter`` into the empty directory ``out``.

    A shard holds ``samples_per_shard`` samples (the last one fewer), or fewer if ``size_limit`` bytes hold fewer.
    """
    streaming = import_streaming()
    stats = StreamStats()
    out.parent.mkdir(parents=True, exist_ok=True)
    with streaming.MDSWriter(out=str(out), columns=COLUMNS, compression=COMPRESSION, hashes=HASHES,
                             size_limit=size_limit) as writer:
        per_shard = min(samples_per_shard or math.inf, _samples_within_limit(writer, seq_len))
        for n, (tokens, nbytes) in enumerate(pack(docs, eos, seq_len, limit, stats)):
            if n and n % per_shard == 0:
                _cut_shard(writer)
            writer.write({"tokens": tokens, "n_bytes": nbytes})
    if limit is not None and stats.tokens != limit:
        raise RuntimeError(f"{out}: wrote {stats.tokens} tokens, planned {limit}")
    return stats


def _samples_within_limit(writer: object, seq_len: int) -> int:
    """How many samples the writer's ``size_limit`` lets one shard hold (every sample encodes to the same size)."""
    limit = writer.size_limit  # type: ignore[attr-defined]
    if not limit:
        return 1 << 62
    sample = writer.encode_sample({"tokens": np.zeros(seq_len, dtype=np.int32), "n_bytes": 0})  # type: ignore
    size = len(sample) + writer.extra_bytes_per_sample  # type: ignore[attr-defined]
    return max(1, (limit - writer.extra_bytes_per_shard) // size)  # type: ignore[attr-defined]


def _cut_shard(writer: object) -> None:
    """End the current shard here (MDSWriter does this itself on ``size_limit``; streaming 0.13's own two calls)."""
    writer.flush_shard()  # type: ignore[attr-defined]
    writer._reset_cache()  # type: ignore[attr-defined]


def samples_per_shard(total_samples: int, target_shards: int = TARGET_SHARDS) -> int:
    """Samples per shard for every stream of a mixture: ``ceil(total / target_shards)``, at least 1.

    The same count for every stream matters: streaming's ``py1e`` shuffle places a shard's samples around the
    shard's position, so a stream of bigger shards would be under-represented in an epoch's first samples.
    """
    return max(1, math.ceil(total_samples / target_shards))


def merge_indexes(out: Path, parts: Sequence[str]) -> dict[str, object]:
    """Write ``out/index.json`` listing the shards of ``out/<part>/index.json`` for each part, in order.

    The same content as ``streaming.base.util.merge_index`` over those folders (basenames prefixed with the part
    folder), written without a temporary copy. Returns the merged index.
    """
    shards: list[dict[str, object]] = []
    for part in parts:
        for shard in json.loads((out / part / "index.json").read_text())["shards"]:
            for key in ("raw_data", "zip_data", "raw_meta", "zip_meta"):
                if shard.get(key):
                    shard[key]["basename"] = f"{part}/{shard[key]['basename']}"
            shards.append(shard)
    index = {"version": 2, "shards": shards}
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.json").write_text(json.dumps(index, sort_keys=True))
    return index


def shard_table(out: Path, index: dict | None = None) -> list[dict[str, object]]:
    """Per shard of a written stream (from its ``index.json``): file name, samples, bytes, hashes."""
    index = index or json.loads((out / "index.json").read_text())
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

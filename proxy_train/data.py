"""A mixture run's ``streams.yaml`` to training and validation data: StreamingDataset, one Stream per source.

Every mixture is read the same way (fixed shuffle seed, algorithm and canonical node count), so two proxies differ
only in the data their streams hold. ``streaming`` is imported through :mod:`mixtures.streaming_compat`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mixtures.streaming_compat import import_streaming

SHUFFLE_SEED = 9176
NUM_CANONICAL_NODES = 1
SHUFFLE_ALGO = "py1e"


class StreamsError(ValueError):
    """A problem in a run's streams.yaml, naming the file and key."""


@dataclass(frozen=True)
class MixtureStreams:
    """What streams.yaml says about a built mixture (paths resolved to absolute)."""

    run_dir: Path
    max_seq_len: int
    vocab_size: int
    eos_token_id: int
    tokenizer: Path
    train: dict[str, tuple[Path, float]]  # source -> (local MDS dir, proportion)
    validation: dict[str, Path]


def _path(run_dir: Path, value: Any, where: str, file: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise StreamsError(f"{file}: {where} must be a path string, got {value!r}")
    path = Path(value) if Path(value).is_absolute() else run_dir / value
    if where.endswith("local") and not (path / "index.json").is_file():
        raise StreamsError(f"{file}: {where} = {value!r} has no index.json (looked in {path})")
    if where == "tokenizer" and not path.is_file():
        raise StreamsError(f"{file}: tokenizer = {value!r} not found (looked in {path})")
    return path


def load_streams(run_dir: str | Path) -> MixtureStreams:
    """Read and check ``RUN_DIR/streams.yaml``; stream paths may be absolute or relative to the run directory."""
    run_dir = Path(run_dir).resolve()
    file = run_dir / "streams.yaml"
    if not file.is_file():
        raise StreamsError(f"{file} not found: build the mixture first (mixlab mixture SPEC.yaml)")
    raw = yaml.safe_load(file.read_text()) or {}
    for key in ("max_seq_len", "vocab_size", "eos_token_id", "tokenizer", "streams"):
        if key not in raw:
            raise StreamsError(f"{file}: missing key {key!r}")
    train = {}
    for name, entry in (raw["streams"] or {}).items():
        local = _path(run_dir, (entry or {}).get("local"), f"streams.{name}.local", file)
        proportion = (entry or {}).get("proportion")
        if not isinstance(proportion, int | float) or proportion < 0:
            raise StreamsError(f"{file}: streams.{name}.proportion must be a number >= 0, got {proportion!r}")
        if proportion > 0:
            train[name] = (local, float(proportion))
    if not train:
        raise StreamsError(f"{file}: streams has no source with a proportion > 0")
    validation = {name: _path(run_dir, (entry or {}).get("local"), f"validation.{name}.local", file)
                  for name, entry in (raw.get("validation") or {}).items()}
    return MixtureStreams(run_dir=run_dir, max_seq_len=int(raw["max_seq_len"]), vocab_size=int(raw["vocab_size"]),
                          eos_token_id=int(raw["eos_token_id"]), tokenizer=_path(run_dir, raw["tokenizer"],
                                                                                 "tokenizer", file),
                          train=train, validation=validation)


def clean_shared_memory() -> None:
    """Remove shared memory left by earlier datasets (deps.md gotcha E)."""
    import_streaming()
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()


def train_dataset(mix: MixtureStreams, batch_size: int, epoch_size: int, seed: int = SHUFFLE_SEED,
                  batching_method: str = "random") -> Any:
    """A shuffled StreamingDataset over the train streams at their proportions; ``batch_size`` is per device."""
    streaming = import_streaming()
    streams = [streaming.Stream(local=str(local), remote=None, proportion=p) for local, p in mix.train.values()]
    return streaming.StreamingDataset(
        streams=streams, batch_size=batch_size, epoch_size=epoch_size, shuffle=True, shuffle_seed=seed,
        shuffle_algo=SHUFFLE_ALGO, num_canonical_nodes=NUM_CANONICAL_NODES, batching_method=batching_method,
        replication=None)


def train_loader(dataset: Any, batch_size: int) -> Any:
    """A StreamingDataLoader (it tracks samples seen, for exact resumption); no worker processes."""
    streaming = import_streaming()
    return streaming.StreamingDataLoader(dataset, batch_size=batch_size, num_workers=0, collate_fn=collate)


def validation_dataset(local: Path, batch_size: int) -> Any:
    """An unshuffled StreamingDataset over one held-out stream."""
    streaming = import_streaming()
    return streaming.StreamingDataset(streams=[streaming.Stream(local=str(local), remote=None)],
                                      batch_size=batch_size, shuffle=False,
                                      num_canonical_nodes=NUM_CANONICAL_NODES, replication=None)


def collate(samples: list[dict]) -> dict:
    """Stack MDS samples into {'tokens': LongTensor (b, seq), 'n_bytes': LongTensor (b,)}."""
    import torch

    tokens = torch.from_numpy(np.stack([np.asarray(s["tokens"], dtype=np.int64) for s in samples]))
    return {"tokens": tokens, "n_bytes": torch.tensor([int(s["n_bytes"]) for s in samples])}


def token_byte_lengths(tokenizer_path: Path) -> np.ndarray:
    """UTF-8 bytes each token id stands for (0 for special tokens), from a `tokenizers` JSON file.

    Exact for byte-level BPE (the mixture writer's table); for other kinds the piece's own text, with the
    SentencePiece word marker as a space and byte-fallback pieces as one byte.
    """
    from tokenizers import Tokenizer

    from mixtures.tokenizer import byte_table

    tok = Tokenizer.from_file(str(tokenizer_path))
    table = byte_table(tok)
    if table is not None:
        return table.astype(np.int64)
    special = {i for i, added in tok.get_added_tokens_decoder().items() if added.special}
    lengths = np.zeros(tok.get_vocab_size(with_added_tokens=True), dtype=np.int64)
    for piece, idx in tok.get_vocab(with_added_tokens=True).items():
        if idx in special:
            continue
        if piece.startswith("<0x") and piece.endswith(">") and len(piece) == 6:
            lengths[idx] = 1
        else:
            lengths[idx] = len(piece.replace("\u2581", " ").removeprefix("##").encode("utf-8"))
    return lengths

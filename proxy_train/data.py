"""A mixture run's ``streams.yaml`` to training and validation data: StreamingDataset, one Stream per source.

Every mixture is read the same way (fixed shuffle seed, algorithm and canonical node count), so two proxies differ
only in the data their streams hold. ``streaming`` is imported through :mod:`mixtures.streaming_compat`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mixtures.layout import RunLayout
from mixtures.streaming_compat import import_streaming
from mixtures.streams_manifest import StreamsManifest

SHUFFLE_SEED = 9176
NUM_CANONICAL_NODES = 1
SHUFFLE_ALGO = "py1e"


def load_streams(run_dir: str | Path) -> StreamsManifest:
    """Read and check ``RUN_DIR/streams.yaml``; stream paths may be absolute or relative to the run directory."""
    return StreamsManifest.read(RunLayout(Path(run_dir).resolve()).streams)


def clean_shared_memory() -> None:
    """Remove shared memory left by earlier datasets (deps.md gotcha E)."""
    import_streaming()
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()


def train_dataset(mix: StreamsManifest, batch_size: int, epoch_size: int, seed: int = SHUFFLE_SEED,
                  batching_method: str = "random") -> Any:
    """A shuffled StreamingDataset over the train streams; ``batch_size`` is per device.

    Each stream reads an exact number of samples per epoch (streaming's ``choose``, as llm-foundry reads
    ``streams.yaml``): ``epoch_size`` apportioned over the streams by Hamilton on their ``choose`` counts (or
    proportions), so an epoch of the manifest's own size is exactly the planned mixture, and any other size the
    closest whole-sample split, never streaming's random shortfall.
    """
    from mixtures.plan import hamilton

    streaming = import_streaming()
    weights = {s: float(t.choose if t.choose is not None else t.proportion) for s, t in mix.streams.items()
               if t.proportion > 0}
    counts = hamilton(epoch_size, weights)
    streams = [streaming.Stream(local=str(mix.streams[s].local), remote=None, choose=counts[s])
               for s in weights if counts[s] > 0]
    return streaming.StreamingDataset(
        streams=streams, batch_size=batch_size, shuffle=True, shuffle_seed=seed,
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
    """UTF-8 bytes each token id stands for (0 for special tokens), from a `tokenizers` JSON file (or the
    Hugging Face tokenizer folder holding one).

    Exact for byte-level BPE (the mixture writer's table); for other kinds the piece's own text, with the
    SentencePiece word marker as a space and byte-fallback pieces as one byte.
    """
    from tokenizers import Tokenizer

    from mixtures.tokenizer import byte_table

    path = Path(tokenizer_path)
    tok = Tokenizer.from_file(str(path / "tokenizer.json" if path.is_dir() else path))
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


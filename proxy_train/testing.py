"""Build a tiny mixture run directory (tokenizer, MDS streams, streams.yaml) for tests and smoke runs.

It follows the mixture writer's contract (docs/proxy.md): packed ``tokens`` (ndarray:int32, exactly
``max_seq_len`` per sample) and ``n_bytes`` (UTF-8 bytes those tokens cover; EOS counts 0), zstd, shard hashes.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import yaml

from mixtures.streaming_compat import import_streaming
from proxy_train.data import token_byte_lengths

EOS = "<|endoftext|>"


def read_texts(path: Path, limit: int, max_chars: int) -> list[str]:
    """The first ``limit`` non-empty texts of a corpus .jsonl.gz, each cut to ``max_chars``."""
    texts = []
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            text = json.loads(line)["text"][:max_chars].strip()
            if text:
                texts.append(text)
            if len(texts) == limit:
                break
    return texts


def train_tokenizer(texts: list[str], vocab_size: int, out: Path) -> None:
    """A byte-level BPE tokenizer with EOS as id 0, saved as a `tokenizers` JSON file."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(out))


def pack(texts: list[str], tokenizer_path: Path, seq_len: int) -> Iterator[tuple[np.ndarray, int]]:
    """Tokenize, join with EOS and cut into full ``seq_len`` samples: (tokens, n_bytes); the tail is dropped."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    eos = tok.token_to_id(EOS)
    nbytes = token_byte_lengths(tokenizer_path)
    buffer: list[int] = []
    for text in texts:
        ids = tok.encode(text).ids
        if int(nbytes[ids].sum()) != len(text.encode("utf-8")):
            raise ValueError("tokenizer byte table does not cover the text exactly")
        buffer.extend([*ids, eos])
        while len(buffer) >= seq_len:
            sample, buffer = np.asarray(buffer[:seq_len], dtype=np.int32), buffer[seq_len:]
            yield sample, int(nbytes[sample].sum())


def write_mds(samples: Iterator[tuple[np.ndarray, int]], out: Path) -> int:
    """Write samples as an MDS stream; returns how many."""
    import_streaming()
    from streaming import MDSWriter

    count = 0
    with MDSWriter(out=str(out), columns={"tokens": "ndarray:int32", "n_bytes": "int"}, compression="zstd",
                   hashes=["xxh64"], size_limit="256kb") as writer:
        for tokens, n_bytes in samples:
            writer.write({"tokens": tokens, "n_bytes": n_bytes})
            count += 1
    return count


def build_tiny_mixture(run_dir: Path, sources: dict[str, list[str]], proportions: dict[str, float],
                       seq_len: int = 64, vocab_size: int = 512, valid_fraction: float = 0.1) -> Path:
    """Write a mixture run directory from in-memory texts per source; returns ``run_dir``."""
    run_dir = Path(run_dir)
    tokenizer = run_dir / "tokenizer" / "tokenizer.json"
    train_tokenizer([t for texts in sources.values() for t in texts], vocab_size, tokenizer)
    streams, validation = {}, {}
    for name, texts in sources.items():
        n_valid = max(1, int(len(texts) * valid_fraction))
        for split, part in (("train", texts[n_valid:]), ("valid", texts[:n_valid])):
            if write_mds(pack(part, tokenizer, seq_len), run_dir / "mds" / split / name) == 0:
                raise ValueError(f"source {name!r} has too little {split} text for one {seq_len}-token sample")
        streams[name] = {"local": str((run_dir / "mds" / "train" / name).resolve()), "remote": None,
                         "proportion": proportions[name]}
        validation[name] = {"local": str((run_dir / "mds" / "valid" / name).resolve())}
    spec = {"max_seq_len": seq_len, "vocab_size": vocab_size, "eos_token_id": 0,
            "tokenizer": "tokenizer/tokenizer.json", "streams": streams, "validation": validation}
    (run_dir / "streams.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return run_dir


def build_corpus_mixture(run_dir: Path, corpora: Path, docs_per_source: int = 150, seq_len: int = 64) -> Path:
    """A tiny web + wiki mixture (50/50) from the first documents of the shared corpora."""
    sources = {name: read_texts(corpora / f"{name}.jsonl.gz", docs_per_source, 1500) for name in ("web", "wiki")}
    return build_tiny_mixture(run_dir, sources, {"web": 0.5, "wiki": 0.5}, seq_len=seq_len)

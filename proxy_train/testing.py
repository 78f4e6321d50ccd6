"""Build a tiny mixture run directory (tokenizer, MDS streams, streams.yaml) from in-memory texts, for tests.

It uses the mixture writer's own pieces (``mixtures.tokenizer``, ``mixtures.mds``) without a spec or a cleaning
run, so proxy tests stay fast, and writes what the real build writes: a Hugging Face tokenizer folder (EOS not id
0), streams of many small shards, and a manifest with ``choose`` per stream (the proportions asked for, over the
largest epoch no stream has to repeat for); ``tests/test_proxy_mixture.py`` covers a run built by the full writer.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from mixtures.layout import RunLayout
from mixtures.mds import write_stream
from mixtures.plan import hamilton
from mixtures.streams_manifest import StreamsManifest, TrainStream
from mixtures.tokenizer import eos_id, prepare, save_folder, tokenize, train_bpe

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


def build_tiny_mixture(run_dir: Path, sources: dict[str, list[str]], proportions: dict[str, float],
                       seq_len: int = 64, vocab_size: int = 512, valid_fraction: float = 0.1) -> Path:
    """Write a mixture run directory from in-memory texts per source; returns ``run_dir``."""
    layout = RunLayout(Path(run_dir).resolve())
    tok = prepare(train_bpe([t for texts in sources.values() for t in texts], vocab_size, EOS))
    save_folder(tok, layout.tokenizer, EOS)
    samples, validation = {}, {}
    for name, texts in sources.items():
        n_valid = max(1, int(len(texts) * valid_fraction))
        for split, part in (("train", texts[n_valid:]), ("valid", texts[:n_valid])):
            encoded = tokenize(tok, part)
            docs = ((i, *encoded.doc(i)) for i in range(len(part)))
            stats = write_stream(layout.stream(split, name), docs, eos_id(tok, EOS), seq_len, None, "256kb",
                                 samples_per_shard=4)
            if stats.samples == 0:
                raise ValueError(f"source {name!r} has too little {split} text for one {seq_len}-token sample")
        samples[name] = _train_samples(layout, name)
        validation[name] = layout.stream("valid", name)
    wanted = {s: p for s, p in proportions.items() if p > 0}
    epoch = min(int(samples[s] / p * sum(wanted.values())) for s, p in wanted.items())
    choose = hamilton(epoch, wanted)
    total = sum(choose.values())
    streams = {s: TrainStream.chosen(layout.stream("train", s), choose.get(s, 0), total) for s in sources}
    StreamsManifest(max_seq_len=seq_len, vocab_size=vocab_size, eos_token_id=eos_id(tok, EOS),
                    tokenizer=layout.tokenizer, streams=streams, validation=validation).write(layout.streams)
    return layout.root


def _train_samples(layout: RunLayout, name: str) -> int:
    index = json.loads((layout.stream("train", name) / "index.json").read_text())
    return sum(shard["samples"] for shard in index["shards"])


def build_corpus_mixture(run_dir: Path, corpora: Path, docs_per_source: int = 150, seq_len: int = 64) -> Path:
    """A tiny web + wiki mixture (50/50) from the first documents of the shared corpora."""
    sources = {name: read_texts(corpora / f"{name}.jsonl.gz", docs_per_source, 1500) for name in ("web", "wiki")}
    return build_tiny_mixture(run_dir, sources, {"web": 0.5, "wiki": 0.5}, seq_len=seq_len)

"""Mixture building throughput: tokenization and MDS writing on the shared corpora, and the end-to-end run.

    .venv/bin/python bench/mixture.py                       # tokenization + MDS tables (about a minute)
    .venv/bin/python bench/mixture.py --e2e mix_v3.yaml     # also time `mixlab mixture` with a stage breakdown

Peers side by side: for tokenization, ``transformers``' fast tokenizer batch call (what llm-foundry's data prep
uses) and the bare ``encode_batch``; for writing, MDS without compression/hashes and a raw int32 ``.bin``
memmap (nanoGPT / Megatron style). Prints markdown tables; record them in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mixtures.mds import pack, write_stream  # noqa: E402
from mixtures.streaming_compat import import_streaming  # noqa: E402
from mixtures.tokenizer import count_tokens, prepare, tokenize, train_bpe  # noqa: E402

SOURCES = ["web", "wiki", "papers", "code", "multilingual", "instruct"]
SEQ_LEN = 512


def machine() -> str:
    """CPU model, cores and load average, for the RESULTS.md header."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    return f"{model}, {os.cpu_count()} cores, load average {load()}"


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def load_texts(corpora: Path, per_source: int) -> list[str]:
    """The first ``per_source`` documents of each shared corpus file."""
    texts: list[str] = []
    for source in SOURCES:
        with gzip.open(corpora / f"{source}.jsonl.gz", "rt", encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i >= per_source:
                    break
                texts.append(json.loads(line)["text"])
    return texts


def timed(fn, *args):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - started


def tokenization_table(texts: list[str], tok) -> tuple[str, object]:  # type: ignore[no-untyped-def]
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(tokenizer_object=tok)
    tok.encode_batch_fast(texts)  # warm the BPE word cache once, so no method pays for it alone
    rows = []
    ours, s = timed(tokenize, tok, texts)
    n = int(ours.ids.size)
    rows.append(("mixlab `tokenize` (ids + per-token bytes, flat arrays)", s))
    rows.append(("mixlab `count_tokens` (encode_batch_fast, counts only)", timed(count_tokens, tok, texts)[1]))
    rows.append(("tokenizers `encode_batch` (ids only, bare)", timed(
        lambda: [e.ids for e in tok.encode_batch(texts)])[1]))
    rows.append(("transformers fast tokenizer `tok(texts)` (llm-foundry data prep)", timed(
        lambda: hf(texts, add_special_tokens=False)["input_ids"])[1]))
    chars = sum(len(t) for t in texts)
    lines = [f"Tokenization: {len(texts):,} documents, {chars:,} chars, {n:,} tokens (byte-level BPE, vocab "
             f"{tok.get_vocab_size():,})", "", "| method | seconds | tokens/s |", "|---|---:|---:|"]
    lines += [f"| {name} | {sec:.2f} | {n / sec:,.0f} |" for name, sec in rows]
    return "\n".join(lines), ours


def writing_table(tokenized, folder: Path) -> str:  # type: ignore[no-untyped-def]
    docs = [(i, *tokenized.doc(i)) for i in range(len(tokenized.offsets) - 1)]
    total = sum(len(d[1]) + 1 for d in docs) // SEQ_LEN * SEQ_LEN
    import_streaming()
    rows = []
    _, s = timed(write_stream, folder / "zstd", iter(docs), 0, SEQ_LEN, total, "32mb")
    rows.append(("mixlab `write_stream`: MDSWriter, zstd, sha1+xxh64", s))
    streaming = import_streaming()

    def plain() -> None:
        from mixtures.mds import COLUMNS, StreamStats

        with streaming.MDSWriter(out=str(folder / "plain"), columns=COLUMNS, size_limit="32mb") as w:
            for tokens, nbytes in pack(iter(docs), 0, SEQ_LEN, total, StreamStats()):
                w.write({"tokens": tokens, "n_bytes": nbytes})

    rows.append(("MDSWriter, no compression, no hashes", timed(plain)[1]))

    def raw() -> None:
        from mixtures.mds import StreamStats

        out = np.memmap(folder / "tokens.bin", dtype=np.int32, mode="w+", shape=(total,))
        for k, (tokens, _) in enumerate(pack(iter(docs), 0, SEQ_LEN, total, StreamStats())):
            out[k * SEQ_LEN:(k + 1) * SEQ_LEN] = tokens
        out.flush()

    rows.append(("raw int32 `.bin` memmap (nanoGPT/Megatron style), same packing", timed(raw)[1]))
    stored = sum(p.stat().st_size for p in (folder / "zstd").glob("*.zstd"))
    lines = [f"MDS writing: {total:,} tokens in {total // SEQ_LEN:,} sequences of {SEQ_LEN}; zstd shards "
             f"{stored / 1e6:.1f} MB ({stored / total:.2f} bytes/token)", "",
             "| writer | seconds | tokens/s |", "|---|---:|---:|"]
    lines += [f"| {name} | {sec:.2f} | {total / sec:,.0f} |" for name, sec in rows]
    return "\n".join(lines)


def e2e_table(spec: str, force: bool) -> str:
    """Run ``mixlab mixture`` as ``make mixture`` does and break its wall time into stages."""
    from mixtures.spec import load_spec

    cmd = [str(REPO / ".venv/bin/mixlab"), "mixture", spec, *(["--force"] if force else [])]
    started = time.perf_counter()
    shared = Path(os.environ.get("MIXLAB_SHARED", REPO.parent / "shared"))
    env = {**os.environ, "MIXLAB_SHARED": str(shared), "PYTHONHASHSEED": "0"}  # what `make mixture` exports
    if (shared / "nltk_data").is_dir():
        env.setdefault("NLTK_DATA", str(shared / "nltk_data"))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False, env=env)
    wall = time.perf_counter() - started
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    run_dir = load_spec(spec, check_files=False).run_dir
    timings = json.loads((run_dir / "_work" / "mixture_timings.json").read_text())
    runs = re.findall(r"clean: running (\S+) .*?clean: done in ([\d.]+) s", proc.stderr, flags=re.S)
    rows = [(f"clean `{name}` (Beam pipeline)", float(sec)) for name, sec in runs]
    if not runs:
        rows.append(("clean (up to date: reused)", 0.0))
    rows += [(f"mixture: {k}", v) for k, v in timings.items() if k != "tokens_tokenized"]
    lines = [f"End to end: `mixlab mixture {spec}`{' --force' if force else ''}: {wall:.1f} s wall "
             f"({timings['tokens_tokenized']:,} kept tokens tokenized)", "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {name} | {sec:.1f} |" for name, sec in rows]
    lines.append(f"| other (process start, imports, report) | {wall - sum(s for _, s in rows):.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-source", type=int, default=400, help="documents per shared corpus (default 400)")
    parser.add_argument("--e2e", metavar="SPEC", help="also time `mixlab mixture SPEC`")
    parser.add_argument("--force", action="store_true", help="with --e2e: re-run the clean step too")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    corpora = Path(os.environ.get("MIXLAB_SHARED", REPO.parent / "shared")) / "corpora"
    print(f"Machine: {machine()}\n")
    texts = load_texts(corpora, args.per_source)
    tok = prepare(train_bpe(texts[::4], 8192, "<|endoftext|>"))
    table, tokenized = tokenization_table(texts, tok)
    print(table + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        print(writing_table(tokenized, Path(tmp)) + "\n")
    if args.e2e:
        print(e2e_table(args.e2e, args.force) + "\n")
    print(f"Load average after: {load()}")


if __name__ == "__main__":
    main()

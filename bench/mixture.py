"""Mixture building throughput: tokenization and MDS writing on the shared corpora, and the end-to-end run.

    .venv/bin/python -m bench.mixture                       # tokenization + MDS tables (about a minute)
    .venv/bin/python -m bench.mixture --e2e mix_v3.yaml     # also time `mixlab mixture` with a stage breakdown

Peers side by side: for tokenization, ``transformers``' fast tokenizer batch call (what llm-foundry's data prep
uses) and the bare ``encode_batch``; for writing, MDS without compression/hashes and a raw int32 ``.bin``
memmap (nanoGPT / Megatron style). Prints markdown tables; record them in bench/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import harness

SOURCES = ["web", "wiki", "papers", "code", "multilingual", "instruct"]
SEQ_LEN = 512


def load_texts(per_source: int) -> list[str]:
    """The first ``per_source`` documents of each shared corpus file."""
    return [text for source in SOURCES for text in harness.read_texts(source, per_source)]


def timed(fn, *args):  # type: ignore[no-untyped-def]
    """Result and wall seconds."""
    out, t = harness.timed(fn, *args)
    return out, t.wall


def tokenization_table(texts: list[str], tok) -> tuple[str, object]:  # type: ignore[no-untyped-def]
    from transformers import PreTrainedTokenizerFast

    from mixtures.tokenizer import count_tokens, tokenize

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
             f"{tok.get_vocab_size():,})", "",
             harness.table(["method", "seconds", "tokens/s"], [(name, f"{sec:.2f}", f"{n / sec:,.0f}")
                                                               for name, sec in rows], align="lrr")]
    return "\n".join(lines), ours


def writing_table(tokenized, folder: Path) -> str:  # type: ignore[no-untyped-def]
    import numpy as np

    from mixtures.mds import pack, write_stream
    from mixtures.streaming_compat import import_streaming

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
             harness.table(["writer", "seconds", "tokens/s"], [(name, f"{sec:.2f}", f"{total / sec:,.0f}")
                                                               for name, sec in rows], align="lrr")]
    return "\n".join(lines)


def e2e_table(spec: str, force: bool) -> str:
    """Run ``mixlab mixture`` as ``make mixture`` does and break its wall time into stages."""
    from mixtures.spec import load_spec

    mixlab = Path(sys.executable).with_name("mixlab")  # the venv running this bench, as `make mixture` uses
    cmd = [str(mixlab if mixlab.exists() else harness.REPO / ".venv/bin/mixlab"), "mixture", spec,
           *(["--force"] if force else [])]
    shared = harness.shared_root()
    env = {**os.environ, "MIXLAB_SHARED": str(shared), "PYTHONHASHSEED": "0"}  # what `make mixture` exports
    if (shared / "nltk_data").is_dir():
        env.setdefault("NLTK_DATA", str(shared / "nltk_data"))
    with harness.Timer() as t:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=harness.REPO, check=False, env=env)
    wall = t.wall
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    run_dir = load_spec(spec, check_files=False).run_dir
    timings = json.loads((run_dir / "_work" / "mixture_timings.json").read_text())
    runs = re.findall(r"clean: running (\S+) .*?clean: done in ([\d.]+) s", proc.stderr, flags=re.S)
    rows = [(f"clean `{name}` (Beam pipeline)", float(sec)) for name, sec in runs]
    if not runs:
        rows.append(("clean (up to date: reused)", 0.0))
    rows += [(f"mixture: {k}", v) for k, v in timings.items() if k != "tokens_tokenized"]
    rows.append(("other (process start, imports, report)", wall - sum(s for _, s in rows)))
    lines = [f"End to end: `mixlab mixture {spec}`{' --force' if force else ''}: {wall:.1f} s wall, "
             f"{t.cpu_children:.1f} CPU s in its processes ({timings['tokens_tokenized']:,} kept tokens tokenized)",
             "", harness.table(["stage", "seconds"], [(name, f"{sec:.1f}") for name, sec in rows], align="lr")]
    return "\n".join(lines)


def main() -> None:
    parser = harness.parser(__file__, None, description=__doc__.splitlines()[0])
    parser.add_argument("--per-source", type=int, default=400, help="documents per shared corpus (default 400)")
    parser.add_argument("--e2e", metavar="SPEC", help="also time `mixlab mixture SPEC`")
    parser.add_argument("--force", action="store_true", help="with --e2e: re-run the clean step too")
    args = parser.parse_args()
    harness.setdefault_env()
    from mixtures.tokenizer import prepare, train_bpe

    run = harness.Timer().start()
    print(f"Machine: {harness.machine()}\n")
    texts = load_texts(args.per_source)
    tok = prepare(train_bpe(texts[::4], 8192, "<|endoftext|>"))
    table, tokenized = tokenization_table(texts, tok)
    print(table + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        print(writing_table(tokenized, Path(tmp)) + "\n")
    if args.e2e:
        print(e2e_table(args.e2e, args.force) + "\n")
    print(f"Load average after: {harness.load_averages()}")
    print(run.stop().summary("bench.mixture"), file=sys.stderr)


if __name__ == "__main__":
    main()

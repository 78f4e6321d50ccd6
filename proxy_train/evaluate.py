"""Score a proxy checkpoint: bits-per-byte on each source's validation stream, and multiple-choice tasks.

Bits-per-byte = sum of next-token NLL (nats) / ln 2 / UTF-8 bytes of the predicted tokens, so mixtures with different
tokenizers compare. Each packed sample's first token is not predicted, so its bytes (from the tokenizer's byte
table) are taken out of the sample's ``n_bytes``.

Multiple choice follows llm-foundry: each choice is scored by the log-likelihood of its tokens after the context;
``acc`` takes the highest total, ``acc_norm`` the highest mean per token. Schema tasks (items with
``context_options``: winogrande, WSC) score the shared continuation after each context option. One-choice tasks
(LAMBADA) report greedy exact-match accuracy of the continuation. Centered accuracy = (acc - chance) / (1 - chance).
Results go to ``<proxy dir>/eval/step-NNNNNN/`` as ``bpb.parquet``, ``mc.parquet`` and ``results.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from filters.jsonl import iter_jsonl
from mixtures.streams_manifest import StreamsManifest
from proxy_train import data
from proxy_train.model import MPT, MPTConfig
from proxy_train.train import latest_checkpoint

if TYPE_CHECKING:
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parent.parent


def default_evals_dir() -> Path:
    """``$MIXLAB_SHARED/corpora/evals``, else ``../shared/corpora/evals`` next to the repository."""
    return Path(os.environ.get("MIXLAB_SHARED", REPO.parent / "shared")) / "corpora" / "evals"


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the newest one under a proxy output directory."""
    path = Path(path)
    if path.is_file():
        return path
    found = latest_checkpoint(path) or latest_checkpoint(path.parent)
    if found is None:
        raise FileNotFoundError(f"no checkpoint at {path} (expected a step-*.pt file or a proxy output directory)")
    return found


def load_model(checkpoint: Path, device: torch.device, attn_backend: str = "auto") -> tuple[MPT, dict]:
    """The model of a checkpoint (eval mode) and the checkpoint's metadata."""
    from proxy_train.attention import choose_backend

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = MPTConfig(**{**state["model_config"], "attn_backend": choose_backend(device, attn_backend)})
    model = MPT(cfg)
    model.load_state_dict(state["model"])
    meta = {k: state[k] for k in ("step", "tokens_seen", "train_config", "run_dir")}
    return model.to(device).eval(), meta


# --------------------------------------------------------------------------------------------------------------
# Bits per byte


@torch.no_grad()
def bits_per_byte(model: MPT, mix: StreamsManifest, device: torch.device, max_samples: int | None = None,
                  batch_size: int = 16) -> list[dict]:
    """Per-domain bits-per-byte over each validation stream (the first ``max_samples`` samples, if given)."""
    token_bytes = torch.from_numpy(data.token_byte_lengths(mix.tokenizer_file))
    rows = []
    for name, local in mix.validation.items():
        data.clean_shared_memory()
        dataset = data.validation_dataset(local, batch_size)
        limit = dataset.size if max_samples is None else min(max_samples, dataset.size)
        nats, n_bytes, n_tokens = 0.0, 0, 0
        for start in range(0, limit, batch_size):
            batch = data.collate([dataset[i] for i in range(start, min(start + batch_size, limit))])
            tokens = batch["tokens"].to(device)
            with _autocast(device):
                logits = model(tokens[:, :-1])
            nats += float(F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten(), reduction="sum"))
            first_bytes = token_bytes[batch["tokens"][:, 0].clamp(max=len(token_bytes) - 1)]
            n_bytes += int((batch["n_bytes"] - first_bytes).sum())
            n_tokens += tokens[:, 1:].numel()
        if n_bytes <= 0:
            raise ValueError(f"validation stream {name} ({local}) covers no bytes")
        rows.append({"domain": name, "bits_per_byte": nats / math.log(2) / n_bytes, "nats_per_token": nats / n_tokens,
                     "samples": limit, "tokens": n_tokens, "bytes": n_bytes})
        log.info("bits-per-byte %s: %.4f over %d samples", name, rows[-1]["bits_per_byte"], limit)
    return rows


@torch.no_grad()
def bits_per_byte_texts(model: MPT, tokenizer: Tokenizer, texts: list[str], device: torch.device, eos: int,
                        batch_size: int = 16) -> dict:
    """Bits-per-byte of raw texts under ``tokenizer`` (the proxy's own), every byte of every text predicted.

    Convention: each text is tokenized alone (``mixtures.tokenizer.tokenize``, whose per-token bytes are the
    mixture writer's byte accounting) and preceded by one EOS, as a document follows an EOS in a packed stream;
    its tokens are cut into windows of ``max_seq_len`` predicted tokens, each window conditioned on the token
    before it (EOS or the previous window's last token) and nothing earlier. The EOS is context only, never
    predicted, so bytes = UTF-8 bytes of the texts, exactly (checked).
    """
    from mixtures.tokenizer import tokenize

    encoded = tokenize(tokenizer, texts)
    n_bytes = int(encoded.n_bytes.sum())
    utf8 = sum(len(t.encode("utf-8")) for t in texts)
    if n_bytes != utf8 or n_bytes == 0:
        raise ValueError(f"token bytes {n_bytes} != UTF-8 bytes {utf8} of {len(texts)} texts (or no text)")
    width = model.cfg.max_seq_len
    windows = []
    for i in range(len(texts)):
        seq = np.concatenate([[eos], encoded.doc(i)[0]]).astype(np.int64)
        windows += [seq[lo:lo + width + 1] for lo in range(0, len(seq) - 1, width)]
    nats = 0.0
    for start in range(0, len(windows), batch_size):
        chunk = windows[start:start + batch_size]
        longest = max(len(w) for w in chunk) - 1
        inputs = torch.zeros((len(chunk), longest), dtype=torch.long)
        targets = torch.full((len(chunk), longest), -100, dtype=torch.long)  # padding is not scored
        for row, w in enumerate(chunk):
            inputs[row, : len(w) - 1] = torch.from_numpy(w[:-1])
            targets[row, : len(w) - 1] = torch.from_numpy(w[1:])
        with _autocast(device):
            logits = model(inputs.to(device))
        nats += float(F.cross_entropy(logits.float().flatten(0, 1), targets.to(device).flatten(), reduction="sum"))
    n_tokens = int(encoded.ids.size)
    return {"bits_per_byte": nats / math.log(2) / n_bytes, "nats_per_token": nats / n_tokens, "docs": len(texts),
            "windows": len(windows), "tokens": n_tokens, "bytes": n_bytes}


def _autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


# --------------------------------------------------------------------------------------------------------------
# Multiple choice


@dataclass(frozen=True)
class Request:
    """One (context, continuation) pair to score; ``item`` and ``choice`` say where it belongs."""

    item: int
    choice: int
    context: str
    continuation: str


def read_task(path: Path, limit: int | None) -> list[dict]:
    """Items of an evals .jsonl.gz file (the first ``limit``, if given)."""
    items = []
    for number, item in iter_jsonl(path):
        if not isinstance(item.get("choices"), list) or not item["choices"] or "gold" not in item:
            raise ValueError(f"{path}:{number}: expected 'choices' (non-empty list) and 'gold'")
        items.append(item)
        if limit and len(items) == limit:
            break
    return items


def _example(item: dict) -> str:
    """An item with its gold answer, as a few-shot demonstration."""
    return item.get("query", "") + item["choices"][item["gold"]]


def requests_for(items: list[dict], fewshot: int, seed: int) -> list[Request]:
    """Every (context, continuation) to score; few-shot examples are other items, drawn with a fixed seed."""
    out = []
    for i, item in enumerate(items):
        others = [j for j in range(len(items)) if j != i]
        shots = random.Random(seed + i).sample(others, min(fewshot, len(others)))
        prefix = "".join(_example(items[j]) + "\n\n" for j in shots)
        if "context_options" in item and "continuation" in item:  # schema: vary the context
            for c, option in enumerate(item["context_options"]):
                out.append(Request(i, c, prefix + option, " " + item["continuation"].lstrip()))
        else:
            for c, choice in enumerate(item["choices"]):
                out.append(Request(i, c, prefix + item.get("query", ""), choice))
    return out


@torch.no_grad()
def score_requests(model: MPT, tokenizer: Tokenizer, requests: list[Request], device: torch.device,
                   batch_size: int = 32) -> list[tuple[float, int, bool]]:
    """(sum log-likelihood, continuation tokens, greedy match) per request; long inputs lose context on the left."""
    max_len = model.cfg.max_seq_len
    encoded = []
    for req in requests:
        ctx, cont = tokenizer.encode(req.context).ids, tokenizer.encode(req.continuation).ids
        if not cont:
            raise ValueError(f"item {req.item}, choice {req.choice}: the continuation {req.continuation!r} is empty")
        ids = (ctx + cont)[-(max_len + 1):]
        encoded.append((ids, min(len(cont), len(ids) - 1)))
    results = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start:start + batch_size]
        width = max(len(ids) for ids, _ in chunk) - 1
        inputs = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, (ids, _) in enumerate(chunk):
            inputs[row, : len(ids) - 1] = torch.tensor(ids[:-1])
        with _autocast(device):
            logprobs = torch.log_softmax(model(inputs.to(device)).float(), dim=-1).cpu()
        for row, (ids, n_cont) in enumerate(chunk):
            positions = torch.arange(len(ids) - 1 - n_cont, len(ids) - 1)
            targets = torch.tensor(ids[-n_cont:])
            picked = logprobs[row, positions, targets]
            greedy = bool((logprobs[row, positions].argmax(-1) == targets).all())
            results.append((float(picked.sum()), n_cont, greedy))
    return results


def score_task(model: MPT, tokenizer: Tokenizer, path: Path, fewshot: int, limit: int | None,
               device: torch.device, seed: int = 1234, contaminated: set[str] | None = None) -> dict:
    """Accuracy (raw and length-normalised), centered accuracy and chance for one task file.

    With ``contaminated`` (item ids some training document overlapped), also the accuracies on the clean subset.
    """
    items = read_task(path, limit)
    requests = requests_for(items, fewshot, seed)
    scores = score_requests(model, tokenizer, requests, device)
    per_item: dict[int, list[tuple[float, int, bool]]] = {}
    for req, score in zip(requests, scores, strict=True):
        per_item.setdefault(req.item, []).append(score)
    task = path.name.removesuffix(".jsonl.gz")
    row: dict[str, Any] = {"task": task, "items": len(items), "fewshot": fewshot}
    if all(len(s) == 1 for s in per_item.values()):  # language modelling (LAMBADA): greedy exact match
        row.update(kind="language_modeling", acc=float(np.mean([s[0][2] for s in per_item.values()])),
                   acc_norm=None, chance=0.0,
                   nll_per_token=float(-np.mean([s[0][0] / s[0][1] for s in per_item.values()])))
        row.update(acc_centered=row["acc"], acc_norm_centered=None)
        return row
    raw = [int(np.argmax([s[0] for s in per_item[i]])) == items[i]["gold"] for i in range(len(items))]
    norm = [int(np.argmax([s[0] / s[1] for s in per_item[i]])) == items[i]["gold"] for i in range(len(items))]
    chance = float(np.mean([1 / len(per_item[i]) for i in range(len(items))]))
    row.update(kind="schema" if "context_options" in items[0] else "multiple_choice", acc=float(np.mean(raw)),
               acc_norm=float(np.mean(norm)), chance=chance, nll_per_token=None)
    row.update(acc_centered=(row["acc"] - chance) / (1 - chance),
               acc_norm_centered=(row["acc_norm"] - chance) / (1 - chance))
    if contaminated is not None:
        clean = [i for i, item in enumerate(items) if str(item.get("id", f"{task}/{i}")) not in contaminated]
        row.update(clean_items=len(clean),
                   acc_clean=float(np.mean([raw[i] for i in clean])) if clean else None,
                   acc_norm_clean=float(np.mean([norm[i] for i in clean])) if clean else None)
    return row


# --------------------------------------------------------------------------------------------------------------
# Driver


def evaluate(checkpoint: str | Path, tasks: list[str] | None = None, evals_dir: Path | None = None,
             fewshot: int = 0, limit: int | None = 200, max_samples: int | None = None,
             device: str = "auto", attn_backend: str = "auto", run_dir: Path | None = None) -> Path:
    """Score a checkpoint on bits-per-byte and MC tasks; returns the directory the results were written to."""
    from tokenizers import Tokenizer

    path = resolve_checkpoint(checkpoint)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    model, meta = load_model(path, dev, attn_backend)
    mix = data.load_streams(run_dir or meta["run_dir"])
    evals_dir = Path(evals_dir or default_evals_dir())
    files = sorted(evals_dir.glob("*.jsonl.gz"))
    if tasks:
        wanted = {t.removesuffix(".jsonl.gz") for t in tasks}
        missing = wanted - {f.name.removesuffix(".jsonl.gz") for f in files}
        if missing:
            raise FileNotFoundError(f"no eval file for {', '.join(sorted(missing))} in {evals_dir}")
        files = [f for f in files if f.name.removesuffix(".jsonl.gz") in wanted]
    bpb = bits_per_byte(model, mix, dev, max_samples)
    tokenizer = Tokenizer.from_file(str(mix.tokenizer_file))
    dirty = _contaminated(Path(run_dir or meta["run_dir"]))
    mc = []
    for file in files:
        task = file.name.removesuffix(".jsonl.gz")
        mc.append(score_task(model, tokenizer, file, fewshot, limit, dev,
                             contaminated=None if dirty is None else dirty.get(task, set())))
        log.info("%s: acc %.3f acc_norm %s (chance %.3f, %d items)", mc[-1]["task"], mc[-1]["acc"],
                 mc[-1]["acc_norm"], mc[-1]["chance"], mc[-1]["items"])
    return write_results(path, meta, bpb, mc)


def _contaminated(run_dir: Path) -> dict[str, set[str]] | None:
    """Per task, eval items the run's training documents overlapped; None when the run had no decontam step."""
    from mixtures.contamination import contaminated_items

    try:
        return contaminated_items(run_dir)
    except FileNotFoundError:
        return None


def write_results(checkpoint: Path, meta: dict, bpb: list[dict], mc: list[dict]) -> Path:
    """bpb.parquet, mc.parquet and results.json next to the checkpoints, under eval/<checkpoint name>/."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = checkpoint.parent.parent / "eval" / checkpoint.stem
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(bpb), out / "bpb.parquet")
    if mc:
        pq.write_table(pa.Table.from_pylist(mc), out / "mc.parquet")
    centered = [r["acc_norm_centered"] if r["acc_norm_centered"] is not None else r["acc_centered"] for r in mc]
    results = {"checkpoint": str(checkpoint), "step": meta["step"], "tokens_seen": meta["tokens_seen"],
               "run_dir": meta["run_dir"], "bits_per_byte": {r["domain"]: r["bits_per_byte"] for r in bpb},
               "mean_bits_per_byte": float(np.mean([r["bits_per_byte"] for r in bpb])) if bpb else None,
               "mc": mc, "mean_centered_accuracy": float(np.mean(centered)) if centered else None}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return out

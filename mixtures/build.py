"""Build a mixture from a cleaned run: tokenizer -> token counts -> plan -> MDS streams -> manifest -> catalogue.

Reads ``runs/<mix>/docs`` (and ``removed``) written by the cleaning pipeline and writes ``tokenizer/``,
``plan.json``, ``mds/{train,valid}/<source>/``, ``streams.yaml``, ``catalogue/*.parquet`` and a mixture
section of ``report.md``. Every check (data present, epoch caps, quality scores) runs before anything is
written. Not Beam: token counting is one batched Rust call per source (``encode_batch``, already parallel),
and planning needs every source's totals at once, so a Beam stage would only add serialisation.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from filters.hashing import keyed_hash
from mixtures import catalogue
from mixtures.layout import RunLayout
from mixtures.mds import StreamStats, shard_of, shard_table, write_stream
from mixtures.mixture_spec import MixtureSpec
from mixtures.plan import PlanError, SourcePlan, epoch_schedule, make_plan
from mixtures.spec import Spec, SpecError
from mixtures.streams_manifest import StreamsManifest, TrainStream
from mixtures.tokenizer import (
    Tokenized,
    TokenizerError,
    count_tokens,
    eos_id,
    load_tokenizer,
    prepare,
    tokenize,
    train_bpe,
)

log = logging.getLogger(__name__)

DOC_COLUMNS = ["id", "url", "text", "lang", "lang_score", "quality_score", "n_chars", "dup_cluster_id"]
REPORT_MARK = "<!-- mixlab:mixture -->"


class MixtureError(SpecError):
    """A mixture that cannot be built from this run's data (raised before anything is written)."""


@dataclass
class SourceData:
    """A source's kept documents, split into held-out validation and the training pool."""

    name: str
    rows: dict[str, list[Any]]
    valid: np.ndarray
    train: np.ndarray
    order: np.ndarray
    tokens: Tokenized | None = None

    @property
    def ids(self) -> list[str]:
        return self.rows["id"]


def _read(folder: Path, columns: list[str]) -> dict[str, list[Any]]:
    """Columns of every Parquet part under ``folder``, in file order (the cleaner writes them sorted)."""
    parts = [pq.read_table(p, columns=columns).to_pydict() for p in sorted(folder.glob("*.parquet"))]
    return {c: [v for part in parts for v in part[c]] for c in columns}


def heldout_keys(ids: list[str], seed: int, source: str) -> np.ndarray:
    """Each id's held-out hash in [0, 2**64): depends only on (seed, source, id), never on the rest of the mix."""
    return np.array([keyed_hash(seed, f"{source}/valid", i) for i in ids], dtype=np.uint64)


def in_bucket(keys: np.ndarray, fraction: float) -> np.ndarray:
    """Which keys fall in the held-out bucket: ``key / 2**64 < fraction`` (exact integer comparison)."""
    return keys < np.uint64(min(int(fraction * 2**64), 2**64 - 1))


def _split(name: str, rows: dict[str, list[Any]], mix: MixtureSpec, seed: int) -> SourceData:
    """Hold out the bucket of documents with the lowest hashes (grown to ``min_docs``, at most half the source).

    The bucket depends only on (seed, source, id) and the fraction, so a document one mix holds out is held out by
    every mix that keeps it (with the same seed and fraction), and no such mix trains on it.
    """
    n = len(rows["id"])
    keys = heldout_keys(rows["id"], seed, name)
    order = np.argsort(keys, kind="stable")  # the same order as seeded_rank(ids, seed, f"{name}/valid")
    bucket = int(in_bucket(keys, mix.validation.fraction).sum())
    want = min(max(bucket, mix.validation.min_docs), mix.validation.max_docs, n // 2)
    if want < bucket:
        log.warning("mixture: %s: %d documents fall in the held-out bucket but max_docs / half the source allow "
                    "%d; the other %d are trained on (other mixes may hold them out)", name, bucket, want,
                    bucket - want)
    return SourceData(name, rows, np.sort(order[:want]), np.sort(order[want:]), order)


def _grow_validation(src: SourceData, seq_len: int, required: bool) -> None:
    """Add the next-lowest hashes until validation fills one sequence; if half the source cannot: error, or none."""
    lengths = src.tokens.lengths + 1  # type: ignore[union-attr]
    order = src.order
    k = len(src.valid)
    while lengths[order[:k]].sum() < seq_len and k < len(order) // 2:
        k += 1
    if lengths[order[:k]].sum() < seq_len and not required:
        log.warning("mixture: %s (weight 0) is too small for a validation sequence; it gets no streams", src.name)
        k = 0
    elif lengths[order[:k]].sum() < seq_len:
        raise MixtureError(f"source {src.name!r}: {len(order)} documents, {int(lengths.sum()):,} tokens: too little "
                           f"to hold out one validation sequence of {seq_len} tokens from half of it")
    src.valid, src.train = np.sort(order[:k]), np.sort(order[k:])


def _tokenizer_sample(sources: list[SourceData], chars: int) -> Iterator[str]:
    """Texts for BPE training: per source an equal share of ``chars``, highest held-out hashes first."""
    share = chars // max(len(sources), 1)
    for src in sources:
        order = src.order[::-1][: len(src.ids) // 2]
        used = 0
        for i in order:
            if used >= share:
                break
            text = src.rows["text"][i]
            used += len(text)
            yield text


def _get_tokenizer(spec: Spec, sources: list[SourceData]) -> Any:
    mix = spec.mixture
    assert mix is not None
    if mix.tokenizer.name == "bpe":
        log.info("mixture: training a byte-level BPE (vocab %d) on %d chars of the run's data",
                 mix.tokenizer.vocab_size, mix.tokenizer.sample_chars)
        tok = train_bpe(_tokenizer_sample(sources, mix.tokenizer.sample_chars), mix.tokenizer.vocab_size,
                        mix.tokenizer.eos_token)
    else:
        try:
            tok = load_tokenizer(mix.tokenizer.name)
        except TokenizerError as err:
            raise MixtureError(f"{spec.spec_path}: mixture.tokenizer.name: {err}") from None
    return prepare(tok)


def _check_quality(src: SourceData, plan: SourcePlan, mix: MixtureSpec) -> list[float | None] | None:
    if not mix.prefer_quality or not plan.partial_tokens:
        return None
    scores = src.rows["quality_score"]
    if all(s is None for s in scores):
        raise MixtureError(f"source {src.name!r}: prefer_quality is set but no document has a quality_score "
                           "(add a quality classifier to its chain, or set prefer_quality: false)")
    return [scores[i] for i in src.train]


def _print_plan(plans: list[SourcePlan], sources: dict[str, SourceData], mix: MixtureSpec) -> None:
    print(f"mixture plan: {sum(p.target_tokens for p in plans):,} training tokens in sequences of "
          f"{mix.max_seq_len} (tokens include one EOS per document)")
    print(f"  {'source':<14}{'weight':>8}{'available':>14}{'target':>14}{'epochs':>8}{'cap':>6}{'valid docs':>12}")
    for p in plans:
        print(f"  {p.source:<14}{p.weight:>8.4g}{p.available_tokens:>14,}{p.target_tokens:>14,}{p.epochs:>8.3f}"
              f"{p.epoch_cap:>6g}{len(sources[p.source].valid):>12,}")


def build_mixture(spec: Spec, layout: RunLayout) -> dict[str, Any]:
    """Build the spec's mixture from the cleaned run in ``layout``; returns the plan as written."""
    mix = spec.mixture
    if mix is None:
        raise MixtureError(f"{spec.spec_path}: no mixture: section")
    seed = spec.seed if mix.seed is None else mix.seed
    timings: dict[str, float] = {}
    clock = time.monotonic()

    sources = {s: _split(s, _read(layout.docs_of(s), DOC_COLUMNS), mix, seed) for s in sorted(spec.sources)}
    weights = {s: float(m.weight if m.weight is not None else m.tokens or 0) for s, m in mix.sources.items()}
    for s, src in sources.items():
        if not src.ids and weights[s] > 0:
            raise MixtureError(f"source {s!r} has no documents left after filtering (see {layout.report}); "
                               "give it weight 0 or loosen its filters")
    timings["read"] = time.monotonic() - clock

    clock = time.monotonic()
    tok = _get_tokenizer(spec, [src for src in sources.values() if src.ids])
    try:
        eos = eos_id(tok, mix.tokenizer.eos_token)
    except TokenizerError as err:
        raise MixtureError(f"{spec.spec_path}: mixture.tokenizer.eos_token: {err}") from None
    timings["tokenizer"] = time.monotonic() - clock

    clock = time.monotonic()
    for src in sources.values():
        src.tokens = tokenize(tok, src.rows["text"])
        if src.ids:
            _grow_validation(src, mix.max_seq_len, required=weights[src.name] > 0)
        log.info("mixture: %s: %d documents, %d tokens", src.name, len(src.ids), int(src.tokens.lengths.sum()))
    n_tokens = sum(int(src.tokens.ids.size) for src in sources.values())  # type: ignore[union-attr]
    timings["tokenize"] = time.monotonic() - clock

    available = {s: (len(src.train), int((src.tokens.lengths[src.train] + 1).sum()))  # type: ignore[union-attr]
                 for s, src in sources.items()}
    try:
        plans = make_plan(weights, available, {s: mix.cap(s) for s in weights}, mix.total_tokens,
                          mix.max_seq_len, mix.on_shortfall == "redistribute")
    except PlanError as err:
        raise MixtureError(f"{spec.spec_path}: mixture: {err}") from None
    quality = {p.source: _check_quality(sources[p.source], p, mix) for p in plans}
    _print_plan(plans, sources, mix)

    for path in layout.mixture_outputs:
        layout.remove(path)  # strictly inside the run: a symlinked output is unlinked, its target kept
    layout.tokenizer.mkdir(parents=True)
    tok.save(str(layout.tokenizer_file))

    clock = time.monotonic()
    written = _write_streams(layout, plans, sources, quality, eos, mix, seed)
    timings["mds"] = time.monotonic() - clock

    clock = time.monotonic()
    plan_doc = _manifests(layout, spec, plans, sources, written, tok, eos, seed)
    timings["manifest"] = time.monotonic() - clock
    clock = time.monotonic()
    _write_catalogue(layout, spec, sources, written, tok, {p.source: p.epochs for p in plans})
    timings["catalogue"] = time.monotonic() - clock
    _report_section(layout, plan_doc)
    timings["tokens_tokenized"] = n_tokens
    layout.work.mkdir(exist_ok=True)
    layout.mixture_timings.write_text(json.dumps(timings, indent=2) + "\n")
    log.info("mixture: built in %s", ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if k != "tokens_tokenized"))
    return plan_doc


@dataclass
class Written:
    """A written stream with its stats, shard table and per-document use counts."""

    split: str
    source: str
    path: Path
    stats: StreamStats
    shards: list[dict[str, object]]
    uses: np.ndarray


def _doc_stream(src: SourceData, order: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    for i in order:
        ids, nbytes = src.tokens.doc(int(i))  # type: ignore[union-attr]
        yield int(i), ids, nbytes


def _write_streams(layout: RunLayout, plans: list[SourcePlan], sources: dict[str, SourceData],
                   quality: dict[str, Any], eos: int, mix: MixtureSpec, seed: int) -> list[Written]:
    out: list[Written] = []
    for p in plans:
        src = sources[p.source]
        if p.target_tokens:
            lengths = src.tokens.lengths[src.train] + 1  # type: ignore[union-attr]
            epochs = epoch_schedule(p, [src.ids[i] for i in src.train], lengths, seed, quality[p.source])
            order = src.train[np.concatenate(epochs)]
            path = layout.stream("train", p.source)
            log.info("mixture: writing %s (%d tokens, %.2f epochs)", path, p.target_tokens, p.epochs)
            stats = write_stream(path, _doc_stream(src, order), eos, mix.max_seq_len, p.target_tokens,
                                 mix.shard_size)
            out.append(Written("train", p.source, path, stats, shard_table(path),
                               np.bincount(order, minlength=len(src.ids))))
        if len(src.valid):
            path = layout.stream("valid", p.source)
            stats = write_stream(path, _doc_stream(src, src.valid), eos, mix.max_seq_len, None, mix.shard_size)
            out.append(Written("valid", p.source, path, stats, shard_table(path),
                               np.bincount(src.valid, minlength=len(src.ids))))
    return out


def _manifests(layout: RunLayout, spec: Spec, plans: list[SourcePlan], sources: dict[str, SourceData],
               written: list[Written], tok: Any, eos: int, seed: int) -> dict[str, Any]:
    """Write ``streams.yaml`` (llm-foundry's ``streams`` verbatim) and ``plan.json``; return the plan."""
    mix = spec.mixture
    assert mix is not None
    total = sum(p.target_tokens for p in plans)
    train = {w.source: w for w in written if w.split == "train"}
    StreamsManifest(
        max_seq_len=mix.max_seq_len, vocab_size=tok.get_vocab_size(), eos_token_id=eos,
        tokenizer=layout.tokenizer_file.resolve(),
        streams={s: TrainStream(w.path.resolve(), round(w.stats.tokens / total, 12)) for s, w in train.items()},
        validation={w.source: w.path.resolve() for w in written if w.split == "valid"},
    ).write(layout.streams)
    lines = []
    for p in plans:
        src, w = sources[p.source], train.get(p.source)
        lines.append({**p.as_dict(), "docs_used": int((w.uses > 0).sum()) if w else 0,
                      "written_tokens": w.stats.tokens if w else 0, "samples": w.stats.samples if w else 0,
                      "valid_docs": len(src.valid),
                      "valid_tokens": next((v.stats.tokens for v in written
                                            if v.split == "valid" and v.source == p.source), 0)})
    plan_doc = {"spec": spec.name, "seed": seed, "tokenizer": mix.tokenizer.name,
                "vocab_size": tok.get_vocab_size(), "max_seq_len": mix.max_seq_len, "budget_tokens": mix.total_tokens,
                "total_tokens": total, "on_shortfall": mix.on_shortfall, "prefer_quality": mix.prefer_quality,
                "sources": lines}
    layout.plan.write_text(json.dumps(plan_doc, indent=2) + "\n")
    return plan_doc


def _write_catalogue(layout: RunLayout, spec: Spec, sources: dict[str, SourceData], written: list[Written],
                     tok: Any, epochs: dict[str, float]) -> None:
    by = {(w.split, w.source): w for w in written}
    docs: list[dict[str, Any]] = []
    for s, src in sources.items():
        train, valid = by.get(("train", s)), by.get(("valid", s))
        split = np.full(len(src.ids), None, dtype=object)
        split[src.train], split[src.valid] = "train", "valid"
        for i in range(len(src.ids)):
            uses = int(train.uses[i]) if train is not None else 0
            stream = valid if split[i] == "valid" else train if uses else None
            shard = shard_of(stream.shards, stream.stats.first_sample[i]) if stream is not None else None
            docs.append({**{c: src.rows[c][i] for c in DOC_COLUMNS if c != "text"}, "source": s,
                         "n_tokens": int(src.tokens.lengths[i]), "kept": True, "reason": None,  # type: ignore
                         "split": split[i], "epochs": uses, "shard": shard})
        docs.extend(_removed_rows(layout.removed_of(s), s, tok, spec.mixture.count_removed))  # type: ignore
    catalogue.write_table(layout.root, "docs", docs)
    catalogue.write_table(layout.root, "shards", [{"split": w.split, "source": w.source, **sh} for w in written
                                              for sh in w.shards])
    catalogue.write_table(layout.root, "streams", [
        {"split": w.split, "source": w.source, "path": str(w.path.relative_to(layout.root)), "samples": w.stats.samples,
         "tokens": w.stats.tokens, "n_bytes": w.stats.n_bytes, "docs": int((w.uses > 0).sum()),
         "proportion": (w.stats.tokens / sum(x.stats.tokens for x in written if x.split == "train")
                        if w.split == "train" else None),
         "epochs": epochs.get(w.source, 0.0) if w.split == "train" else 1.0, "shards": len(w.shards)}
        for w in written])


def _removed_rows(folder: Path, source: str, tok: Any, count: bool) -> list[dict[str, Any]]:
    rows = _read(folder, [*DOC_COLUMNS, "reason"]) if folder.is_dir() else {c: [] for c in [*DOC_COLUMNS, "reason"]}
    n_tokens = count_tokens(tok, rows["text"]) if count else [None] * len(rows["id"])
    return [{**{c: rows[c][i] for c in DOC_COLUMNS if c != "text"}, "source": source, "kept": False,
             "reason": rows["reason"][i], "n_tokens": None if n_tokens[i] is None else int(n_tokens[i]),
             "split": None, "epochs": 0, "shard": None} for i in range(len(rows["id"]))]


def _report_section(layout: RunLayout, plan: dict[str, Any]) -> None:
    """Replace the mixture section of ``report.md`` (everything after the marker) with this plan."""
    lines = [REPORT_MARK, "## Mixture", "",
             f"{plan['total_tokens']:,} training tokens, sequences of {plan['max_seq_len']}, tokenizer "
             f"`{plan['tokenizer']}` (vocab {plan['vocab_size']:,}), seed {plan['seed']}. Streams: `streams.yaml`; "
             "plan: `plan.json`; catalogue: `mixlab tokens` over `catalogue/`.", "",
             "| source | weight | available tokens | target tokens | share | epochs | docs used | valid docs "
             "| valid tokens |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in plan["sources"]:
        share = s["target_tokens"] / plan["total_tokens"]
        lines.append(f"| {s['source']} | {s['weight']:g} | {s['available_tokens']:,} | {s['target_tokens']:,} | "
                     f"{share:.2%} | {s['epochs']:.3f} | {s['docs_used']:,} | {s['valid_docs']:,} | "
                     f"{s['valid_tokens']:,} |")
    report = layout.report
    head = report.read_text(encoding="utf-8").split(REPORT_MARK)[0].rstrip() if report.exists() else "# Report"
    report.write_text(head + "\n\n" + "\n".join(lines) + "\n", encoding="utf-8")

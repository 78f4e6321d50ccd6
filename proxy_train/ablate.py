"""Ablations: one proxy per mixture and seed with an identical budget, evaluated, compared with uncertainty.

Layout of ``ablations/<name>/``: ``config.json`` (the settings every proxy shares), ``proxies/<mix>/seed-<k>/``
(each proxy's training output), ``results.parquet`` (one row per mix, seed and metric), ``curves.parquet``
(training loss per step) and the report (``report.md`` with SVG plots, from :mod:`mixtures.ablation_stats`).

What differs between the proxies of one ablation: the mixture and the *init seed* (model initialisation).
What is shared: model size, token budget, batch, learning-rate schedule, tokenizer setting (each mix's spec)
and the *data-order seed* (StreamingDataset shuffle). Finished (mix, seed) pairs are read back, never retrained;
an interrupted proxy resumes from its last checkpoint.

The common evaluation set (``common_eval.json``): per source present in every mix, the documents every mix held
out (``split = 'valid'`` in each run's catalogue), with their cleaned text from ``runs/<mix>/docs/<source>/``
when every mix cleaned them to the same text. No mix trains on them, and every proxy is scored on the same bytes:
``bpb_common/<source>`` and ``bpb_common/mean``. A proxy recorded without them (or scored on a common set that
has since changed) is scored again from its saved checkpoint, never retrained. Experiments over spec variants
(``mixlab.experiments``) set ``reference_mix``: the documents every variant held out are scored on the baseline's
cleaned text, also where a variant cleaned them differently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import pandas as pd

from mixtures import ablation_stats
from proxy_train import data
from proxy_train.train import TrainConfig, latest_checkpoint, train

log = logging.getLogger(__name__)

T = TypeVar("T")
COMMON_PREFIX = "bpb_common/"
INIT_SEED_BASE = 17  # seed k of an ablation initialises its model with INIT_SEED_BASE + k


@dataclass(frozen=True)
class AblationConfig:
    """The settings every proxy of an ablation shares (config.json); changing them needs a new name."""

    proxy: str = "tiny"
    tokens: int | None = None  # token budget per proxy (default: the size's)
    global_batch: int | None = None
    data_seed: int = data.SHUFFLE_SEED
    init_seed_base: int = INIT_SEED_BASE
    mc_tasks: tuple[str, ...] = ()
    mc_limit: int | None = None
    bootstrap_seed: int = 0
    # score the common set on this mix's cleaned text (experiments whose variants edit lines); None: identical texts
    reference_mix: str | None = None
    # own-split bpb/* on the first N samples of each validation stream (None: all; they are for learning curves)
    valid_samples: int | None = None

    def train_config(self, seed: int) -> TrainConfig:
        """The proxy's training config for seed index ``seed``."""
        return TrainConfig(size=self.proxy, tokens=self.tokens, global_batch=self.global_batch,
                           seed=self.init_seed_base + seed, data_seed=self.data_seed, device="auto")


@dataclass(frozen=True)
class Mix:
    """A mixture to ablate: its name and the run directory that holds its streams.yaml."""

    name: str
    run_dir: Path


@dataclass
class Ablation:
    """One ablation directory: its config, its mixes, and what is already done."""

    root: Path
    config: AblationConfig
    mixes: list[Mix] = field(default_factory=list)

    @property
    def results_path(self) -> Path:
        return self.root / "results.parquet"

    @property
    def curves_path(self) -> Path:
        return self.root / "curves.parquet"

    def proxy_dir(self, mix: str, seed: int) -> Path:
        """Where the proxy of ``mix`` and seed index ``seed`` trains."""
        return self.root / "proxies" / mix / f"seed-{seed}"

    def done(self) -> set[tuple[str, int]]:
        """(mix, seed) pairs with results recorded."""
        if not self.results_path.is_file():
            return set()
        table = pd.read_parquet(self.results_path, columns=["mix", "seed"])
        return {(m, int(s)) for m, s in zip(table["mix"], table["seed"], strict=True)}


def open_ablation(root: Path, config: AblationConfig) -> Ablation:
    """Create ``root`` with config.json, or check that an existing one was made with the same settings."""
    file = root / "config.json"
    wanted = json.loads(json.dumps(asdict(config)))
    if file.is_file():
        saved = json.loads(file.read_text(encoding="utf-8"))
        differ = sorted(k for k in wanted if saved.get(k) != wanted[k])
        if differ:
            raise ValueError(f"{file}: this ablation was started with other settings ({', '.join(differ)}: "
                             f"{[saved.get(k) for k in differ]} there, {[wanted[k] for k in differ]} now); "
                             f"use the same settings to resume, or another --name")
    root.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(wanted, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return Ablation(root=root, config=config)


def _append(path: Path, rows: pd.DataFrame) -> None:
    """Append rows to a Parquet table (rewritten whole; these tables are small)."""
    table = pd.concat([pd.read_parquet(path), rows], ignore_index=True) if path.is_file() else rows
    tmp = path.with_suffix(".tmp")
    table.to_parquet(tmp, index=False)
    tmp.replace(path)


def release_shared_memory() -> int:
    """Close the shared memory blocks of finished StreamingDatasets; returns how many were released.

    streaming 0.13 registers every block it creates or attaches to (also the ones it only opens to find a free
    prefix) with ``atexit``, so none is ever garbage-collected: each stays open, one file descriptor apiece,
    until the process ends, and every new dataset probes all blocks under /dev/shm. One proxy leaves hundreds of
    descriptors; an ablation of some 20 proxies in one process died with "Too many open files". Called between
    proxies, when no dataset is in use: blocks this process created are closed and unlinked, blocks of other
    processes only closed (streaming's own ``cleanup``).
    """
    import atexit
    import gc

    from mixtures.streaming_compat import import_streaming

    import_streaming()
    from streaming.base.shared.memory import SharedMemory

    released = 0
    for obj in gc.get_objects():
        if type(obj) is SharedMemory:  # not isinstance: that reads __class__, which warns on some torch objects
            obj.cleanup()
            atexit.unregister(obj.cleanup)
            released += 1
    return released


SHM_RETRIES = 5


def shm_retrying(what: str, fn: Callable[[], T]) -> T:
    """Run ``fn``, again when streaming loses the race for a shared memory prefix to another process.

    streaming picks the first free prefix under /dev/shm and then creates it; when another process (a second
    ablation, a colleague's run) creates the same prefix in between, the dataset fails with ``FileExistsError``.
    Training resumes from its last checkpoint and evaluation starts over, so trying again is safe.
    """
    for attempt in range(1, SHM_RETRIES + 1):
        try:
            return fn()
        except FileExistsError as err:
            if attempt == SHM_RETRIES:
                raise
            wait = random.uniform(1, 5)
            log.warning("%s: shared memory prefix taken by another process (%s); trying again in %.1f s (%d/%d)",
                        what, err, wait, attempt, SHM_RETRIES - 1)
            release_shared_memory()
            time.sleep(wait)
    raise AssertionError("unreachable")


def train_proxy(ablation: Ablation, mix: Mix, seed: int) -> Path:
    """Train (or resume, or reuse) the proxy of ``mix`` and ``seed``; returns its output directory."""
    out = ablation.proxy_dir(mix.name, seed)
    if (out / "summary.parquet").is_file():
        log.info("%s seed %d: proxy already trained, reusing %s", mix.name, seed, out)
        return out
    return train(mix.run_dir, ablation.config.train_config(seed), out=out, resume=latest_checkpoint(out) is not None)


def result_rows(metrics: dict[str, float], mix: str, seed: int, higher: dict[str, bool]) -> pd.DataFrame:
    """Long-form result rows for one proxy."""
    return pd.DataFrame([{"mix": mix, "seed": seed, "metric": k, "value": float(v), "higher_is_better": higher[k]}
                         for k, v in sorted(metrics.items())])


def curve_rows(out: Path, mix: str, seed: int) -> pd.DataFrame:
    """The training loss curve of a proxy, labelled with its mix and seed."""
    curve = pd.read_parquet(out / "metrics.parquet", columns=["step", "loss"])
    return curve.assign(mix=mix, seed=seed)[ablation_stats.CURVE_COLUMNS]


@dataclass
class CommonSet:
    """The documents every mix of an ablation held out: per source (id, cleaned text) pairs, and report notes."""

    docs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """A hash of every source, id and text: equal fingerprints mean the same bytes are scored."""
        digest = hashlib.sha256()
        for source, docs in sorted(self.docs.items()):
            for doc_id, text in docs:
                digest.update(f"{source}\x00{doc_id}\x00{text}\x00".encode())
        return digest.hexdigest()

    def as_json(self) -> dict:
        """What common_eval.json records: per source the ids, documents and UTF-8 bytes, and the notes."""
        return {"fingerprint": self.fingerprint, "notes": self.notes,
                "sources": {s: {"docs": len(d), "bytes": sum(len(t.encode()) for _, t in d),
                                "ids": [i for i, _ in d]} for s, d in sorted(self.docs.items())}}


def _catalogue(run_dir: Path) -> pd.DataFrame | None:
    """(source, id, split) of a run's kept and removed documents; None when the run has no catalogue."""
    parts = sorted((run_dir / "catalogue" / "docs").glob("*.parquet"))  # the docs table, in workers' parts
    return pd.concat([pd.read_parquet(p, columns=["source", "id", "split"]) for p in parts],
                     ignore_index=True) if parts else None


def _cleaned_texts(run_dir: Path, source: str, ids: set[str]) -> dict[str, str]:
    """id -> cleaned text of the wanted documents of one source of a run (``runs/<mix>/docs/<source>/``)."""
    parts = [pd.read_parquet(p, columns=["id", "text"]) for p in sorted((run_dir / "docs" / source).glob("*.parquet"))]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["id", "text"])
    table = table[table["id"].isin(ids)]
    return dict(zip(table["id"], table["text"], strict=True))


def common_eval_set(mixes: list[Mix], reference: str | None = None) -> CommonSet:
    """Per source in every mix: the documents every mix held out, when every mix cleaned them to the same text.

    With ``reference`` (a mix name; experiments over variants of one spec): per source of the reference, the
    documents it held out that *no* mix trained on (each other mix held them out, removed them or never read
    them), scored on the reference's cleaned text, also where another mix cleaned them differently or removed
    them. A variant without a line rule keeps more of each page, a stricter quality cut removes most of the
    baseline's pages: either way every proxy is scored on the same bytes, and none trained on any version of them.
    """
    catalogues = {m.name: _catalogue(m.run_dir) for m in mixes}
    lacking = [name for name, cat in catalogues.items() if cat is None]
    if lacking or not mixes:
        return CommonSet(notes={"(all)": f"no common set: {', '.join(lacking) or 'no mixes'} "
                                         "lack catalogue/docs/ (build with `mixlab mixture`)"})
    if reference is not None:
        return _reference_set(mixes, catalogues, reference)
    cats = [c for c in catalogues.values() if c is not None]
    every = set.intersection(*(set(c["source"]) for c in cats))
    common = CommonSet(notes={s: "not in every mix: not scored" for s in sorted(set.union(*(set(c["source"])
                                                                                      for c in cats)) - every)})
    for source in sorted(every):
        ids = set.intersection(*(set(c.loc[(c["source"] == source) & (c["split"] == "valid"), "id"]) for c in cats))
        texts = [_cleaned_texts(m.run_dir, source, ids) for m in mixes]
        same = sorted(i for i in ids if len({t.get(i) for t in texts}) == 1 and i in texts[0])
        differ = f"; {len(ids) - len(same)} more held out by every mix but cleaned to different texts, left out" \
            if len(same) < len(ids) else ""
        if not same:
            common.notes[source] = f"empty: {len(ids)} documents held out by every mix{differ}"
            continue
        common.docs[source] = [(i, texts[0][i]) for i in same]
        n_bytes = sum(len(texts[0][i].encode()) for i in same)
        common.notes[source] = f"{len(same)} documents, {n_bytes:,} bytes{differ}"
    return common


def _reference_set(mixes: list[Mix], catalogues: dict[str, pd.DataFrame], reference: str) -> CommonSet:
    """The reference mix's held-out documents that no mix trained on, with the reference's cleaned text."""
    names = [m.name for m in mixes]
    if reference not in names:
        raise ValueError(f"reference mix {reference!r} is not one of the ablation's mixes ({', '.join(names)})")
    ref_cat = catalogues[reference]
    common = CommonSet()
    for source in sorted(set(ref_cat["source"])):
        held = set(ref_cat.loc[(ref_cat["source"] == source) & (ref_cat["split"] == "valid"), "id"])
        trained = set().union(*(set(c.loc[(c["source"] == source) & (c["split"] == "train"), "id"])
                                for c in catalogues.values()))
        ids = held - trained
        texts = {m.name: _cleaned_texts(m.run_dir, source, ids) for m in mixes}
        ref_texts = texts[reference]
        scored = sorted(i for i in ids if i in ref_texts)
        removed = sum(1 for i in scored if any(i not in t for t in texts.values()))
        edited = sum(1 for i in scored if len({t[i] for t in texts.values() if i in t}) > 1)
        notes = [f"{len(scored)} documents held out by {reference}"]
        if held & trained:
            notes.append(f"{len(held & trained)} more that some mix trained on, left out")
        if removed or edited:
            notes.append(f"of them {removed} removed and {edited} cleaned to other texts by some mix, all scored on "
                         f"{reference}'s text")
        if not scored:
            common.notes[source] = "empty: " + "; ".join(notes)
            continue
        common.docs[source] = [(i, ref_texts[i]) for i in scored]
        n_bytes = sum(len(ref_texts[i].encode()) for i in scored)
        common.notes[source] = f"{notes[0]}, {n_bytes:,} bytes" + "".join(f"; {n}" for n in notes[1:])
    return common


def save_common_set(ablation: Ablation, common: CommonSet) -> None:
    """Write common_eval.json; if it records another set, drop the old ``bpb_common/*`` rows so they are redone."""
    file = ablation.root / "common_eval.json"
    old = json.loads(file.read_text(encoding="utf-8"))["fingerprint"] if file.is_file() else None
    if old not in (None, common.fingerprint) and ablation.results_path.is_file():
        results = pd.read_parquet(ablation.results_path)
        log.warning("ablation %s: the common evaluation set changed; rescoring every proxy on it",
                    ablation.root.name)
        results[~results.metric.str.startswith(COMMON_PREFIX)].to_parquet(ablation.results_path, index=False)
    file.write_text(json.dumps(common.as_json(), indent=1) + "\n", encoding="utf-8")


def common_bits_per_byte(proxy_dir: Path, common: CommonSet) -> dict[str, float]:
    """``bpb_common/<source>`` of a proxy's newest checkpoint under its own tokenizer, and their mean."""
    import numpy as np
    import torch
    from tokenizers import Tokenizer

    from mixtures.tokenizer import prepare
    from proxy_train import evaluate

    if not common.docs:
        return {}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, meta = evaluate.load_model(evaluate.resolve_checkpoint(proxy_dir), device)
    streams = data.load_streams(meta["run_dir"])
    tok = prepare(Tokenizer.from_file(str(streams.tokenizer_file)))
    metrics = {f"{COMMON_PREFIX}{s}": evaluate.bits_per_byte_texts(
        model, tok, [t for _, t in docs], device, streams.eos_token_id, batch_size=64)["bits_per_byte"]
        for s, docs in common.docs.items()}
    return {**metrics, f"{COMMON_PREFIX}mean": float(np.mean(list(metrics.values())))}


def backfill_common(ablation: Ablation, common: CommonSet, seeds: int) -> None:
    """Score recorded proxies that lack ``bpb_common/*`` rows from their saved checkpoints (no retraining)."""
    if not common.docs or not ablation.results_path.is_file():
        return
    results = pd.read_parquet(ablation.results_path, columns=["mix", "seed", "metric"])
    scored = set(zip(*[results.loc[results.metric.str.startswith(COMMON_PREFIX), c] for c in ("mix", "seed")],
                     strict=True))
    names = {m.name for m in ablation.mixes}
    for mix, seed in sorted(ablation.done()):
        if mix in names and seed < seeds and (mix, seed) not in scored:
            log.info("ablation %s: scoring %s seed %d on the common set from its checkpoint",
                     ablation.root.name, mix, seed)
            metrics = common_bits_per_byte(ablation.proxy_dir(mix, seed), common)
            _append(ablation.results_path, result_rows(metrics, mix, seed, dict.fromkeys(metrics, False)))


def bits_per_byte(proxy_dir: Path, max_samples: int | None = None) -> dict[str, float]:
    """Bits-per-byte of a proxy's newest checkpoint on each validation stream of the run it trained on."""
    import torch

    from proxy_train import evaluate

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, meta = evaluate.load_model(evaluate.resolve_checkpoint(proxy_dir), device)
    rows = evaluate.bits_per_byte(model, data.load_streams(meta["run_dir"]), device, max_samples=max_samples)
    return {r["domain"]: float(r["bits_per_byte"]) for r in rows}


def evaluate_proxy(ablation: Ablation, out: Path) -> tuple[dict[str, float], dict[str, bool]]:
    """Score a trained proxy: ``bpb/<domain>`` (lower is better) and ``mc/<task>`` centered accuracy."""
    from proxy_train.evaluate import evaluate

    cfg = ablation.config
    if not cfg.mc_tasks:
        metrics = {f"bpb/{d}": v for d, v in bits_per_byte(out, cfg.valid_samples).items()}
        return metrics, dict.fromkeys(metrics, False)
    eval_dir = evaluate(out, tasks=list(cfg.mc_tasks), limit=cfg.mc_limit, max_samples=cfg.valid_samples,
                        device="auto")
    results = json.loads((eval_dir / "results.json").read_text(encoding="utf-8"))
    metrics = {f"bpb/{d}": v for d, v in results["bits_per_byte"].items()}
    for row in results["mc"]:
        centered = row["acc_norm_centered"] if row["acc_norm_centered"] is not None else row["acc_centered"]
        metrics[f"mc/{row['task']}"] = centered
    return metrics, {k: k.startswith("mc/") for k in metrics}


def run_ablation(ablation: Ablation, seeds: int) -> Path:
    """Train and evaluate every missing (mix, seed) proxy, then write the report; returns report.md."""
    common = common_eval_set(ablation.mixes, ablation.config.reference_mix)
    save_common_set(ablation, common)
    log.info("ablation %s: common evaluation set: %s", ablation.root.name,
             "; ".join(f"{s}: {note}" for s, note in common.notes.items()))
    done = ablation.done()
    todo = [(m, s) for m in ablation.mixes for s in range(seeds) if (m.name, s) not in done]
    log.info("ablation %s: %d mixes x %d seeds, %d already done, %d to train",
             ablation.root.name, len(ablation.mixes), seeds, len(done), len(todo))
    for i, (mix, seed) in enumerate(todo, 1):
        log.info("ablation %s: proxy %d/%d: %s seed %d (init seed %d)", ablation.root.name, i, len(todo),
                 mix.name, seed, ablation.config.init_seed_base + seed)
        what = f"{mix.name} seed {seed}"
        out = shm_retrying(what, partial(train_proxy, ablation, mix, seed))
        metrics, higher = shm_retrying(what, partial(evaluate_proxy, ablation, out))
        shared = common_bits_per_byte(out, common)
        metrics, higher = {**metrics, **shared}, {**higher, **dict.fromkeys(shared, False)}
        _append(ablation.curves_path, curve_rows(out, mix.name, seed))
        _append(ablation.results_path, result_rows(metrics, mix.name, seed, higher))  # last: marks it done
        release_shared_memory()
    backfill_common(ablation, common, seeds)
    return write_report(ablation, seeds, common)


def shared_mean(results: pd.DataFrame) -> pd.DataFrame:
    """Rows ``bpb/shared_mean``: per proxy, mean bits-per-byte over the domains every mix was scored on."""
    bpb = results[results.metric.str.startswith("bpb/")]
    per_mix = bpb.groupby("mix")["metric"].agg(set)
    if per_mix.empty:
        return results.iloc[0:0]
    shared = set.intersection(*per_mix)
    if not shared:
        return results.iloc[0:0]
    rows = bpb[bpb.metric.isin(shared)].groupby(["mix", "seed"], as_index=False)["value"].mean()
    return rows.assign(metric="bpb/shared_mean", higher_is_better=False)[ablation_stats.RESULT_COLUMNS]


def write_report(ablation: Ablation, seeds: int, common: CommonSet | None = None) -> Path:
    """The ablation's report.md from results.parquet and curves.parquet, led by the common-set metrics."""
    results = pd.read_parquet(ablation.results_path)
    results = results[results.seed < seeds]
    results = pd.concat([results, shared_mean(results)], ignore_index=True)
    curves = pd.read_parquet(ablation.curves_path) if ablation.curves_path.is_file() else pd.DataFrame(
        columns=ablation_stats.CURVE_COLUMNS)
    cfg = ablation.config
    first = next(iter(ablation.root.glob("proxies/*/seed-0/summary.parquet")), None)
    summary = pd.read_parquet(first).iloc[0].to_dict() if first is not None else {}
    settings = {
        "mixes": ", ".join(f"{m.name} ({m.run_dir})" for m in ablation.mixes) or "(from results.parquet)",
        "seeds": f"{seeds} (seed k initialises the model with {cfg.init_seed_base} + k; same k on every mix)",
        "proxy": f"{cfg.proxy}, {summary.get('params', '?')} parameters, {summary.get('steps', '?')} steps, "
                 f"{summary.get('tokens', '?')} tokens each",
        "data order": f"StreamingDataset shuffle seed {cfg.data_seed}, identical for every proxy",
        "tokenizer": "each mix's spec setting (bits-per-byte does not depend on the tokenizer)",
        "evaluation": "bits-per-byte on the common held-out set (`bpb_common/*`: the same documents and bytes "
                      "for every proxy, trained on by none) and on each mix's own validation stream (`bpb/*`: "
                      "different texts per mix, so not a fair comparison across mixes); "
                      + (f"MC tasks {', '.join(cfg.mc_tasks)} (centered accuracy, first {cfg.mc_limit} items)"
                         if cfg.mc_tasks else "no MC tasks"),
        "bpb/shared_mean": "mean over the domains every mix was scored on",
    }
    which = (f"Per source of {cfg.reference_mix}, the documents it held out that no mix trained on (each other mix "
             f"held them out or removed them), scored on {cfg.reference_mix}'s cleaned text (also where another mix "
             "cleaned a document differently)" if cfg.reference_mix else
             "Per source present in every mix, the documents every mix held out (the intersection of the runs' "
             "validation splits), scored on their cleaned text (where every mix cleaned them to the same text)")
    notes = [f"{which} under each proxy's own tokenizer; ids in "
             "`common_eval.json`. `bpb_common/mean` is the unweighted mean over the scored sources.", "",
             "| source | common set |", "|---|---|"]
    notes += [f"| {s} | {note} |" for s, note in (common.notes if common is not None else {}).items()] or \
        ["| (none) | not computed in this run |"]
    return ablation_stats.write_report(results, curves, ablation.root, ablation.root.name, settings,
                                       seed=cfg.bootstrap_seed, lead=f"{COMMON_PREFIX}mean",
                                       sections={"Common evaluation set": notes})

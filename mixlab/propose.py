"""``mixlab propose``: tiny proxies on Dirichlet mixtures around a spec, then the predicted-best spec.

Every proxy reads the same *pool*: the spec's cleaned documents packed once per source (all available tokens,
one epoch, the same tokenizer and validation documents), and differs only in the per-source proportions of its
``streams.yaml``. So one build serves every sampled mixture, and all proxies are scored on the same held-out
text. The epoch caps that bound the samples are those of the real mixture: ``cap * available / budget_tokens``
with the spec's budget. The statistics live in :mod:`mixtures.regmix`; this module is the proposal job that drives them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from mixlab import jobs
from mixtures import regmix as propose
from mixtures.layout import RunLayout
from mixtures.mixture_spec import MixtureSpec
from mixtures.spec import Spec, load_spec
from mixtures.streams_manifest import StreamsManifest
from proxy_train.ablate import bits_per_byte
from proxy_train.train import TrainConfig, train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProposeConfig:
    """How many proxies, how big, scored on what."""

    proxies: int = 24
    proxy: str = "tiny"
    tokens: int = 8 * 64 * 20
    target: str = "bpb/mean"
    regressor: str = "lightgbm"
    seed: int = 0
    n_search: int = 20000
    top_k: int = 32


def _plan(run_dir: Path) -> dict:
    return json.loads(RunLayout(run_dir).plan.read_text(encoding="utf-8"))


def build_pool(spec: Spec, base_run: Path, out: Path) -> Path:
    """Pack every available token of each source once, from ``base_run``'s cleaned documents, into ``out``."""
    layout = RunLayout(out)
    if layout.streams.is_file():
        return out
    plan = _plan(base_run)
    out.mkdir(parents=True, exist_ok=True)
    base = RunLayout(base_run)
    for link, target in ((layout.docs, base.docs), (layout.removed, base.removed)):
        if not link.exists():
            link.symlink_to(target.resolve(), target_is_directory=True)
    seq = plan["max_seq_len"]
    mixture = spec.mixture.model_dump(mode="json")  # type: ignore[union-attr]
    # 98 % of what each source holds: whole-sequence rounding never asks for a second epoch
    mixture["sources"] = {s["source"]: {"tokens": int(0.98 * s["available_tokens"]) // seq * seq}
                          for s in plan["sources"] if s["available_tokens"] >= 2 * seq}
    mixture.update(budget_tokens=None, epoch_cap=1.0, on_shortfall="redistribute", count_removed=False)
    pool = spec.model_copy(update={"name": f"{spec.name}_pool", "mixture": MixtureSpec.model_validate(mixture),
                                   "sources": {s: spec.sources[s] for s in mixture["sources"]}})
    jobs.build(pool, layout)
    return out


def proxy_streams(pool: Path, weights: dict[str, float], out: Path) -> Path:
    """A run directory whose streams.yaml reads the pool's MDS streams at ``weights``."""
    manifest = StreamsManifest.read(RunLayout(pool).streams).with_proportions(weights)
    manifest.write(RunLayout(out).streams)
    return out


def score(proxy_dir: Path, target: str) -> float:
    """The target metric of a trained proxy: ``bpb/mean``, ``bpb/<domain>`` or ``mc/<task>``."""
    import numpy as np

    from proxy_train import evaluate

    kind, _, name = target.partition("/")
    if kind == "mc":
        out = evaluate.evaluate(proxy_dir, tasks=[name], limit=100, device="auto")
        row = json.loads((out / "results.json").read_text(encoding="utf-8"))["mc"][0]
        return float(row["acc_norm_centered"] if row["acc_norm_centered"] is not None else row["acc_centered"])
    rows = bits_per_byte(proxy_dir)
    if name == "mean":
        return float(np.mean(list(rows.values())))
    if name not in rows:
        raise ValueError(f"target {target!r}: no validation domain {name!r}; have {', '.join(rows)}")
    return float(rows[name])


def run(spec: Spec, cfg: ProposeConfig, work: Path, out_dir: Path, origin: Path | None = None) -> Path:
    """Sample, train, fit, search and write ``mix_vN.yaml`` into ``out_dir``; returns its path.

    ``origin``: the spec the proposal copies (default ``spec``'s file); set when ``spec`` is a tiny copy.
    """
    if spec.mixture is None:
        raise ValueError(f"{spec.spec_path}: propose needs a spec with a mixture: section (weights, budget)")
    if not cfg.target.startswith(("bpb/", "mc/")):
        raise ValueError(f"target {cfg.target!r}: use bpb/mean, bpb/<domain> or mc/<task>")
    base_run = jobs.ensure_built(spec, tiny=origin is not None)
    pool = build_pool(load_spec(spec.spec_path), base_run, work / "pool")
    plan = _plan(pool)
    available = {s["source"]: s["available_tokens"] for s in _plan(base_run)["sources"]}
    sources = [s["source"] for s in plan["sources"]]
    caps = {s: spec.mixture.cap(s) for s in sources}
    limits = propose.max_weights({s: available[s] for s in sources}, spec.mixture.total_tokens, caps)
    weights = {s: float(m.weight if m.weight is not None else m.tokens or 0)
               for s, m in spec.mixture.sources.items() if s in sources}
    prior = propose.make_prior(weights, limits)

    def evaluate(mix: dict[str, float], index: int) -> float:
        proxy_dir = work / "proxies" / f"p{index:04d}"
        saved = proxy_dir / "score.json"
        if saved.is_file() and json.loads(saved.read_text())["weights"] == mix:
            return float(json.loads(saved.read_text())["score"])
        streams = proxy_streams(pool, mix, proxy_dir / "mix")
        train(streams, TrainConfig(size=cfg.proxy, tokens=cfg.tokens, seed=17), out=proxy_dir / "proxy",
              resume=(proxy_dir / "proxy" / "checkpoints").is_dir())
        value = score(proxy_dir / "proxy", cfg.target)
        saved.write_text(json.dumps({"weights": mix, "score": value}), encoding="utf-8")
        return value

    proposal, _, _ = propose.run_proposal(prior, evaluate, n_proxies=cfg.proxies, target=cfg.target,
                                          minimize=cfg.target.startswith("bpb/"), kind=cfg.regressor,
                                          seed=cfg.seed, n_search=cfg.n_search, top_k=cfg.top_k)
    path = propose.next_spec_path(out_dir)
    origin = origin or Path(spec.spec_path)
    header = propose.proposal_header(proposal, origin.name)
    description = (f"proposed from {spec.name}: predicted {cfg.target} {proposal.predicted:.4f} "
                   f"+- {proposal.std:.4f} ({cfg.proxies} {cfg.proxy} proxies)")
    propose.write_spec(origin, path, proposal.weights, header, description,
                       fallback_mixture=spec.mixture.model_dump(mode="json", exclude_defaults=True))
    log.info("proposal written to %s", path)
    return path

"""Shrink a spec for CPU: the first documents of each source, a small BPE, short sequences, a small budget.

Used by ``mixlab ablate --tiny-docs N|auto``, the notebooks and the tests, so that three shipped mixtures with
three seeds each train in minutes on two cores. The copy keeps the spec's sources, filters and weights; a spec
without a ``mixture:`` section gets equal weights over its sources.

The held-out bucket of a tiny copy is a fifth of each source's kept documents (:data:`TINY_VALIDATION`), and
:data:`TINY_SOURCE_DOCS` (``--tiny-docs auto``) reads enough of each shared corpus that the documents *every*
shipped mix holds out come to at least 200 KB per source: enough text for a common evaluation set that separates
mixtures (docs/ablations.md). ``budget_tokens`` covers the ``small`` proxy's budget without repeating documents.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from mixtures.spec import Spec, find_spec, load_spec

log = logging.getLogger(__name__)

TINY_DOCS = 60  # documents per source when a count is given for no source
# --tiny-docs auto: the first N documents of each shared corpus, so that a fifth of what the strictest shipped mix
# (mix_v3) keeps is >= 200 KB per source. The corpora start with their hardest documents for the filters: C4 keeps
# about 1 web page in 20 of the first 1,000 and mC4 almost no multilingual page of the first 3,000 (docs/ablations.md).
TINY_SOURCE_DOCS = {"web": 2000, "wiki": 150, "papers": 2000, "code": 200, "instruct": 4000, "multilingual": 3500}
TINY_VALIDATION = {"fraction": 0.2, "min_docs": 2, "max_docs": 1000}
TINY_BUDGET_TOKENS = 1_000_000  # the small proxy's 614,400 tokens fit without repeating a document


def tiny_mixture(sources: list[str], weights: dict[str, float] | None, budget_tokens: int,
                 seq_len: int, vocab_size: int, validation: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``mixture:`` section small enough for CPU proxies (epoch caps loose, shortfall redistributed)."""
    weights = weights or dict.fromkeys(sources, 1.0)
    return {"tokenizer": {"name": "bpe", "vocab_size": vocab_size, "sample_chars": 300_000},
            "budget_tokens": budget_tokens, "max_seq_len": seq_len, "epoch_cap": 50,
            "on_shortfall": "redistribute", "validation": dict(validation or TINY_VALIDATION),
            "sources": {s: {"weight": float(weights.get(s, 0.0))} for s in sources}}


def shrink_spec(spec_name: str | Path, out_dir: Path, docs: int = TINY_DOCS, budget_tokens: int = TINY_BUDGET_TOKENS,
                seq_len: int = 64, vocab_size: int = 512, output_dir: Path | None = None,
                source_docs: dict[str, int] | None = None, validation: dict[str, Any] | None = None) -> Spec:
    """Write a tiny copy of a spec into ``out_dir`` (same name) and return it loaded.

    ``source_docs`` gives some sources another document count, e.g. ``{"web": 400}``: C4 rules keep about one
    web page in twenty, and a quality classifier needs ten kept documents per class; :data:`TINY_SOURCE_DOCS`
    is the set sized for a 200 KB common evaluation set. ``validation`` is the copy's held-out setting
    (default :data:`TINY_VALIDATION`).
    """
    path = find_spec(spec_name)
    original = load_spec(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["name"] = original.name
    data["data_root"] = str(original.root)
    data["output_dir"] = str(output_dir or out_dir / "runs")
    data.pop("pipeline", None)
    for name, source in data["sources"].items():
        want = (source_docs or {}).get(name, docs)
        source["limit"] = min(int(source.get("limit") or want), want)
    weights = None
    if original.mixture is not None:
        weights = {s: float(m.weight if m.weight is not None else m.tokens or 0)
                   for s, m in original.mixture.sources.items()}
    data["mixture"] = tiny_mixture(sorted(data["sources"]), weights, budget_tokens, seq_len, vocab_size, validation)
    data["mixture"]["prefer_quality"] = bool(original.mixture and original.mixture.prefer_quality)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{original.name}.yaml"
    out.write_text(f"# tiny copy of {path} for CPU runs\n" + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_spec(out)


def drop_thin_sources(spec: Spec, kept_docs: dict[str, int], min_docs: int = 3) -> Spec:
    """Rewrite a tiny copy without the sources that kept fewer than ``min_docs`` documents.

    Filters may leave a source of a tiny copy (nearly) empty; it cannot hold out validation text then. The copy
    says which sources it left out, in a comment at its top.
    """
    thin = sorted(s for s, n in kept_docs.items() if n < min_docs)
    if not thin:
        return spec
    if len(thin) == len(spec.sources):
        raise ValueError(f"{spec.spec_path}: no source kept {min_docs} documents after filtering; "
                         "raise the document limit")
    path = Path(spec.spec_path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for source in thin:
        del data["sources"][source]
        data.get("mixture", {}).get("sources", {}).pop(source, None)
    note = "".join(f"# left out {s}: {kept_docs[s]} of its first {spec.sources[s].limit} documents passed the "
                   f"filters\n" for s in thin)
    path.write_text(note + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    log.warning("tiny copy %s: left out %s (fewer than %d documents passed the filters)", path.name,
                ", ".join(thin), min_docs)
    return load_spec(path)


def parse_source_docs(text: str) -> dict[str, int]:
    """``"web=400,code=100"`` -> ``{"web": 400, "code": 100}`` (an empty string gives no overrides)."""
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise ValueError(f"expected SOURCE=DOCS items separated by commas, got {item!r}")
        out[name.strip()] = int(value)
    return out

"""Names a mixture spec or ``mixlab filter --chain`` may use, and how to build them.

Document-level filters map to ``"module:factory"`` strings imported on first use, so reading the registry
(for spec validation or ``--help``) stays cheap. Corpus-level stages (URL dedup, line dedup, near-dedup) need
the whole corpus and live in :mod:`pipelines.stages`; their names are listed here so a spec can be validated
without importing Beam.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from filters.base import Filter

DOC_FILTERS: dict[str, str] = {
    # name -> "module:factory"; factory(**params) -> Filter
    "langid": "filters.langid:langid",
    "length": "filters.length:LengthFilter",
    "c4_length": "filters.c4:C4Length",
    "c4_clean": "filters.c4:C4Cleaner",
    "c4_langdetect": "filters.c4:C4EnglishLangdetect",
    "c4_badwords": "filters.badwords:BadWordsFilter",
    "mc4_badwords": "filters.badwords:mc4_badwords",
    "mc4_paragraph": "filters.mc4:ParagraphFilter",
    "mc4_langid": "filters.mc4:Cld3LanguageId",
    "decontam": "filters.decontam:decontam",
    "pii": "filters.pii:pii",
    "gopher_quality": "filters.gopher:GopherQuality",
    "gopher_repetition": "filters.gopher:GopherRepetition",
    "fineweb_quality": "filters.fineweb:FineWebQuality",
}

CORPUS_STAGES: dict[str, str] = {
    # name -> "module:factory" in pipelines/; factory(**params) -> beam.PTransform
    "quality": "pipelines.quality:quality_stage",
    "c4_url_dedup": "pipelines.c4_stages:c4_url_dedup",
    "c4_line_dedup": "pipelines.c4_stages:c4_line_dedup",
    "mc4_line_dedup": "pipelines.c4_stages:mc4_line_dedup",
    "exact_dedup": "pipelines.dedup:exact_dedup",
    "minhash_dedup": "pipelines.dedup:minhash_dedup",
}

# Named chains: what `--chain c4` (or a spec's `filters: [c4]`) expands to, in order.
CHAINS: dict[str, list[str]] = {
    # TFDS c4/en order (docs/c4.md)
    "c4": ["c4_length", "c4_url_dedup", "c4_clean", "c4_line_dedup", "c4_langdetect", "c4_badwords"],
    # TFDS multilingual (mC4): no line heuristics, line dedup without a sentence minimum, soft bad words
    "mc4": ["mc4_paragraph", "c4_url_dedup", "mc4_line_dedup", "mc4_langid", "mc4_badwords"],
    # fastText language ID (English, score >= 0.65, FineWeb's default); `--chain lang,quality`
    "lang": ["langid"],
    # Gopher rules in datatrove's order (docs/filters.md)
    "gopher": ["gopher_repetition", "gopher_quality"],
    # FineWeb's heuristic filters after language ID, in datatrove's examples/fineweb.py order (its C4 step keeps
    # unterminated lines, which c4_clean has no switch for, so it is left out; docs/filters.md)
    "fineweb": ["gopher_repetition", "gopher_quality", "fineweb_quality"],
}


def known_steps() -> list[str]:
    """Every name a filter chain may contain."""
    return sorted({*DOC_FILTERS, *CORPUS_STAGES, *CHAINS})


def expand(steps: list[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Replace chain names by their members (params given to a chain name apply to every member)."""
    out: list[tuple[str, dict[str, Any]]] = []
    for name, params in steps:
        if name in CHAINS:
            out.extend(expand([(member, params) for member in CHAINS[name]]))
        elif name in DOC_FILTERS or name in CORPUS_STAGES:
            out.append((name, dict(params)))
        else:
            raise KeyError(f"unknown filter {name!r}; known: {', '.join(known_steps())}")
    return out


def load_factory(target: str) -> Any:
    """Import ``"module:attr"`` and return the attribute."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_filter(name: str, params: Mapping[str, Any] | None = None) -> Filter:
    """Construct the document-level filter ``name`` with its params."""
    if name not in DOC_FILTERS:
        raise KeyError(f"{name!r} is not a document-level filter; known: {', '.join(sorted(DOC_FILTERS))}")
    return load_factory(DOC_FILTERS[name])(**dict(params or {}))

"""Names a mixture spec or ``mixlab filter --chain`` may use, how to build them, and their parameter models.

Document-level filters map to ``"module:factory"`` strings imported on first use, so reading the registry
(for ``--help``) stays cheap. Corpus-level stages (URL dedup, line dedup, near-dedup, quality) need the whole
corpus and live in ``pipelines/``; their names are listed here so a spec can be validated without importing Beam.

Every registered step has a parameter model (:data:`PARAMS`, a :class:`filters.params.StrictModel` next to its
rule, in ``filters/``): the spec loader checks a step's parameters against it (:func:`step_problems`), and
:func:`build_filter` and the corpus-stage factories build from the validated model.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Mapping
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import InitErrorDetails, PydanticCustomError

from filters.base import Filter
from filters.params import ParamError, check, given, is_internal, problems, user_fields

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

PARAMS: dict[str, str] = {
    # name -> "module:Model" (a StrictModel, importable without Beam)
    "langid": "filters.langid:LangIdParams",
    "length": "filters.length:LengthParams",
    "c4_length": "filters.c4:C4LengthParams",
    "c4_clean": "filters.c4:C4CleanParams",
    "c4_langdetect": "filters.c4:C4LangdetectParams",
    "c4_badwords": "filters.badwords:BadWordsParams",
    "mc4_badwords": "filters.badwords:Mc4BadWordsParams",
    "mc4_paragraph": "filters.mc4:ParagraphParams",
    "mc4_langid": "filters.mc4:Cld3LanguageIdParams",
    "decontam": "filters.decontam:DecontamParams",
    "pii": "filters.pii:PiiParams",
    "gopher_quality": "filters.gopher:GopherQualityParams",
    "gopher_repetition": "filters.gopher:GopherRepetitionParams",
    "fineweb_quality": "filters.fineweb:FineWebQualityParams",
    "quality": "filters.quality:QualityParams",
    "c4_url_dedup": "filters.c4:C4UrlDedupParams",
    "c4_line_dedup": "filters.c4:C4LineDedupParams",
    "mc4_line_dedup": "filters.c4:Mc4LineDedupParams",
    "exact_dedup": "filters.dedup:ExactDedupParams",
    "minhash_dedup": "filters.dedup:MinHashDedupParams",
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
    # FineWeb's heuristic filters after language ID, in datatrove's examples/fineweb.py order; its C4 step (keeping
    # unterminated lines) is `c4_clean: {filter_no_terminal_punct: false}` after gopher_quality (docs/filters.md)
    "fineweb": ["gopher_repetition", "gopher_quality", "fineweb_quality"],
}


def known_steps() -> list[str]:
    """Every name a filter chain may contain."""
    return sorted({*DOC_FILTERS, *CORPUS_STAGES, *CHAINS})


def load_factory(target: str) -> Any:
    """Import ``"module:attr"`` and return the attribute."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@cache
def params_model(name: str) -> type[BaseModel]:
    """The parameter model of a registered step (a document filter or a corpus stage)."""
    if name not in PARAMS:
        raise KeyError(f"{name!r} is not a filter or corpus stage; known: {', '.join(sorted(PARAMS))}")
    return load_factory(PARAMS[name])


def accepted(name: str, user: bool = False) -> list[str]:
    """The parameters a step takes (for a chain: any member's); ``user``: those a spec may set."""
    if name in CHAINS:
        return sorted({key for member in CHAINS[name] for key in accepted(member, user)})
    model = params_model(name)
    return user_fields(model) if user else list(model.model_fields)


def route(chain: str, params: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A chain's members with the parameters each takes: a key given to a chain goes to every member taking it."""
    unknown = sorted(set(params) - set(accepted(chain)))
    if unknown:
        raise ParamError(f"{chain}: unknown parameter(s) {', '.join(unknown)}; no step of the chain takes them "
                         f"(known: {', '.join(accepted(chain))})")
    out: list[tuple[str, dict[str, Any]]] = []
    for member in CHAINS[chain]:
        keys = set(accepted(member))
        sub = {k: v for k, v in params.items() if k in keys}
        out.extend(route(member, sub) if member in CHAINS else [(member, sub)])
    return out


def expand(steps: list[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Replace chain names by their members (params given to a chain name go to the members that take them)."""
    out: list[tuple[str, dict[str, Any]]] = []
    for name, params in steps:
        if name in CHAINS:
            out.extend(route(name, params))
        elif name in DOC_FILTERS or name in CORPUS_STAGES:
            out.append((name, dict(params)))
        else:
            raise KeyError(f"unknown filter {name!r}; known: {', '.join(known_steps())}")
    return out


def step_problems(name: str, params: Mapping[str, Any], user: bool = True) -> list[InitErrorDetails]:
    """What is wrong with a step's parameters, as pydantic line errors located at ``(name, key, ...)``.

    For a chain, a key no member takes is an ``unknown_parameter`` error, and each key is checked against
    every member that takes it. ``user``: the params come from a spec file (internal parameters are errors).
    """
    if name not in CHAINS:
        return [{**e, "loc": (name, *e["loc"])} for e in problems(params_model(name), params, name, user=user)]
    out: list[InitErrorDetails] = []
    known = accepted(name, user)
    for key in params:
        if key not in known:
            out.append({"type": PydanticCustomError(
                "unknown_parameter", "unknown parameter; no step of chain {chain} takes it (known: {known})",
                {"chain": name, "known": ", ".join(known)}), "loc": (name, key), "input": params[key]})
    seen: set[tuple[Any, ...]] = set()
    for member in CHAINS[name]:
        sub = {k: v for k, v in params.items() if k in known and k in accepted(member, user)}
        for e in step_problems(member, sub, user):
            loc = (name, *e["loc"][1:])  # report at the chain's key; the same problem once, not per member
            if (loc, repr(e["type"])) not in seen:
                seen.add((loc, repr(e["type"])))
                out.append({**e, "loc": loc})
    return out


def build_filter(name: str, params: Mapping[str, Any] | None = None) -> Filter:
    """Construct the document-level filter ``name`` from its validated params (a bad one: :class:`ParamError`)."""
    if name not in DOC_FILTERS:
        raise KeyError(f"{name!r} is not a document-level filter; known: {', '.join(sorted(DOC_FILTERS))}")
    return load_factory(DOC_FILTERS[name])(**given(check(params_model(name), params, name)))


# ---------------------------------------------------------------------------------------------- docs

def _cell(value: Any) -> str:
    """A default value as YAML would write it (compactly)."""
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, (tuple, list, frozenset, set)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return "[" + ", ".join(_cell(v) for v in items) + "]"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, BaseModel):
        return "{" + ", ".join(f"{k}: {_cell(v)}" for k, v in value.model_dump().items()) + "}"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:_}"
    return str(value)


def _type_name(tp: Any) -> str:
    """A readable type: ``int | none``, ``list of str``, ``drop | tag``, ``mapping str -> str``."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is type(None):
        return "none"
    if origin in (Union, types.UnionType):
        parts = [_type_name(a) for a in args if a is not type(None)]
        return " | ".join(parts + (["none"] if type(None) in args else []))
    if origin is Literal:
        return " | ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"mapping {_type_name(args[0])} -> {_type_name(args[1])}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "mapping"
    return {str: "string", int: "int", float: "number", bool: "bool"}.get(tp, getattr(tp, "__name__", str(tp)))


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def params_reference() -> str:
    """Markdown: one table per registered step (name, type, default, meaning), generated from :data:`PARAMS`."""
    out: list[str] = []
    for name in sorted(PARAMS):
        model = params_model(name)
        kind = "document filter" if name in DOC_FILTERS else "corpus stage"
        doc = (model.__doc__ or "").strip().replace("``", "`")
        out += [f"### `{name}`", "", f"{kind}: {doc}", "",
                "| param | type | default | meaning |", "|---|---|---|---|"]
        for key, info in model.model_fields.items():
            default = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
            meaning = _escape(info.description or "")
            if is_internal(info):
                meaning = f"*set by the run; not allowed in a spec:* {meaning}"
            out.append(f"| `{key}` | {_escape(_type_name(info.annotation))} | {_escape(_cell(default))} | {meaning} |")
        out.append("")
    return "\n".join(out)


DOCS_BEGIN = "<!-- params:begin (generated from the models: python -m filters.registry docs/spec.md) -->"
DOCS_END = "<!-- params:end -->"


def write_reference(path: str) -> bool:
    """Replace the generated section of a markdown file by :func:`params_reference`; True if it changed."""
    from pathlib import Path

    text = Path(path).read_text(encoding="utf-8")
    head, _, rest = text.partition(DOCS_BEGIN)
    _, _, tail = rest.partition(DOCS_END)
    new = f"{head}{DOCS_BEGIN}\n\n{params_reference()}\n{DOCS_END}{tail}"
    if new != text:
        Path(path).write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    for target in sys.argv[1:]:
        print(f"{target}: {'updated' if write_reference(target) else 'up to date'}")

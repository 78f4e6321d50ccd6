"""Language identification as a filter and a tagger: every document gets ``lang`` and ``lang_score``.

Backends:
- ``fasttext``: a fastText language-ID model, by default Facebook's compressed ``lid.176.ftz`` (176 languages,
  CC-BY-SA-3.0) from the local cache (``mixlab models fetch-lid``); ``model:`` may point at ``lid.176.bin`` or
  GlotLID's ``model.bin`` instead (labels are then GlotLID's, e.g. ``eng_Latn``).
- ``cld2``: Google's Compact Language Detector 2 (``pycld2``, model compiled in); very fast, ``lang_score`` is
  the share of the text's bytes in the top language.

``per_paragraph`` identifies each line separately (Dolma/mC4-style): lines in other languages are removed as a
line-level edit and the document's ``lang`` is the language covering most characters.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import Field

from filters.base import Document, Verdict, drop
from filters.params import check, given, params_model

LID_ENV = "MIXLAB_LID_MODEL"
UNDETERMINED = "und"
# pycld2 still uses some withdrawn ISO 639-1 codes; map them to the ones lid.176 and the corpora use.
CLD2_CODES = {"iw": "he", "jw": "jv", "in": "id", "zh-Hant": "zh", "mo": "ro", "un": UNDETERMINED}
_INVALID_FOR_CLD2 = re.compile(r"[\ud800-\udfff\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def default_lid_model() -> Path:
    """$MIXLAB_LID_MODEL, else ``$XDG_CACHE_HOME/mixlab/lid.176.ftz`` (``~/.cache`` by default)."""
    if os.environ.get(LID_ENV):
        return Path(os.environ[LID_ENV]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "mixlab" / "lid.176.ftz"


class ModelError(ValueError):
    """A model file is missing or is not what a filter needs."""


def load_fasttext(path: str | Path, what: str) -> Any:
    """Load a fastText model with a clear error for a missing or unreadable file."""
    import fasttext

    fasttext.FastText.eprint = lambda *_: None  # silence the "load_model does not return" notice
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{what}: model file {path} does not exist")
    try:
        return fasttext.load_model(str(path))
    except ValueError as err:
        raise ModelError(f"{what}: {path} is not a fastText model ({err})") from None


def predict_lines(model: Any, lines: list[str], k: int) -> tuple[list[Any], list[Any]]:
    """fastText batch predict; lines with text fastText cannot encode (lone surrogates) are repaired first."""
    try:
        return model.predict(lines, k=k)
    except (UnicodeEncodeError, TypeError):  # pybind rejects lists holding unencodable str
        return model.predict([line.encode("utf-8", "replace").decode("utf-8") for line in lines], k=k)


class Backend(Protocol):
    """A language identifier: ``predict(texts) -> [(lang, score)]`` in input order."""

    def predict(self, texts: Sequence[str]) -> list[tuple[str, float]]: ...


class FastTextLID:
    """A fastText language-ID model (lid.176.ftz / lid.176.bin / GlotLID)."""

    def __init__(self, model: str | Path | None = None) -> None:
        path = Path(model) if model else default_lid_model()
        hint = "" if model else f" (run `mixlab models fetch-lid`, or set ${LID_ENV})"
        if not path.is_file():
            raise ModelError(f"langid: fastText language-ID model {path} does not exist{hint}")
        self.model = load_fasttext(path, "langid")
        if not any(label.startswith("__label__") for label in self.model.get_labels()[:5]):
            raise ModelError(f"langid: {path} has no __label__ labels; it is not a supervised fastText model")

    def predict(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        lines = [" ".join(t.split()) for t in texts]
        labels, probs = predict_lines(self.model, lines, k=1)
        return [(lab[0].removeprefix("__label__"), min(float(p[0]), 1.0)) if line else (UNDETERMINED, 0.0)
                for line, lab, p in zip(lines, labels, probs, strict=True)]


class Cld2LID:
    """pycld2; text is cleaned of characters CLD2 rejects (surrogates, control characters) first."""

    def __init__(self) -> None:
        import pycld2

        self.cld2 = pycld2

    def _one(self, text: str) -> tuple[str, float]:
        try:
            _, _, details = self.cld2.detect(_INVALID_FOR_CLD2.sub(" ", text))
        except self.cld2.error:
            return UNDETERMINED, 0.0
        _, code, percent, _ = details[0]
        code = CLD2_CODES.get(code, code)
        return code, (percent / 100.0 if code != UNDETERMINED else 0.0)

    def predict(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        return [self._one(t) for t in texts]


def make_backend(backend: str, model: str | None = None) -> Backend:
    """Build a backend by name (``fasttext`` or ``cld2``)."""
    if backend == "fasttext":
        return FastTextLID(model)
    if backend == "cld2":
        if model:
            raise ValueError("langid: backend cld2 has its model compiled in; do not pass `model`")
        return Cld2LID()
    raise ValueError(f"langid: unknown backend {backend!r}; expected 'fasttext' or 'cld2'")


@dataclass
class LangIdFilter:
    """Tag lang/lang_score; drop documents outside ``langs`` or below ``min_score`` unless ``tag_only``."""

    backend: Annotated[Literal["fasttext", "cld2"], Field(description=(
        "`fasttext` (lid.176 or any fastText LID model) or `cld2` (pycld2, model compiled in)"))] = "fasttext"
    model: Annotated[str | None, Field(description=(
        "fastText model file; default `$MIXLAB_LID_MODEL`, else the cache (`mixlab models fetch-lid`)"))] = None
    langs: Annotated[list[str] | str, Field(description=(
        "languages to keep; `[]` keeps any language (then only `min_score` applies)"))] = field(
        default_factory=lambda: ["en"])
    min_score: Annotated[float, Field(ge=0, le=1, description=(
        "below it: `langid.low_score` (FineWeb's default)"))] = 0.65
    per_paragraph: Annotated[bool, Field(description=(
        "identify each line; lines outside `langs` or below `min_score` are removed (`langid.paragraph_language`)"
    ))] = False
    tag_only: Annotated[bool, Field(description="tag `lang`/`lang_score`, never drop")] = False
    max_chars: Annotated[int | None, Field(gt=0, description=(
        "identify from the first N characters only (faster on long documents)"))] = None
    name: str = "langid"

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"langid: min_score must be in [0, 1], got {self.min_score}")
        if self.max_chars is not None and self.max_chars <= 0:
            raise ValueError(f"langid: max_chars must be positive, got {self.max_chars}")
        self.detector = make_backend(self.backend, self.model)
        self.wanted = {self.langs} if isinstance(self.langs, str) else set(self.langs)

    def _accepts(self, lang: str, score: float) -> bool:
        return (not self.wanted or lang in self.wanted) and score >= self.min_score

    def __call__(self, doc: Document) -> Verdict:
        if self.per_paragraph:
            return self._paragraphs(doc)
        lang, score = self.detector.predict([doc.text[:self.max_chars] if self.max_chars else doc.text])[0]
        tags = {"lang": lang, "lang_score": round(score, 4)}
        if self.tag_only or self._accepts(lang, score):
            return Verdict(True, tags=tags)
        if self.wanted and lang not in self.wanted:
            return drop("langid.wrong_language", **tags)
        return drop("langid.low_score", **tags)

    def _paragraphs(self, doc: Document) -> Verdict:
        lines = [line for line in doc.text.split("\n") if line.strip()]
        preds = self.detector.predict(lines)
        if self.tag_only:
            return Verdict(True, tags=_majority(lines, preds))
        kept = [(line, pred) for line, pred in zip(lines, preds, strict=True) if self._accepts(*pred)]
        if not kept:
            return drop("langid.no_paragraph_in_language", **_majority(lines, preds))
        tags = _majority([line for line, _ in kept], [pred for _, pred in kept])
        removed = sum(map(len, lines)) - sum(len(line) for line, _ in kept)
        if not removed:
            return Verdict(True, tags=tags)
        text = "\n".join(line for line, _ in kept)
        return Verdict(True, text=text, edits={"langid.paragraph_language": removed}, tags=tags)


def _majority(lines: Sequence[str], preds: Sequence[tuple[str, float]]) -> dict[str, object]:
    """The language covering most characters, and its character-weighted mean score."""
    chars: dict[str, int] = {}
    weighted: dict[str, float] = {}
    for line, (lang, score) in zip(lines, preds, strict=True):
        chars[lang] = chars.get(lang, 0) + len(line)
        weighted[lang] = weighted.get(lang, 0.0) + score * len(line)
    if not chars:
        return {"lang": UNDETERMINED, "lang_score": 0.0}
    top = max(sorted(chars), key=chars.__getitem__)
    return {"lang": top, "lang_score": round(weighted[top] / chars[top], 4)}


LangIdParams = params_model(LangIdFilter, "LangIdParams")


def langid(**params: Any) -> LangIdFilter:
    """Registry factory for ``langid``: parameters checked against :data:`LangIdParams` (unknown ones named)."""
    return LangIdFilter(**given(check(LangIdParams, params, "langid")))

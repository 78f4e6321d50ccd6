"""The mC4 page rules exactly as TFDS (``c4_utils.paragraph_filter`` and ``detect_languages``).

mC4 runs none of C4's line heuristics: only the paragraph filter, URL and line dedup, cld3 language ID
and soft bad-words filtering (see :mod:`filters.badwords`).
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field

from filters.base import KEEP, Document, Verdict, drop
from filters.params import params_model

# A page needs at least this many lines ("paragraphs") ...
MIN_PARAGRAPHS = 3
# ... and its ``LONG_PARAGRAPHS`` longest lines must each have at least this many characters. TFDS hard-codes
# the 3 (``heapq.nlargest(3, ...)``) whatever ``min_paragraphs`` is; see docs/c4.md.
MIN_PARAGRAPH_LEN = 200
LONG_PARAGRAPHS = 3
# cld3 must be this sure, else the page is labelled "und" (and kept).
CLD3_MIN_PROBABILITY = 0.95
# cld3 reads at most this many UTF-8 bytes and calls shorter pages unreliable ("und").
CLD3_MIN_BYTES = 100
CLD3_MAX_BYTES = 10_000
# The language TFDS gives a page cld3 cannot label reliably.
UNKNOWN_LANGUAGE = "und"
# mC4's 101 languages (TFDS ``c4.py MC4_LANGUAGES``); a reliable label outside this list drops the page.
MC4_LANGUAGES = (
    "af", "am", "ar", "az", "be", "bg", "bg-Latn", "bn", "ca", "ceb", "co", "cs", "cy", "da", "de", "el",
    "el-Latn", "en", "eo", "es", "et", "eu", "fa", "fi", "fil", "fr", "fy", "ga", "gd", "gl", "gu", "ha",
    "haw", "hi", "hi-Latn", "hmn", "ht", "hu", "hy", "id", "ig", "is", "it", "iw", "ja", "ja-Latn", "jv",
    "ka", "kk", "km", "kn", "ko", "ku", "ky", "la", "lb", "lo", "lt", "lv", "mg", "mi", "mk", "ml", "mn",
    "mr", "ms", "mt", "my", "ne", "nl", "no", "ny", "pa", "pl", "ps", "pt", "ro", "ru", "ru-Latn", "sd",
    "si", "sk", "sl", "sm", "sn", "so", "sq", "sr", "st", "su", "sv", "sw", "ta", "te", "tg", "th", "tr",
    "uk", "ur", "uz", "vi", "xh", "yi", "yo", "zh", "zh-Latn", "zu",
)


@dataclass(slots=True)
class ParagraphFilter:
    """TFDS ``paragraph_filter``: >= ``min_paragraphs`` lines, the 3 longest each >= ``min_paragraph_len``.

    ``long_paragraphs`` (not in TFDS, default its fixed 3) is how many of the longest lines must reach
    ``min_paragraph_len``; set it to ``min_paragraphs`` for "that many lines, all long".
    """

    min_paragraphs: Annotated[int, Field(ge=1, description=(
        "a page needs this many lines (`mc4.too_few_paragraphs`)"))] = MIN_PARAGRAPHS
    min_paragraph_len: Annotated[int, Field(ge=0, description=(
        "... and its `long_paragraphs` longest lines this many characters (`mc4.short_paragraphs`)"
    ))] = MIN_PARAGRAPH_LEN
    long_paragraphs: Annotated[int, Field(ge=1, description=(
        "how many of the longest lines must reach `min_paragraph_len` (TFDS: always 3; not a TFDS setting)"
    ))] = LONG_PARAGRAPHS
    name: str = field(default="mc4_paragraph", init=False)

    def __post_init__(self) -> None:
        if self.min_paragraphs < 1:
            raise ValueError(f"mc4_paragraph: min_paragraphs must be >= 1, got {self.min_paragraphs}")
        if self.long_paragraphs < 1:
            raise ValueError(f"mc4_paragraph: long_paragraphs must be >= 1, got {self.long_paragraphs}")

    def __call__(self, doc: Document) -> Verdict:
        lengths = [len(line) for line in doc.text.split("\n")]
        if len(lengths) < self.min_paragraphs:
            return drop("mc4.too_few_paragraphs")
        if min(heapq.nlargest(self.long_paragraphs, lengths)) < self.min_paragraph_len:
            return drop("mc4.short_paragraphs")
        return KEEP


_cld3_lock = threading.Lock()


@dataclass(slots=True)
class Cld3LanguageId:
    """TFDS mC4 language ID with cld3; tags ``meta["lang"]``/``["lang_score"]``, unsure pages become "und".

    ``langs``: the languages to keep (default: mC4's 101); ``"all"`` keeps every cld3 label.
    """

    langs: Annotated[Iterable[str] | str | None, Field(description=(
        "languages to keep (`mc4.ignored_language`); default: mC4's 101; `all`: every cld3 label"))] = None
    min_probability: Annotated[float, Field(ge=0, le=1, description=(
        "a less sure (or unreliable) label becomes `und`"))] = CLD3_MIN_PROBABILITY
    min_num_bytes: Annotated[int, Field(ge=0, description="cld3 calls shorter pages unreliable")] = CLD3_MIN_BYTES
    max_num_bytes: Annotated[int, Field(ge=1, description="cld3 reads at most this many UTF-8 bytes")] = CLD3_MAX_BYTES
    keep_unknown: Annotated[bool, Field(description="keep `und` pages (false: drop as `mc4.unknown_language`)")] = True
    name: str = field(default="mc4_langid", init=False)
    _valid: frozenset[str] | None = field(default=None, init=False, repr=False)
    _detector: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.langs == "all":
            self._valid = None
        elif isinstance(self.langs, str):
            self._valid = frozenset([self.langs])
        else:
            self._valid = frozenset(MC4_LANGUAGES if self.langs is None else self.langs)

    def detector(self) -> Any:
        """The cld3 identifier, built on first use (it is not picklable)."""
        if self._detector is None:
            import gcld3

            self._detector = gcld3.NNetLanguageIdentifier(
                min_num_bytes=self.min_num_bytes, max_num_bytes=self.max_num_bytes)
        return self._detector

    def __call__(self, doc: Document) -> Verdict:
        with _cld3_lock:
            result = self.detector().FindLanguage(doc.text)
        score = float(result.probability)
        if not result.is_reliable or score < self.min_probability:
            tags = {"lang": UNKNOWN_LANGUAGE, "lang_score": score}
            return Verdict(True, tags=tags) if self.keep_unknown else drop("mc4.unknown_language", **tags)
        tags = {"lang": result.language, "lang_score": score}
        if self._valid is not None and result.language not in self._valid:
            return drop("mc4.ignored_language", **tags)
        return Verdict(True, tags=tags)


ParagraphParams = params_model(ParagraphFilter, "ParagraphParams")
Cld3LanguageIdParams = params_model(Cld3LanguageId, "Cld3LanguageIdParams")

"""The C4 page rules exactly as the TFDS code that built C4 (``tensorflow_datasets/text/c4_utils.py``).

The code, not the paper: 3 sentences per page and 5 words per line (the paper says 5 and 3), lines are
deduplicated (not three-sentence spans), ``...`` counts as no end mark. Each rule is a short named
function; :class:`C4Cleaner` runs them in TFDS order. Reasons and edit keys are named after the TFDS
Beam counters. See ``docs/c4.md`` for the rule list, the constants and the conformance figures.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import Annotated, Any

from pydantic import Field

from filters.base import KEEP, Document, Verdict, drop
from filters.params import StrictModel, params_model

# A line keeps only if it has at least this many whitespace-separated words (paper: 3; code: 5).
MIN_WORDS_PER_LINE = 5
# A page keeps only if its kept lines hold at least this many punkt sentences (paper: 5; code: 3).
MIN_NUM_SENTENCES = 3
# A line holding a whitespace token longer than this many characters is dropped.
MAX_WORD_LENGTH = 1000
# A kept line must end with one of these ...
END_MARKS = (".", "?", "!", '"')
# ... but not with an ellipsis, which counts as no end mark.
ELLIPSIS = "..."
# A (lower-cased) line containing one of these is dropped as boilerplate.
POLICY_SUBSTRINGS = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
# Wikipedia-style citation markers, stripped from every line before the end-mark test.
CITATION_REGEX = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
# Pages longer than this many characters are dropped before anything else (TFDS ``is_valid_length``: 1.9e5).
MAX_PAGE_LENGTH = 190_000
# English C4 keeps a page only when langdetect's best guess is ``en`` with at least this probability.
LANGDETECT_MIN_PROBABILITY = 0.99
# The sentence splitter TFDS loads (NLTK >= 3.8.2 serves it from ``tokenizers/punkt_tab/english/``).
PUNKT_RESOURCE = "nltk:tokenizers/punkt/english.pickle"
# URL dedup keeps the page with the newest ``meta[DATE_KEY]`` (Common Crawl's WARC date).
DATE_KEY = "warc_date"

_URL_SCHEME = re.compile(r"https?:\/\/(www\.)?")
_URL_TRACKING = re.compile(r"\?(utm_|ref|feed).*")

_punkt: Any = None
_punkt_lock = threading.Lock()


def sentence_tokenizer() -> Any:
    """The English punkt tokenizer, loaded once (``NLTK_DATA`` or NLTK's default paths)."""
    global _punkt
    if _punkt is None:
        with _punkt_lock:
            if _punkt is None:
                import nltk

                try:
                    _punkt = nltk.data.load(PUNKT_RESOURCE)
                except LookupError as err:
                    where = os.environ.get("NLTK_DATA") or ", ".join(nltk.data.path)
                    raise RuntimeError(
                        f"NLTK punkt data not found (looked in {where}); install it with "
                        "`python -m nltk.downloader punkt punkt_tab` or set NLTK_DATA to a directory "
                        "holding tokenizers/punkt_tab/english/") from err
    return _punkt


def count_sentences(text: str, at_most: int | None = None) -> int:
    """Number of punkt sentences in ``text`` (stops counting at ``at_most`` when given)."""
    spans = sentence_tokenizer().span_tokenize(text)
    return sum(1 for _ in (spans if at_most is None else islice(spans, at_most)))


def normalize_url(url: str) -> str:
    """TFDS ``normalize_url``: drop every ``http(s)://(www.)``, a ``?utm_/ref/feed`` query, trailing ``/``."""
    return _URL_TRACKING.sub("", _URL_SCHEME.sub("", url)).rstrip("/")


def url_hash(doc: Document) -> str:
    """md5 hex of the document's URL (its id when it has none): the order TFDS uses to pick among pages."""
    return hashlib.md5((doc.url if doc.url else doc.id).encode("utf-8")).hexdigest()


def has_too_long_word(line: str, max_word_length: int = MAX_WORD_LENGTH) -> bool:
    """True when a whitespace token of the line is longer than ``max_word_length``."""
    return len(line) > max_word_length and any(len(w) > max_word_length for w in line.split())


def strip_citations(line: str) -> str:
    """Remove ``[1]``, ``[]``, ``[edit]`` and ``[citation needed]`` markers."""
    return CITATION_REGEX.sub("", line) if "[" in line else line


def lacks_end_mark(line: str) -> bool:
    """True when the line does not end in ``. ? ! "`` or ends in ``...``."""
    return not line.endswith(END_MARKS) or line.endswith(ELLIPSIS)


def is_too_short(line: str, min_words: int = MIN_WORDS_PER_LINE) -> bool:
    """True when the line has fewer than ``min_words`` whitespace-separated words."""
    return len(line.split()) < min_words


def has_lorem_ipsum(line_lower: str) -> bool:
    """Placeholder text: drops the whole page."""
    return "lorem ipsum" in line_lower


def mentions_javascript(line_lower: str) -> bool:
    """"Please enable JavaScript" notices: drops the line."""
    return "javascript" in line_lower


def has_curly_bracket(line: str) -> bool:
    """Probably code: drops the whole page."""
    return "{" in line


def is_policy_line(line_lower: str) -> bool:
    """Cookie, privacy and terms-of-use boilerplate: drops the line."""
    return any(p in line_lower for p in POLICY_SUBSTRINGS)


def _add(edits: dict[str, int], reason: str, chars: int) -> None:
    edits[reason] = edits.get(reason, 0) + chars


def _edits(rare: dict[str, int], no_endmark: int, too_short: int, citation: int) -> dict[str, int]:
    for reason, chars in (("c4.no_endmark", no_endmark), ("c4.too_short", too_short), ("c4.citation", citation)):
        if chars:
            rare[reason] = chars
    return rare


@dataclass(slots=True)
class C4Cleaner:
    """TFDS ``clean_page``: line rules in TFDS order, then >= ``min_num_sentences`` punkt sentences."""

    min_words_per_line: Annotated[int, Field(ge=0, description="a line with fewer whitespace words is removed "
                                                               "(`c4.too_short`)")] = MIN_WORDS_PER_LINE
    min_num_sentences: Annotated[int, Field(ge=0, description="a page whose kept lines hold fewer punkt sentences "
                                                              "drops (`c4.too_few_sentences`)")] = MIN_NUM_SENTENCES
    max_word_length: Annotated[int, Field(ge=1, description="a line with a longer whitespace token is removed "
                                                            "(`c4.too_long_word`)")] = MAX_WORD_LENGTH
    name: str = field(default="c4_clean", init=False)

    # Switches for ablations (datatrove C4QualityFilter's names); the defaults are TFDS's, so decisions are identical.
    remove_citations: Annotated[bool, Field(description="strip `[1]`, `[edit]`, `[citation needed]` "
                                                        "(`c4.citation`)")] = True
    filter_no_terminal_punct: Annotated[bool, Field(description="remove lines without a terminal punctuation mark "
                                                                "(`c4.no_endmark`)")] = True
    filter_lorem_ipsum: Annotated[bool, Field(description="drop pages containing \"lorem ipsum\" "
                                                          "(`c4.lorem_ipsum`)")] = True
    filter_javascript: Annotated[bool, Field(description="remove lines mentioning javascript "
                                                         "(`c4.javascript`)")] = True
    filter_curly_bracket: Annotated[bool, Field(description="drop pages containing a `{` "
                                                            "(`c4.curly_bracket`)")] = True
    filter_policy: Annotated[bool, Field(description="remove cookie / privacy / terms-of-use lines "
                                                     "(`c4.policy`)")] = True

    def __call__(self, doc: Document) -> Verdict:
        kept, page_reason, edits = self.clean_lines(doc.text.splitlines())
        if page_reason is not None:
            return Verdict(False, reason=page_reason, edits=edits)
        if not self.enough_sentences(kept):
            return Verdict(False, reason="c4.too_few_sentences", edits=edits)
        text = "\n".join(kept).strip()
        return Verdict(True, text=None if text == doc.text else text, edits=edits)

    def clean_lines(self, lines: Iterable[str]) -> tuple[list[str], str | None, dict[str, int]]:
        """Apply the line rules: (kept lines, page drop reason or None, chars removed per line reason)."""
        kept: list[str] = []
        rare: dict[str, int] = {}
        no_endmark = too_short = citation = 0  # the common line drops, counted in locals for speed
        max_word, min_words = self.max_word_length, self.min_words_per_line
        citations, end_mark, lorem = self.remove_citations, self.filter_no_terminal_punct, self.filter_lorem_ipsum
        javascript, curly, policy = self.filter_javascript, self.filter_curly_bracket, self.filter_policy
        for raw in lines:
            line = raw.strip()
            if len(line) > max_word and has_too_long_word(line, max_word):
                _add(rare, "c4.too_long_word", len(line))
                continue
            if citations and "[" in line:
                stripped = strip_citations(line)
                citation += len(line) - len(stripped)
                line = stripped
            if end_mark and lacks_end_mark(line):
                no_endmark += len(line)
                continue
            if is_too_short(line, min_words):
                too_short += len(line)
                continue
            lower = line.lower()
            if lorem and has_lorem_ipsum(lower):
                return kept, "c4.lorem_ipsum", _edits(rare, no_endmark, too_short, citation)
            if javascript and mentions_javascript(lower):
                _add(rare, "c4.javascript", len(line))
                continue
            if curly and has_curly_bracket(line):
                return kept, "c4.curly_bracket", _edits(rare, no_endmark, too_short, citation)
            if policy and is_policy_line(lower):
                _add(rare, "c4.policy", len(line))
                continue
            kept.append(line)
        return kept, None, _edits(rare, no_endmark, too_short, citation)

    def enough_sentences(self, kept: list[str]) -> bool:
        """TFDS sums punkt sentences per kept line; every kept line holds at least one, so count lazily."""
        need = self.min_num_sentences
        if len(kept) >= need:
            return True
        total = 0
        for line in kept:
            total += count_sentences(line, at_most=need - total)
            if total >= need:
                return True
        return False


@dataclass(slots=True)
class C4Length:
    """TFDS ``is_valid_length``: drop pages longer than ``max_length`` characters."""

    max_length: Annotated[int, Field(ge=0, description="longer pages drop (`c4.too_long_page`)")] = MAX_PAGE_LENGTH
    name: str = field(default="c4_length", init=False)

    def __call__(self, doc: Document) -> Verdict:
        return drop("c4.too_long_page") if len(doc.text) > self.max_length else KEEP


_langdetect_lock = threading.Lock()


@dataclass(slots=True)
class C4EnglishLangdetect:
    """TFDS ``detect_english``: langdetect (seed 0) must say ``en`` with p >= ``min_probability``."""

    min_probability: Annotated[float, Field(ge=0, le=1, description=(
        "langdetect's best guess needs at least this probability (`c4.low_confidence`)"))] = LANGDETECT_MIN_PROBABILITY
    language: Annotated[str, Field(description="the language the best guess must be (`c4.ignored_language`)")] = "en"
    name: str = field(default="c4_langdetect", init=False)

    def __call__(self, doc: Document) -> Verdict:
        from langdetect import DetectorFactory
        from langdetect.lang_detect_exception import LangDetectException

        from filters.langdetect_fast import detect_langs  # langdetect's numbers, bit for bit, ~3x faster

        with _langdetect_lock:
            DetectorFactory.seed = 0
            try:
                predictions = detect_langs(doc.text)
            except LangDetectException:
                return drop("c4.langdetect_exception")
        if not predictions:
            return drop("c4.no_predictions")
        best = predictions[0]
        tags = {"lang": best.lang, "lang_score": float(best.prob)}
        if best.prob < self.min_probability:
            return drop("c4.low_confidence", **tags)
        if best.lang != self.language:
            return drop("c4.ignored_language", **tags)
        return Verdict(True, tags=tags)


C4LengthParams = params_model(C4Length, "C4LengthParams")
C4CleanParams = params_model(C4Cleaner, "C4CleanParams")
C4LangdetectParams = params_model(C4EnglishLangdetect, "C4LangdetectParams")


# Parameters of the corpus stages in pipelines/c4_stages.py (Beam transforms; their models live here so a spec is
# checked without importing Beam).

class C4UrlDedupParams(StrictModel):
    """TFDS URL dedup: one page per normalised URL, the newest by ``meta[date_key]``; pages without a URL pass."""

    date_key: str = Field(DATE_KEY, description="meta field holding the page's date (ISO string); the newest "
                                                "page wins, ties and undated pages by smallest id")


class C4LineDedupParams(StrictModel):
    """TFDS ``remove_duplicate_text``: each line survives only in the page with the smallest md5(url)."""

    min_num_sentences: int = Field(MIN_NUM_SENTENCES, ge=0, description="a page left with fewer punkt sentences "
                                                                       "drops (`c4.dedup_too_few_sentences`)")


class Mc4LineDedupParams(C4LineDedupParams):
    """mC4's line dedup: the same, without a sentence minimum."""

    min_num_sentences: int = Field(0, ge=0, description="a page left with fewer punkt sentences drops "
                                                        "(`c4.dedup_too_few_sentences`); 0: only empty pages drop")

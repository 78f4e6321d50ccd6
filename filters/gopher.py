"""Gopher quality and repetition rules (Rae et al. 2021, Table A1), with datatrove's defaults and rule order.

Each rule is a small function returning the name of the failed check or ``None``. The filters run them in
datatrove's order and drop with ``gopher_quality.<check>`` / ``gopher_repetition.<check>``, where ``<check>``
is datatrove's own reason (without its ``gopher_`` prefix). Words come from :func:`filters.text.words`, the
same English split datatrove uses. A threshold set to ``None`` turns its check off.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import compress
from operator import add, itemgetter, mul
from typing import Annotated

from pydantic import Field

from filters.base import KEEP, Document, Verdict, drop
from filters.params import params_model
from filters.text import (
    PUNCTUATION_SET,
    NgramKeys,
    duplicate_ngram_chars,
    duplicate_ngram_chars_keyed,
    find_duplicates,
    repeated_positions,
    words,
)

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
TOP_NGRAMS = ((2, 0.20), (3, 0.18), (4, 0.16))  # (n, max fraction of characters in the most frequent n-gram)
DUP_NGRAMS = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))  # (n, max duplicated fraction)
BULLETS = ("•", "-")
ELLIPSES = ("...", "…")
# From this many words on (up to this many characters, which bounds the hash tables' memory), repeated
# n-grams are found with hashed keys (numpy) rather than Python sets.
KEYED_MIN_TOKENS, KEYED_MAX_CHARS = 400, 1 << 22

_PARAGRAPH_BREAK = re.compile(r"\n{2,}")
_LINE_BREAK = re.compile(r"\n+")


SYMBOL, NO_LETTER, LETTER = 0, 1, 2  # word classes: punctuation only; other, without a letter; with a letter


@lru_cache(maxsize=1 << 17)
def word_class(word: str) -> int:
    """SYMBOL, NO_LETTER or LETTER (no punctuation character is a letter, so the classes do not overlap)."""
    if any(ch.isalpha() for ch in word):
        return LETTER
    return SYMBOL if all(ch in PUNCTUATION_SET for ch in word) else NO_LETTER


# ---- quality checks ----------------------------------------------------------------------------------------

def word_count(n_words: int, lo: int | None, hi: int | None) -> str | None:
    """Too few or too many non-symbol words."""
    if lo is not None and n_words < lo:
        return "short_doc"
    if hi is not None and n_words > hi:
        return "long_doc"
    return None


def mean_word_length(mean: float, lo: float | None, hi: float | None) -> str | None:
    """Mean length of non-symbol words outside [lo, hi]."""
    if lo is not None and mean < lo:
        return "below_avg_threshold"
    if hi is not None and mean > hi:
        return "above_avg_threshold"
    return None


def symbol_ratio(text: str, n_words: int, max_ratio: float | None) -> str | None:
    """Too many ``#`` or ellipses per word."""
    if max_ratio is None:
        return None
    if text.count("#") / n_words > max_ratio:
        return "too_many_hashes"
    if (text.count("...") + text.count("…")) / n_words > max_ratio:
        return "too_many_ellipsis"
    return None


def line_shape(lines: Sequence[str], max_bullets: float | None, max_end_ellipsis: float | None) -> str | None:
    """Too many lines starting with a bullet, or ending with an ellipsis."""
    if max_bullets is not None and sum(s.lstrip().startswith(BULLETS) for s in lines) / len(lines) > max_bullets:
        return "too_many_bullets"
    if max_end_ellipsis is not None and (
            sum(s.rstrip().endswith(ELLIPSES) for s in lines) / len(lines) > max_end_ellipsis):
        return "too_many_end_ellipsis"
    return None


def alpha_ratio(n_letter_words: int, n_words: int, min_ratio: float | None) -> str | None:
    """Too few words containing an alphabetic character."""
    if min_ratio is not None and n_letter_words / n_words < min_ratio:
        return "below_alpha_threshold"
    return None


def stop_words(tokens: Iterable[str], vocabulary: frozenset[str], minimum: int | None) -> str | None:
    """Fewer than ``minimum`` distinct stop words."""
    if minimum is not None and len(vocabulary.intersection(tokens)) < minimum:
        return "enough_stop_words"
    return None


class GopherQuality:
    """Gopher's document quality heuristics (datatrove ``GopherQualityFilter`` defaults and order)."""

    name = "gopher_quality"

    def __init__(
        self,
        min_doc_words: Annotated[int | None, Field(ge=0, description="fewer non-symbol words: `short_doc`")] = 50,
        max_doc_words: Annotated[int | None, Field(ge=0, description="more non-symbol words: `long_doc`")] = 100_000,
        min_avg_word_length: Annotated[float | None, Field(ge=0, description=(
            "shorter mean word length: `below_avg_threshold`"))] = 3,
        max_avg_word_length: Annotated[float | None, Field(ge=0, description=(
            "longer mean word length: `above_avg_threshold`"))] = 10,
        max_symbol_word_ratio: Annotated[float | None, Field(ge=0, description=(
            "more `#` (or `...`, `…`) per word: `too_many_hashes` / `too_many_ellipsis`"))] = 0.1,
        max_bullet_lines_ratio: Annotated[float | None, Field(ge=0, le=1, description=(
            "more lines starting with a bullet: `too_many_bullets`"))] = 0.9,
        max_ellipsis_lines_ratio: Annotated[float | None, Field(ge=0, le=1, description=(
            "more lines ending with an ellipsis: `too_many_end_ellipsis`"))] = 0.3,
        min_alpha_words_ratio: Annotated[float | None, Field(ge=0, le=1, description=(
            "fewer words with a letter: `below_alpha_threshold`"))] = 0.8,
        min_stop_words: Annotated[int | None, Field(ge=0, description=(
            "fewer distinct stop words: `enough_stop_words`"))] = 2,
        stop_words: Annotated[Iterable[str], Field(description="the stop words (case-sensitive)")] = STOP_WORDS,
    ) -> None:
        self.min_doc_words, self.max_doc_words = min_doc_words, max_doc_words
        self.min_avg_word_length, self.max_avg_word_length = min_avg_word_length, max_avg_word_length
        self.max_symbol_word_ratio = max_symbol_word_ratio
        self.max_bullet_lines_ratio, self.max_ellipsis_lines_ratio = max_bullet_lines_ratio, max_ellipsis_lines_ratio
        self.min_alpha_words_ratio, self.min_stop_words = min_alpha_words_ratio, min_stop_words
        self.stop_words = frozenset(stop_words)

    def check(self, text: str) -> str | None:
        """The first failed check, or ``None`` when the text passes."""
        tokens = words(text)
        classes = list(map(word_class, tokens))
        n_content = len(classes) - classes.count(SYMBOL)
        if not n_content:  # no words at all: nothing to measure (datatrove divides by zero here)
            return "short_doc"
        return (word_count(n_content, self.min_doc_words, self.max_doc_words)
                or mean_word_length(sum(map(len, compress(tokens, classes))) / n_content,
                                    self.min_avg_word_length, self.max_avg_word_length)
                or symbol_ratio(text, len(tokens), self.max_symbol_word_ratio)
                or line_shape(text.splitlines(), self.max_bullet_lines_ratio, self.max_ellipsis_lines_ratio)
                or alpha_ratio(classes.count(LETTER), len(tokens), self.min_alpha_words_ratio)
                or stop_words(tokens, self.stop_words, self.min_stop_words))

    def __call__(self, doc: Document) -> Verdict:
        reason = self.check(doc.text)
        return KEEP if reason is None else drop(f"{self.name}.{reason}")


# ---- repetition checks -------------------------------------------------------------------------------------

def duplicate_units(units: Sequence[str], text_len: int, max_frac: float | None, max_char_frac: float | None,
                    kind: str) -> str | None:
    """Too many repeated paragraphs (or lines), by count or by characters."""
    dup_count, dup_chars = find_duplicates(units)
    if max_frac is not None and dup_count / len(units) > max_frac:
        return f"dup_{kind}_frac"
    if max_char_frac is not None and dup_chars / text_len > max_char_frac:
        return f"dup_{kind}_char_frac"
    return None


def top_ngrams(tokens: Sequence[str], text_len: int, limits: Iterable[tuple[int, float]]) -> str | None:
    """The most frequent n-gram covers too many characters (space-joined length times count)."""
    unigrams = Counter(tokens)
    if not unigrams:
        return None
    # An n-gram's occurrences hold, for each of its words, at most that word's own count x length characters,
    # plus n - 1 spaces each: a bound that spares counting n-grams on most documents.
    most_chars = max(map(mul, unigrams.values(), map(len, unigrams)))
    most_count = max(unigrams.values())
    for n, max_frac in limits:
        if (n * most_chars + (n - 1) * most_count) / text_len <= max_frac:
            continue
        counts = Counter(zip(*(tokens[i:] for i in range(n)), strict=False))
        if not counts:
            continue
        gram, count = max(counts.items(), key=itemgetter(1))  # first seen wins ties, as Counter.most_common
        if (sum(map(len, gram)) + n - 1) * count / text_len > max_frac:
            return f"top_{n}_gram"
    return None


def duplicate_ngrams(tokens: Sequence[str], text_len: int, limits: Iterable[tuple[int, float]]) -> str | None:
    """Characters in repeated n-grams (counted once per non-overlapping repeat) exceed the limit."""
    built: dict[int, list[str]] = {1: list(tokens)}
    index = NgramKeys(tokens) if len(tokens) >= KEYED_MIN_TOKENS and text_len <= KEYED_MAX_CHARS else None
    for n, max_frac in limits:
        chars = duplicate_ngram_chars_keyed(index, n, text_len, max_frac) if index is not None else None
        if chars is None:
            chars = _duplicate_chars(_joined_ngrams(built, n), n, text_len, max_frac)
        if chars / text_len > max_frac:
            return f"duplicated_{n}_n_grams"
    return None


def _duplicate_chars(grams: list[str], n: int, text_len: int, max_frac: float) -> int:
    repeats = repeated_positions(grams)
    bound = sum(map(len, map(grams.__getitem__, repeats)))
    if bound / text_len <= max_frac:
        return bound  # even counting every repeated position stays within the limit
    return duplicate_ngram_chars(grams, n, repeats)


def _joined_ngrams(built: dict[int, list[str]], n: int) -> list[str]:
    """Word n-grams joined without spaces, extending the longest already built by one word at a time."""
    have = max(k for k in built if k <= n)
    grams, tokens = built[have], built[1]
    for size in range(have + 1, n + 1):
        grams = list(map(add, grams, tokens[size - 1:]))
        built[size] = grams
    return grams


class GopherRepetition:
    """Gopher's repetition heuristics (datatrove ``GopherRepetitionFilter`` defaults and order)."""

    name = "gopher_repetition"

    def __init__(
        self,
        dup_line_frac: Annotated[float | None, Field(ge=0, le=1, description=(
            "more lines equal to an earlier one: `dup_line_frac`"))] = 0.3,
        dup_para_frac: Annotated[float | None, Field(ge=0, le=1, description=(
            "more paragraphs equal to an earlier one: `dup_para_frac`"))] = 0.3,
        dup_line_char_frac: Annotated[float | None, Field(ge=0, le=1, description=(
            "more characters in repeated lines: `dup_line_char_frac`"))] = 0.2,
        dup_para_char_frac: Annotated[float | None, Field(ge=0, le=1, description=(
            "more characters in repeated paragraphs: `dup_para_char_frac`"))] = 0.2,
        top_n_grams: Annotated[Iterable[Sequence[float]], Field(description=(
            "`[n, fraction]` pairs: the most frequent word n-gram may cover at most the fraction of characters "
            "(`top_{n}_gram`)"))] = TOP_NGRAMS,
        dup_n_grams: Annotated[Iterable[Sequence[float]], Field(description=(
            "`[n, fraction]` pairs: repeated n-grams may cover at most the fraction (`duplicated_{n}_n_grams`)"
        ))] = DUP_NGRAMS,
    ) -> None:
        self.dup_line_frac, self.dup_para_frac = dup_line_frac, dup_para_frac
        self.dup_line_char_frac, self.dup_para_char_frac = dup_line_char_frac, dup_para_char_frac
        self.top_n_grams = [(int(n), float(f)) for n, f in top_n_grams]
        self.dup_n_grams = [(int(n), float(f)) for n, f in dup_n_grams]

    def check(self, text: str) -> str | None:
        """The first failed check, or ``None`` when the text passes."""
        if not text:
            return "empty"
        size = len(text)
        reason = (duplicate_units(_PARAGRAPH_BREAK.split(text.strip()), size, self.dup_para_frac,
                                  self.dup_para_char_frac, "para")
                  or duplicate_units(_LINE_BREAK.split(text), size, self.dup_line_frac,
                                     self.dup_line_char_frac, "line"))
        if reason:
            return reason
        tokens = words(text)
        return top_ngrams(tokens, size, self.top_n_grams) or duplicate_ngrams(tokens, size, self.dup_n_grams)

    def __call__(self, doc: Document) -> Verdict:
        reason = self.check(doc.text)
        return KEEP if reason is None else drop(f"{self.name}.{reason}")


GopherQualityParams = params_model(GopherQuality, "GopherQualityParams")
GopherRepetitionParams = params_model(GopherRepetition, "GopherRepetitionParams")

"""FineWeb's own quality rules (Penedo et al. 2024), with datatrove's ``FineWebQualityFilter`` defaults and order.

Reasons are ``fineweb_quality.<check>`` with datatrove's check names (``line_punct_ratio``, ``short_line_ratio``,
``char_dup_ratio``, ``list_ratio``, ``empty``). A threshold set to ``None`` turns its check off.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated

from pydantic import Field

from filters.base import KEEP, Document, Verdict, drop
from filters.params import params_model
from filters.text import TERMINAL_PUNCTUATION, find_duplicates, words


def line_punct_ratio(lines: Sequence[str], stop_chars: tuple[str, ...], min_ratio: float | None,
                     exclude_zero: bool) -> str | None:
    """Too few lines end in terminal punctuation (optionally letting pages with none at all through)."""
    if min_ratio is None:
        return None
    ratio = sum(1 for line in lines if line.endswith(stop_chars)) / len(lines)
    if ratio < min_ratio and not (ratio == 0 and exclude_zero):
        return "line_punct_ratio"
    return None


def short_line_ratio(lines: Sequence[str], max_length: int, max_ratio: float | None) -> str | None:
    """Too many lines of at most ``max_length`` characters."""
    if max_ratio is not None and sum(1 for line in lines if len(line) <= max_length) / len(lines) > max_ratio:
        return "short_line_ratio"
    return None


def char_dup_ratio(lines: Sequence[str], text: str, max_ratio: float | None) -> str | None:
    """Too many characters in lines that repeat an earlier line (newlines not counted)."""
    if max_ratio is not None and find_duplicates(lines)[1] / (len(text) - text.count("\n")) > max_ratio:
        return "char_dup_ratio"
    return None


def list_ratio(text: str, max_ratio: float | None) -> str | None:
    """Too many newlines per word: the page is a list."""
    if max_ratio is None:
        return None
    n_words, newlines = len(words(text)), text.count("\n")
    if (newlines / n_words > max_ratio) if n_words else newlines > 0:
        return "list_ratio"
    return None


class FineWebQuality:
    """FineWeb's line-punctuation, short-line, duplicated-line and list rules."""

    name = "fineweb_quality"

    def __init__(
        self,
        line_punct_thr: Annotated[float | None, Field(ge=0, le=1, description=(
            "fewer lines ending in terminal punctuation: `line_punct_ratio`"))] = 0.12,
        line_punct_exclude_zero: Annotated[bool, Field(description=(
            "let pages where no line ends in punctuation pass that check"))] = False,
        stop_chars: Annotated[Iterable[str] | None, Field(description=(
            "the terminal punctuation; default datatrove's `TERMINAL_PUNCTUATION` (159 characters)"))] = None,
        short_line_thr: Annotated[float | None, Field(ge=0, le=1, description=(
            "more lines of at most `short_line_length` characters: `short_line_ratio`"))] = 0.67,
        short_line_length: Annotated[int, Field(ge=0, description="what counts as a short line")] = 30,
        char_duplicates_ratio: Annotated[float | None, Field(ge=0, le=1, description=(
            "more characters in lines equal to an earlier line: `char_dup_ratio`"))] = 0.01,
        new_line_ratio: Annotated[float | None, Field(ge=0, description=(
            "more newlines per word: `list_ratio`"))] = 0.3,
    ) -> None:
        self.line_punct_thr, self.line_punct_exclude_zero = line_punct_thr, line_punct_exclude_zero
        self.stop_chars = tuple(sorted(TERMINAL_PUNCTUATION if stop_chars is None else stop_chars))
        self.short_line_thr, self.short_line_length = short_line_thr, short_line_length
        self.char_duplicates_ratio, self.new_line_ratio = char_duplicates_ratio, new_line_ratio

    def check(self, text: str) -> str | None:
        """The first failed check, or ``None`` when the text passes."""
        lines = [line for line in text.split("\n") if line.strip()]
        if not lines:
            return "empty"
        return (line_punct_ratio(lines, self.stop_chars, self.line_punct_thr, self.line_punct_exclude_zero)
                or short_line_ratio(lines, self.short_line_length, self.short_line_thr)
                or char_dup_ratio(lines, text, self.char_duplicates_ratio)
                or list_ratio(text, self.new_line_ratio))

    def __call__(self, doc: Document) -> Verdict:
        reason = self.check(doc.text)
        return KEEP if reason is None else drop(f"{self.name}.{reason}")


FineWebQualityParams = params_model(FineWebQuality, "FineWebQualityParams")

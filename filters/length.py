"""Page length bounds: the simplest filter, and the one most specs start with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from filters.base import KEEP, Document, Verdict, drop
from filters.params import params_model


@dataclass(frozen=True, slots=True)
class LengthFilter:
    """Drop documents shorter than ``min_chars`` or longer than ``max_chars`` (after stripping)."""

    min_chars: Annotated[int, Field(ge=0, description="drop shorter documents (`length.too_short`)")] = 1
    max_chars: Annotated[int | None, Field(ge=0, description="drop longer documents (`length.too_long`); "
                                                              "none: no upper bound")] = None
    name: str = "length"

    def __post_init__(self) -> None:
        if self.min_chars < 0 or (self.max_chars is not None and self.max_chars < self.min_chars):
            raise ValueError(f"length: need 0 <= min_chars <= max_chars, got {self.min_chars}, {self.max_chars}")

    def __call__(self, doc: Document) -> Verdict:
        n = len(doc.text.strip())
        if n < self.min_chars:
            return drop("length.too_short")
        if self.max_chars is not None and n > self.max_chars:
            return drop("length.too_long")
        return KEEP


LengthParams = params_model(LengthFilter, "LengthParams")

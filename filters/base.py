"""The document model and the contract every filter follows.

A filter is a small callable with a ``name``: it takes a :class:`Document` and returns a :class:`Verdict`
(keep or drop, a reason, and edited text where the rule edits lines). Filters are pure: no Beam, no torch,
no I/O after construction, so each rule can be tested with a three-line example.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable


@dataclass(slots=True)
class Document:
    """One document: ``id`` unique within its source, ``text``, ``source`` name, optional ``url``, free ``meta``."""

    id: str
    text: str
    source: str
    url: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def with_text(self, text: str) -> Document:
        """Copy of this document with new text (meta is shared, not copied)."""
        return replace(self, text=text)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a filter decided.

    ``reason`` names the rule (``"c4.too_few_sentences"``) when the document is dropped. ``text`` is set when
    the rule edited the document. ``edits`` maps a line-level reason to the characters it removed, so the
    funnel can say what line rules cost even when the page survives.
    """

    keep: bool
    reason: str | None = None
    text: str | None = None
    edits: Mapping[str, int] = field(default_factory=dict)
    tags: Mapping[str, Any] = field(default_factory=dict)


KEEP = Verdict(True)


def drop(reason: str, **tags: Any) -> Verdict:
    """A drop verdict with a reason (and optional tags such as a score that explain it)."""
    return Verdict(False, reason=reason, tags=tags)


@runtime_checkable
class Filter(Protocol):
    """A named rule: ``filter(doc) -> Verdict``."""

    name: str

    def __call__(self, doc: Document) -> Verdict: ...


@dataclass(slots=True)
class ChainOutcome:
    """Result of running a chain of filters on one document."""

    doc: Document | None
    reason: str | None
    stage: int | None
    edits: dict[str, int]


def run_chain(doc: Document, chain: Sequence[Filter]) -> ChainOutcome:
    """Apply filters in order; stop at the first drop. Edited text flows into later filters; tags go to meta."""
    edits: dict[str, int] = {}
    for i, rule in enumerate(chain):
        verdict = rule(doc)
        for reason, chars in verdict.edits.items():
            edits[reason] = edits.get(reason, 0) + chars
        if verdict.tags:
            doc.meta.update(verdict.tags)
        if not verdict.keep:
            return ChainOutcome(None, verdict.reason or f"{rule.name}.dropped", i, edits)
        if verdict.text is not None:
            doc = doc.with_text(verdict.text)
    return ChainOutcome(doc, None, None, edits)


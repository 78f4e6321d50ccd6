"""Corpus-level C4/mC4 stages as Beam transforms: newest-page URL dedup and TFDS line dedup.

Both follow the stage contract of :mod:`pipelines.stages` (``{"kept", "removed", "edits"}``); the factories
take the parameter models of :mod:`filters.c4` (``C4UrlDedupParams``, ``C4LineDedupParams``,
``Mc4LineDedupParams``). The plain-Python decisions (which page wins a URL, which lines a page keeps) are small
functions here so they can be tested and reused without a pipeline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

import apache_beam as beam

from filters.base import Document
from filters.c4 import (
    DATE_KEY,
    MIN_NUM_SENTENCES,
    C4LineDedupParams,
    C4UrlDedupParams,
    Mc4LineDedupParams,
    count_sentences,
    normalize_url,
    url_hash,
)
from filters.params import resolve
from pipelines.stages import EDITS, KEPT, REMOVED, split_tagged

NO_URL = "no_url"
PageKey = tuple[str, str]


def page_key(doc: Document) -> PageKey:
    """A page's identity inside a run: (source, id)."""
    return doc.source, doc.id


def line_hash(line: str) -> str:
    """TFDS line key: md5 of the stripped, lower-cased line."""
    return hashlib.md5(line.strip().lower().encode("utf-8")).hexdigest()


def newest_first(pages: Iterable[Document], date_key: str) -> list[Document]:
    """Pages of one URL, the survivor first: newest ``meta[date_key]`` (ISO string), ties by smallest id."""
    by_id = sorted(pages, key=lambda d: (d.id, d.source))
    return sorted(by_id, key=lambda d: str(d.meta.get(date_key) or ""), reverse=True)


def remove_lines(text: str, keep: set[str]) -> tuple[str, dict[str, int]]:
    """TFDS ``_remove_lines_from_text``: keep a line once if the page owns its hash; chars cut by reason."""
    kept: list[str] = []
    seen: set[str] = set()
    edits: dict[str, int] = {}
    for line in text.split("\n"):
        h = line_hash(line)
        if h not in keep:
            reason = "c4.global_duplicate"
        elif h in seen:
            reason = "c4.local_duplicate"
        else:
            kept.append(line)
            seen.add(h)
            continue
        edits[reason] = edits.get(reason, 0) + len(line)
    return "\n".join(kept), edits


def _removed(doc: Document, reason: str, stage: int) -> tuple[str, tuple[Document, str, int]]:
    return REMOVED, (doc, reason, stage)


class _KeyByUrl(beam.DoFn):
    def process(self, doc: Document) -> Iterator[Any]:
        yield ("keyed", (normalize_url(doc.url), doc)) if doc.url else (NO_URL, doc)


class _SelectNewest(beam.DoFn):
    def __init__(self, stage: int, date_key: str) -> None:
        self.stage, self.date_key = stage, date_key

    def process(self, item: tuple[str, Iterable[Document]]) -> Iterator[Any]:
        survivor, *losers = newest_first(item[1], self.date_key)
        yield KEPT, survivor
        for doc in losers:
            meta = {**doc.meta, "dup_survivor_id": survivor.id}
            yield _removed(replace(doc, meta=meta), "c4.duplicate_url", self.stage)


class C4UrlDedup(beam.PTransform):
    """TFDS URL dedup: one page per ``normalize_url(url)``, the newest by ``meta[date_key]``.

    Ties (and pages without a date) go to the smallest id; pages without a URL pass untouched.
    """

    def __init__(self, stage: int, date_key: str = DATE_KEY) -> None:
        super().__init__()
        self.stage, self.date_key = stage, date_key

    def expand(self, docs: beam.PCollection) -> dict[str, beam.PCollection]:
        split = split_tagged(docs | "KeyByUrl" >> beam.ParDo(_KeyByUrl()), ("keyed", NO_URL), "SplitUrl")
        chosen = split_tagged(split["keyed"]
                              | "GroupByUrl" >> beam.GroupByKey()
                              | "Newest" >> beam.ParDo(_SelectNewest(self.stage, self.date_key)),
                              (KEPT, REMOVED), "SplitNewest")
        kept = (split[NO_URL], chosen[KEPT]) | "WithUnkeyed" >> beam.Flatten()
        return {KEPT: kept, REMOVED: chosen[REMOVED]}


def _line_owners(doc: Document) -> Iterator[tuple[str, tuple[str, str, str]]]:
    """(line hash, (md5(url), source, id)) once per distinct line of the page."""
    owner = (url_hash(doc), doc.source, doc.id)
    for h in {line_hash(line) for line in doc.text.split("\n")}:
        yield h, owner


class _RemoveLines(beam.DoFn):
    def __init__(self, stage: int, min_num_sentences: int) -> None:
        self.stage, self.min_num_sentences = stage, min_num_sentences

    def process(self, item: tuple[PageKey, dict[str, list[Any]]]) -> Iterator[Any]:
        keep = set(item[1]["lines"])
        for doc in item[1]["pages"]:
            yield from self.dedup_page(doc, keep)

    def dedup_page(self, doc: Document, keep: set[str]) -> Iterator[Any]:
        text, edits = remove_lines(doc.text, keep)
        for reason, chars in edits.items():
            yield EDITS, ((doc.source, reason), chars)
        need = self.min_num_sentences
        if not text:
            yield _removed(doc, "c4.dedup_empty", self.stage)
        elif need and count_sentences(text, at_most=need) < need:
            yield _removed(doc, "c4.dedup_too_few_sentences", self.stage)
        else:
            yield KEPT, doc if text == doc.text else doc.with_text(text)


class C4LineDedup(beam.PTransform):
    """TFDS ``remove_duplicate_text``: each line survives only in the page with the smallest md5(url).

    Lines are keyed by md5(line.strip().lower()); pages without a URL rank by md5(id). Repeats inside
    a page go too; a page left empty, or with fewer than ``min_num_sentences`` punkt sentences, drops.
    """

    def __init__(self, stage: int, min_num_sentences: int = MIN_NUM_SENTENCES) -> None:
        super().__init__()
        self.stage, self.min_num_sentences = stage, min_num_sentences

    def expand(self, docs: beam.PCollection) -> dict[str, beam.PCollection]:
        owners = (docs
                  | "LineOwners" >> beam.FlatMap(_line_owners)
                  | "SmallestUrlHash" >> beam.CombinePerKey(min)
                  | "ByPage" >> beam.MapTuple(lambda h, owner: ((owner[1], owner[2]), h)))
        pages = docs | "KeyByPage" >> beam.Map(lambda d: (page_key(d), d))
        tagged = ({"pages": pages, "lines": owners}
                  | "JoinPagesLines" >> beam.CoGroupByKey()
                  | "RemoveLines" >> beam.ParDo(_RemoveLines(self.stage, self.min_num_sentences)))
        return split_tagged(tagged, (KEPT, REMOVED, EDITS), "Split")


def c4_url_dedup(stage: int, params: C4UrlDedupParams | None = None, **settings: Any) -> C4UrlDedup:
    """Factory for the ``c4_url_dedup`` stage (:class:`filters.c4.C4UrlDedupParams`, or the same as keywords)."""
    p = resolve(C4UrlDedupParams, params, settings, "c4_url_dedup")
    return C4UrlDedup(stage, date_key=p.date_key)


def c4_line_dedup(stage: int, params: C4LineDedupParams | None = None, **settings: Any) -> C4LineDedup:
    """Factory for the ``c4_line_dedup`` stage (C4: pages need 3 sentences after dedup)."""
    p = resolve(C4LineDedupParams, params, settings, "c4_line_dedup")
    return C4LineDedup(stage, min_num_sentences=p.min_num_sentences)


def mc4_line_dedup(stage: int, params: Mc4LineDedupParams | None = None, **settings: Any) -> C4LineDedup:
    """Factory for the ``mc4_line_dedup`` stage (mC4: no sentence minimum)."""
    p = resolve(Mc4LineDedupParams, params, settings, "mc4_line_dedup")
    return C4LineDedup(stage, min_num_sentences=p.min_num_sentences)

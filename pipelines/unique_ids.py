"""One record per (source, id): the first is kept, every other copy is quarantined as ``duplicate_id``.

Ids must be unique within a source (``Document``'s contract), and later stages key documents by
``(source, id)`` (URL and line dedup, the sorted writers), so two records with one id would be kept twice or
collide. :class:`UniqueIds` keeps exactly one per key and emits the others as :class:`Quarantined` items, so
they are counted and written to ``quarantine/`` like any other bad input.

Which copy survives does not depend on the runner or bundle order: the one read first, by the smallest
location (file path, then line / row / record number compared as a number), then the smallest md5 of the
text (the only order left when the input carries no locations).

Input elements are ``(location, Document)`` pairs (from :func:`pipelines.readers.read_located`) or bare
``Document`` s; without a location the survivor is the copy with the smallest text hash, and a quarantined
copy is located as ``<source>:<id>#copy N``. Output: ``{"kept": Document, "quarantine": Quarantined}``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam

from filters.base import Document
from pipelines.readers import RAW_SNIPPET, Quarantined
from pipelines.stages import KEPT, QUARANTINE, split_tagged

DUPLICATE_ID = "duplicate_id"
_NUMBER = re.compile(r"\d+")
Copy = tuple[str | None, Document]


def location_key(location: str | None) -> tuple[int, str, int, str]:
    """Sort key of a reader location: by file, then by the line/row/record number as a number.

    ``a.jsonl:9`` sorts before ``a.jsonl:10``; ``x.warc:record 2`` before ``x.warc:record 12``. A missing
    location sorts after every real one.
    """
    if location is None:
        return 1, "", 0, ""
    path, _, tail = location.rpartition(":")
    number = _NUMBER.search(tail)
    return 0, path, int(number.group()) if number else -1, tail


def copy_rank(copy: Copy) -> tuple[Any, ...]:
    """Total order on the copies of one id: location first, then content (text, url, meta)."""
    location, doc = copy
    meta = json.dumps(doc.meta, sort_keys=True, default=str)
    return location_key(location), hashlib.md5(doc.text.encode("utf-8")).hexdigest(), doc.url or "", meta


def _key_by_id(item: Document | Copy) -> tuple[tuple[str, str], Copy]:
    copy: Copy = (None, item) if isinstance(item, Document) else (item[0], item[1])
    return (copy[1].source, copy[1].id), copy


def pick_first(item: tuple[tuple[str, str], Iterable[Copy]]) -> Iterator[tuple[str, Any]]:
    """Emit ``("kept", survivor)`` and ``("quarantine", Quarantined)`` for each other copy of one id."""
    (source, doc_id), copies = item
    survivor, *others = sorted(copies, key=copy_rank)
    yield KEPT, survivor[1]
    if not others:
        return
    kept_at = survivor[0] or f"the copy with text md5 {copy_rank(survivor)[1]}"
    for n, (location, doc) in enumerate(others, start=2):
        reason = f"{DUPLICATE_ID}:id {doc_id!r} is kept from {kept_at}"
        yield QUARANTINE, Quarantined(source, reason, location or f"{source}:{doc_id}#copy {n}",
                                      doc.text[:RAW_SNIPPET])


class UniqueIds(beam.PTransform):
    """Keep one document per ``(source, id)``; quarantine the other copies with reason ``duplicate_id``.

    ``PCollection[(location, Document) | Document]`` -> ``{"kept": PCollection[Document],
    "quarantine": PCollection[Quarantined]}``. Groups by ``(source, id)``, so every document passes one
    shuffle (the same volume as a ``Reshuffle``); a group holds the copies of one id, normally one.
    """

    def expand(self, records: beam.PCollection) -> dict[str, beam.PCollection]:
        tagged = (
            records
            | "KeyById" >> beam.Map(_key_by_id)
            | "GroupById" >> beam.GroupByKey()
            | "PickFirst" >> beam.FlatMap(pick_first)
        )
        return split_tagged(tagged, (KEPT, QUARANTINE), "Split")

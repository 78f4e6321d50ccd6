"""UniqueIds keeps one record per (source, id), the first by location whatever the input order, and quarantines
every other copy with reason ``duplicate_id`` (in-process Beam runner)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from filters.base import Document
from pipelines.readers import Quarantined, ReaderOptions, read_located
from pipelines.stages import KEPT, QUARANTINE
from pipelines.unique_ids import UniqueIds, location_key

OPTS = ReaderOptions("web")


def run(elements: list, expect_kept: list[Document], expect_quarantined: list[Quarantined]) -> None:
    with BeamTestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(elements, reshuffle=False) | UniqueIds()
        assert_that(out[KEPT], equal_to(expect_kept), label="kept")
        assert_that(out[QUARANTINE], equal_to(expect_quarantined), label="quarantined")


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def two_files(tmp_path: Path) -> tuple[str, str]:
    a = _jsonl(tmp_path / "a.jsonl", [{"id": "p", "text": "p in a"}, {"id": "y", "text": "first y"}]
               + [{"id": f"f{i}", "text": f"filler {i}"} for i in range(7)] + [{"id": "y", "text": "y again"},
                                                                               {"id": "x", "text": "x in a"}])
    b = _jsonl(tmp_path / "b.jsonl", [{"id": "x", "text": "x in b"}, {"id": "q", "text": "q in b"},
                                      {"id": "x", "text": "x in b again"}])
    return a, b


def test_duplicates_within_and_across_files_keep_the_first_location_in_any_order(
        two_files: tuple[str, str]) -> None:
    a, b = two_files
    located = [*read_located(a, OPTS), *read_located(b, OPTS)]
    docs = {(loc.rsplit(":", 1)[0], d.text): d for loc, d in located}
    kept = [d for d in (r for _, r in located) if d.id not in ("x", "y")]
    kept += [docs[(a, "first y")], docs[(a, "x in a")]]
    quarantined = [
        # a.jsonl:10 loses to a.jsonl:2 (numeric line order, not "10" < "2")
        Quarantined("web", f"duplicate_id:id 'y' is kept from {a}:2", f"{a}:10", "y again"),
        # across files: a.jsonl:11 is kept over b.jsonl:1 and b.jsonl:3
        Quarantined("web", f"duplicate_id:id 'x' is kept from {a}:11", f"{b}:1", "x in b"),
        Quarantined("web", f"duplicate_id:id 'x' is kept from {a}:11", f"{b}:3", "x in b again"),
    ]
    run(located, kept, quarantined)
    run(list(reversed(located)), kept, quarantined)  # runner order does not choose the survivor


def test_same_id_in_two_sources_is_not_a_duplicate() -> None:
    web, wiki = Document("1", "same", "web"), Document("1", "same", "wiki")
    run([("w.jsonl:1", web), ("k.jsonl:1", wiki)], [web, wiki], [])


def test_bare_documents_keep_the_smallest_text_hash_and_count_identical_copies() -> None:
    one, two = Document("d", "version one", "web"), Document("d", "version two", "web")
    first, second = sorted([one, two], key=lambda d: hashlib.md5(d.text.encode()).hexdigest())
    same = Document("s", "identical", "web")
    digest = hashlib.md5(first.text.encode()).hexdigest()
    quarantined = [
        Quarantined("web", f"duplicate_id:id 'd' is kept from the copy with text md5 {digest}", "web:d#copy 2",
                    second.text),
        Quarantined("web", "duplicate_id:id 's' is kept from the copy with text md5 "
                    f"{hashlib.md5(b'identical').hexdigest()}", "web:s#copy 2", "identical"),
    ]
    run([two, one, same, same], [first, same], quarantined)
    run([one, same, two, same], [first, same], quarantined)


def test_location_key_orders_by_file_then_number() -> None:
    assert sorted(["a.jsonl:10", "b.jsonl:1", "a.jsonl:9"], key=location_key) == ["a.jsonl:9", "a.jsonl:10",
                                                                                    "b.jsonl:1"]
    assert location_key("x.warc:record 12") > location_key("x.warc:record 2")
    assert location_key("d.parquet:row 3") < location_key(None)

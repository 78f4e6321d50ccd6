"""Readers turn every record into a Document or a Quarantined record with a reason and a location."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from filters.base import Document
from pipelines.readers import Quarantined, ReaderOptions, html_to_text, infer_reader, read_source

OPTS = ReaderOptions("web", max_chars=1000)

GOOD = {"id": "a", "text": "Hello world.", "url": "http://x.org/a", "meta": {"lang": "en"}}
BAD_LINES = [
    b'{"id": "b", "text": "fine"}',
    b'{"id": "c", "text": ',  # malformed JSON
    b'{"id": "d", "text": "caf\xe9"}',  # invalid UTF-8 (latin-1 byte)
    b'{"id": "e"}',  # missing text
    b'{"id": "f", "text": 42}',  # non-string text
    b'{"id": "g", "text": "   "}',  # empty
    json.dumps({"id": "h", "text": "x" * 1001}).encode(),  # too large
    b'["not", "an", "object"]',
    b'{"id": "i", "text": "bad \\ud800 surrogate"}',
    b"",  # blank line: skipped, not a record
]


def _write(path: Path, lines: list[bytes]) -> Path:
    data = b"\n".join([json.dumps(GOOD).encode(), *lines]) + b"\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    elif path.suffix == ".zst":
        path.write_bytes(zstandard.ZstdCompressor().compress(data))
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", ["docs.jsonl", "docs.jsonl.gz", "docs.jsonl.zst"])
def test_jsonl_quarantines_every_bad_record_with_reason_and_line(tmp_path: Path, name: str) -> None:
    records = list(read_source(str(_write(tmp_path / name, BAD_LINES)), OPTS))
    docs = [r for r in records if isinstance(r, Document)]
    bad = {r.location.rsplit(":", 1)[1]: r.reason for r in records if isinstance(r, Quarantined)}
    assert [d.id for d in docs] == ["a", "b"]
    assert docs[0].url == "http://x.org/a" and docs[0].meta == {"lang": "en"} and docs[0].source == "web"
    assert bad["3"].startswith("malformed_json")
    assert bad["4"].startswith("invalid_utf8")
    assert bad["5"] == "missing_field:text"
    assert bad["6"] == "non_string_text:int"
    assert bad["7"] == "empty_text"
    assert bad["8"].startswith("too_large:1001>1000")
    assert bad["9"] == "not_an_object"
    assert bad["10"].startswith("lone_surrogate")
    assert len(records) == 10  # the blank line is not a record; nothing else vanished


def test_missing_id_gets_a_stable_id_from_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "one"}\n{"text": "two"}\n')
    assert [d.id for d in read_source(str(path), OPTS)] == ["x.jsonl:1", "x.jsonl:2"]


def test_parquet_reader_locates_rows(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "1", "text": "a b c"}, {"id": "2", "text": None}]), path)
    out = list(read_source(str(path), OPTS))
    assert isinstance(out[0], Document) and out[0].text == "a b c"
    assert isinstance(out[1], Quarantined) and out[1].location.endswith("row 2")


def test_warc_and_wet_records(tmp_path: Path) -> None:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    path = tmp_path / "sample.warc.gz"
    with open(path, "wb") as out:
        writer = WARCWriter(out, gzip=True)
        html = b"<html><head><title>T</title><script>x()</script></head><body><p>Para one.</p><p>Two</p></body></html>"
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record("http://a.org/", "response", payload=io.BytesIO(html),
                                                      http_headers=http))
        writer.write_record(writer.create_warc_record("http://b.org/", "conversion",
                                                      payload=io.BytesIO(b"plain wet text\nline two")))
        writer.write_record(writer.create_warc_record("http://c.org/", "conversion", payload=io.BytesIO(b"\xff\xfe")))
    assert infer_reader(str(path)) == "warc"
    out = list(read_source(str(path), OPTS))
    assert [type(r).__name__ for r in out] == ["Document", "Document", "Quarantined"]
    assert out[0].text == "T\nPara one.\nTwo" and out[0].url == "http://a.org/" and out[0].meta["warc_date"]
    assert out[1].text == "plain wet text\nline two"
    assert out[2].reason.startswith("invalid_utf8")


def test_hf_reader_streams_local_files_through_load_dataset(tmp_path: Path) -> None:
    path = _write(tmp_path / "hf.jsonl", [b'{"id": "b", "text": "second"}', b'{"id": "c", "text": ""}'])
    opts = ReaderOptions("web", hf_data_files=(str(path),))
    out = list(read_source("hf://json", opts))
    assert [r.id for r in out if isinstance(r, Document)] == ["a", "b"]
    assert [r.reason for r in out if isinstance(r, Quarantined)] == ["empty_text"]


def test_html_to_text_drops_scripts_and_keeps_blocks() -> None:
    assert html_to_text("<div>a <b>b</b></div><style>p{}</style><li>c</li>") == "a b\nc"

"""Readers turn every record into a Document or a Quarantined record with a reason and a location."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from filters.base import Document
from pipelines.readers import (
    Quarantined,
    ReaderOptions,
    html_to_text,
    infer_reader,
    read_located,
    read_source,
)

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


# --- Damaged input: counted and kept, never fatal, never silent (issue 13) ---------------------------------------

# Hash digits make the text hard to compress, so half the compressed bytes hold a good share of the lines.
MANY = [json.dumps({"id": str(i), "text": hashlib.sha256(str(i).encode()).hexdigest() * 8}).encode()
        for i in range(800)]


def _complete_lines(data: bytes) -> int:
    """How many whole (newline-terminated) lines a decompressed prefix holds."""
    return data.count(b"\n")


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst"])
def test_truncated_compressed_jsonl_keeps_every_line_before_the_cut_and_quarantines_the_cut(
        tmp_path: Path, suffix: str) -> None:
    data = b"\n".join(MANY) + b"\n"
    if suffix == ".jsonl.gz":
        packed = gzip.compress(data)
        cut = packed[: len(packed) // 2]
        readable = zlib.decompressobj(wbits=31).decompress(cut)
    else:
        packed = zstandard.ZstdCompressor().compress(data)
        cut = packed[: len(packed) // 2]
        readable = zstandard.ZstdDecompressor().decompressobj().decompress(cut)
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(cut)
    whole = _complete_lines(readable)
    assert 0 < whole < len(MANY)

    records = list(read_source(str(path), OPTS))  # no EOFError, and not silent either

    docs = [r for r in records if isinstance(r, Document)]
    bad = [r for r in records if isinstance(r, Quarantined)]
    assert [d.id for d in docs] == [str(i) for i in range(whole)]
    assert len(bad) == 1 and records[-1] is bad[0]
    assert bad[0].reason.startswith("truncated:") and "byte" in bad[0].reason
    assert bad[0].location == f"{path}:{whole + 1}"
    assert bad[0].raw == readable[readable.rindex(b"\n") + 1:][:500].decode("utf-8", errors="replace")


def test_gzip_cut_exactly_at_a_line_end_still_reports_the_cut(tmp_path: Path) -> None:
    # A gzip member whose deflate data stops right after a complete line: every line is there, the end mark is not.
    data = b"\n".join(MANY[:3]) + b"\n"
    comp = zlib.compressobj(wbits=31)
    flushed = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
    path = tmp_path / "sync.jsonl.gz"
    path.write_bytes(flushed)
    records = list(read_source(str(path), OPTS))
    assert [r.id for r in records if isinstance(r, Document)] == ["0", "1", "2"]
    assert [(r.reason.split(":")[0], r.location) for r in records if isinstance(r, Quarantined)] == [
        ("truncated", f"{path}:4")]


def test_file_that_is_not_gzip_or_has_trailing_garbage_is_quarantined_not_fatal(tmp_path: Path) -> None:
    fake = tmp_path / "fake.jsonl.gz"
    fake.write_bytes(b"this is not gzip at all\n")
    out = list(read_source(str(fake), OPTS))
    assert len(out) == 1 and isinstance(out[0], Quarantined) and out[0].reason.startswith("corrupt:")
    assert out[0].location == f"{fake}:1"

    tail = tmp_path / "tail.jsonl.gz"
    tail.write_bytes(gzip.compress(b"\n".join(MANY[:2]) + b"\n") + b"garbage after the member")
    out = list(read_source(str(tail), OPTS))
    assert [r.id for r in out if isinstance(r, Document)] == ["0", "1"]
    assert [r.reason.split(":")[0] for r in out if isinstance(r, Quarantined)] == ["corrupt"]


def test_compression_is_detected_from_the_bytes_not_the_name(tmp_path: Path) -> None:
    path = tmp_path / "really_gzip.jsonl"
    path.write_bytes(gzip.compress(b"\n".join(MANY[:2]) + b"\n"))
    assert [r.id for r in read_source(str(path), OPTS)] == ["0", "1"]


def test_truncated_parquet_is_quarantined_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "1", "text": "a b c"}]), path)
    path.write_bytes(path.read_bytes()[:-20])
    out = list(read_source(str(path), OPTS))
    assert len(out) == 1 and isinstance(out[0], Quarantined) and out[0].reason.startswith("corrupt:")


def _wet_texts(n: int = 7) -> list[str]:
    return [f"Page {i} of the crawl.\n" + "Some words on this page. " * (20 + i) for i in range(n)]


def _warc_records(texts: list[str], kind: str = "conversion") -> list[bytes]:
    """Each record uncompressed, as warcio's own writer frames it (WARC/1.0 headers, block, CRLF CRLF)."""
    from warcio.warcwriter import WARCWriter

    records = []
    for i, text in enumerate(texts):
        buf = io.BytesIO()
        writer = WARCWriter(buf, gzip=False)
        writer.write_record(writer.create_warc_record(f"http://site{i}.org/", kind,
                                                      payload=io.BytesIO(text.encode())))
        records.append(buf.getvalue())
    return records


def _warcinfo() -> bytes:
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=False)
    writer.write_record(writer.create_warcinfo_record("x.warc.wet", {"software": "test"}))
    return buf.getvalue()


def _kinds(records: list) -> list[str]:
    return [r.reason.split(":")[0] if isinstance(r, Quarantined) else "doc" for r in records]


@pytest.mark.parametrize("layout", ["plain", "per_record_gzip", "one_gzip_member"])
def test_wet_reads_plain_per_record_gzip_and_single_member_gzip(tmp_path: Path, layout: str) -> None:
    texts = _wet_texts()
    records = [_warcinfo(), *_warc_records(texts)]
    if layout == "plain":
        data, name = b"".join(records), "x.warc.wet"
    elif layout == "per_record_gzip":
        data, name = b"".join(gzip.compress(r) for r in records), "x.warc.wet.gz"
    else:  # what `gzip x.warc.wet` gives; TFDS reads these
        data, name = gzip.compress(b"".join(records)), "x.warc.wet.gz"
    path = tmp_path / name
    path.write_bytes(data)
    assert infer_reader(str(path)) == "warc"
    out = list(read_source(str(path), OPTS))
    assert [d.text for d in out] == texts
    assert [d.url for d in out] == [f"http://site{i}.org/" for i in range(7)]


@pytest.mark.parametrize("delta", [-100, 100, 3000])
@pytest.mark.parametrize("compressed", [False, True])
def test_wrong_content_length_quarantines_that_record_and_reads_on(tmp_path: Path, delta: int,
                                                                   compressed: bool) -> None:
    texts = _wet_texts()
    records = _warc_records(texts)
    declared = len(texts[2].encode())
    records[2] = records[2].replace(f"Content-Length: {declared}\r\n".encode(),
                                    f"Content-Length: {declared + delta}\r\n".encode())
    path = tmp_path / ("bad.warc.gz" if compressed else "bad.warc")
    path.write_bytes(b"".join(gzip.compress(r) for r in records) if compressed else b"".join(records))
    out = list(read_source(str(path), OPTS))
    assert _kinds(out) == ["doc", "doc", "bad_content_length", "doc", "doc", "doc", "doc"]
    assert [d.text for d in out if isinstance(d, Document)] == texts[:2] + texts[3:]
    assert out[2].location == f"{path}:record 3" and str(declared + delta) in out[2].reason


@pytest.mark.parametrize("compressed", [False, True])
def test_truncated_warc_keeps_every_record_before_the_cut_and_quarantines_the_cut(tmp_path: Path,
                                                                                  compressed: bool) -> None:
    texts = _wet_texts()
    records = _warc_records(texts)
    members = [gzip.compress(r) for r in records] if compressed else records
    # Cut in the middle of the 5th record: records 1-4 are whole, 5-7 are lost to the cut.
    cut = sum(len(m) for m in members[:4]) + len(members[4]) // 2
    path = tmp_path / ("cut.warc.gz" if compressed else "cut.warc")
    path.write_bytes(b"".join(members)[:cut])
    out = list(read_source(str(path), OPTS))
    assert _kinds(out) == ["doc", "doc", "doc", "doc", "truncated"]
    assert [d.text for d in out[:4]] == texts[:4]
    assert out[4].location == f"{path}:record 5"


def test_plain_text_named_warc_is_quarantined_as_not_warc(tmp_path: Path) -> None:
    path = tmp_path / "notes.warc"
    path.write_text("just some notes\nthat are not a WARC file\n")
    out = list(read_source(str(path), OPTS))
    assert len(out) == 1 and isinstance(out[0], Quarantined)
    assert out[0].reason.startswith("not_warc:") and out[0].location == f"{path}:byte 0"
    assert out[0].raw.startswith("just some notes")


def test_junk_between_warc_records_is_quarantined_and_reading_resyncs(tmp_path: Path) -> None:
    texts = _wet_texts(3)
    records = _warc_records(texts)
    path = tmp_path / "junk.warc"
    path.write_bytes(records[0] + b"stray bytes\nmore stray\n" + records[1] + records[2])
    out = list(read_source(str(path), OPTS))
    assert _kinds(out) == ["doc", "junk_between_records", "doc", "doc"]
    assert [d.text for d in out if isinstance(d, Document)] == texts


def test_single_member_gzip_wet_cut_keeps_the_records_before_the_cut(tmp_path: Path) -> None:
    texts = _wet_texts()
    whole = b"".join(_warc_records(texts))
    packed = gzip.compress(whole)
    readable = zlib.decompressobj(wbits=31).decompress(packed[: len(packed) * 3 // 4])
    complete = sum(1 for end in _record_ends(_warc_records(texts)) if end <= len(readable))
    path = tmp_path / "one.warc.wet.gz"
    path.write_bytes(packed[: len(packed) * 3 // 4])
    out = list(read_source(str(path), OPTS))
    assert 0 < complete < 7
    assert _kinds(out) == ["doc"] * complete + ["truncated"]
    assert [d.text for d in out[:complete]] == texts[:complete]


def _record_ends(records: list[bytes]) -> list[int]:
    ends, total = [], 0
    for r in records:
        total += len(r)
        ends.append(total)
    return ends


def test_oversized_missing_or_absurd_content_length_is_quarantined_and_reading_goes_on(tmp_path: Path) -> None:
    texts = ["a" * 10, "b" * (2 << 20), "c" * 10, "d" * 10, "e" * 10]  # 2 MiB > 4 * max_chars and > 1 MiB
    records = _warc_records(texts)
    records[2] = records[2].replace(b"Content-Length: 10\r\n", b"")
    records[3] = records[3].replace(b"Content-Length: 10\r\n", b"Content-Length: 50000000\r\n")
    path = tmp_path / "odd.warc"
    path.write_bytes(b"".join(records))
    out = list(read_source(str(path), OPTS))
    assert _kinds(out) == ["doc", "too_large", "bad_record", "bad_content_length", "doc"]
    assert [d.text for d in out if isinstance(d, Document)] == ["a" * 10, "e" * 10]
    located = list(read_located(str(path), OPTS))
    assert [record for _, record in located] == out
    assert [loc for loc, _ in located] == [f"{path}:record {i}" for i in range(1, 6)]

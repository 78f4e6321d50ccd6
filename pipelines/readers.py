"""Readers: turn a source file (or a Hugging Face dataset) into Documents, quarantining what is malformed.

Every reader is a plain generator (usable without Beam) yielding either a :class:`Document` or a
:class:`Quarantined` record that says what was wrong and where (file and line, or record number). Nothing
is dropped silently: a record that cannot become a document is always yielded as ``Quarantined``.

Damaged files are bad input too, never fatal: a compressed stream that ends early or is corrupt ends the
file with one ``truncated:``/``corrupt:`` record after everything read before the damage; WARC/WET files are
framed record by record so a wrong ``Content-Length``, a cut or bytes that are not WARC are quarantined and
reading goes on at the next record. :func:`read_located` also gives each record's location.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import IO, Any

from filters.base import Document

DEFAULT_MAX_CHARS = 5_000_000
RAW_SNIPPET = 500


@dataclass(slots=True)
class Quarantined:
    """A record that could not become a document: why, where, and the start of what it was."""

    source: str
    reason: str
    location: str
    raw: str


Record = Document | Quarantined
Located = tuple[str, Record]  # (location, record): where in the input the record was


@dataclass(frozen=True, slots=True)
class ReaderOptions:
    """How a source's records map onto documents."""

    source: str
    text_field: str = "text"
    id_field: str = "id"
    url_field: str = "url"
    max_chars: int = DEFAULT_MAX_CHARS
    hf_split: str = "train"
    hf_data_files: tuple[str, ...] = ()


def _snippet(raw: Any) -> str:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    return text[:RAW_SNIPPET]


def _from_mapping(obj: Any, opts: ReaderOptions, location: str, fallback_id: str) -> Record:
    """Validate one parsed record and build a Document (or say why not)."""
    if not isinstance(obj, dict):
        return Quarantined(opts.source, "not_an_object", location, _snippet(obj))
    text = obj.get(opts.text_field)
    if text is None:
        return Quarantined(opts.source, f"missing_field:{opts.text_field}", location, _snippet(obj))
    if not isinstance(text, str):
        return Quarantined(opts.source, f"non_string_text:{type(text).__name__}", location, _snippet(obj))
    if not text.strip():
        return Quarantined(opts.source, "empty_text", location, _snippet(obj))
    if len(text) > opts.max_chars:
        return Quarantined(opts.source, f"too_large:{len(text)}>{opts.max_chars}", location, _snippet(text))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return Quarantined(opts.source, f"lone_surrogate:char {err.start}", location, _snippet(repr(text)))
    doc_id = obj.get(opts.id_field)
    doc_id = fallback_id if doc_id is None or doc_id == "" else str(doc_id)
    given = obj.get("meta")
    meta: dict[str, Any] = dict(given) if isinstance(given, dict) else {}
    for key, value in obj.items():
        if key not in (opts.text_field, opts.id_field, opts.url_field, "meta", "source"):
            meta.setdefault(key, value)
    url = obj.get(opts.url_field) or meta.get("url")
    return Document(id=doc_id, text=text, source=opts.source, url=str(url) if url else None, meta=meta)


GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 1 << 16


class _ZstdFrames:
    """Read a ``.zst`` file frame by frame; a file that ends inside a frame raises ``EOFError``.

    ``zstandard``'s ``stream_reader`` just stops there, which would lose the rest of the file without a word.
    """

    def __init__(self, fh: IO[bytes]) -> None:
        import zstandard

        self._fh, self._dctx = fh, zstandard.ZstdDecompressor()
        self._frame: Any = None
        self._pending = b""
        self._out, self._pos = b"", 0

    def read1(self, size: int) -> bytes:
        while self._pos >= len(self._out):
            data, self._pending = self._pending or self._fh.read(CHUNK), b""
            if not data:
                if self._frame is not None:
                    raise EOFError("zstd data ends inside a frame")
                return b""
            if self._frame is None:
                self._frame = self._dctx.decompressobj()
            self._out, self._pos = self._frame.decompress(data), 0
            if self._frame.eof:
                self._pending, self._frame = self._frame.unused_data, None
        out = self._out[self._pos:self._pos + size]
        self._pos += len(out)
        return out


class _GuardedStream(io.RawIOBase):
    """A decompressed byte stream that never raises on damaged input: it ends early and records why.

    ``failure`` is then a quarantine reason (``truncated:...`` when the data stops before the compressed
    stream's end mark, ``corrupt:...`` for bad data or a bad checksum) naming the decompressed byte offset.
    Reading is by ``read1`` (one decompression step at a time), so every byte decoded before the damage is
    delivered.
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path, self.offset = path, 0
        self.failure: str | None = None
        self.kind = "file"
        self._fh = open(path, "rb")  # noqa: SIM115 (closed by close())
        head = self._fh.read(4)
        self._fh.seek(0)
        lowered = path.lower()
        self._errors: tuple[type[BaseException], ...] = (EOFError, OSError, zlib.error)
        self._inner: Any = None
        if head.startswith(GZIP_MAGIC) or (not head.startswith(ZSTD_MAGIC) and lowered.endswith(".gz")):
            self.kind = "gzip"
            self._inner = gzip.GzipFile(fileobj=self._fh, mode="rb")
            self._read1: Callable[[int], bytes] = self._inner.read1
        elif head.startswith(ZSTD_MAGIC) or lowered.endswith(".zst"):
            import zstandard

            self.kind = "zstd"
            self._errors += (zstandard.ZstdError,)
            self._read1 = _ZstdFrames(self._fh).read1
        else:
            self._read1 = self._fh.read1

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.failure is not None:
            return 0
        try:
            data = self._read1(len(buffer))
        except self._errors as err:
            what = "truncated" if isinstance(err, EOFError) else "corrupt"
            where = f"byte {self.offset}" if self.kind == "file" else f"decompressed byte {self.offset}"
            self.failure = f"{what}:{self.kind} stream ends at {where} ({err})"
            return 0
        buffer[: len(data)] = data
        self.offset += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            if self._inner is not None:
                self._inner.close()
            self._fh.close()
        super().close()


def open_binary(path: str | Path) -> io.BufferedReader:
    """Open a local file for reading bytes, decompressing gzip and zstd (by content, else by name).

    Damaged compressed data ends the stream early instead of raising; readers check ``.raw.failure``.
    """
    return io.BufferedReader(_GuardedStream(str(path)), CHUNK)


def _jsonl(path: str, opts: ReaderOptions) -> Iterator[Located]:
    name = Path(path).name
    lineno = 0
    with open_binary(path) as lines:
        stream: _GuardedStream = lines.raw  # type: ignore[assignment]
        for lineno, raw in enumerate(lines, start=1):
            location = f"{path}:{lineno}"
            if stream.failure is not None and not raw.endswith(b"\n"):
                # The line the damage cut: quarantined whole, even if what is left happens to parse.
                yield location, Quarantined(opts.source, stream.failure, location, _snippet(raw))
                return
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield location, Quarantined(opts.source, f"invalid_utf8:byte {err.start}", location, _snippet(raw))
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                yield location, Quarantined(opts.source, f"malformed_json:{err.msg}", location, _snippet(line))
                continue
            yield location, _from_mapping(obj, opts, location, f"{name}:{lineno}")
        if stream.failure is not None:  # the damage fell on a line boundary
            location = f"{path}:{lineno + 1}"
            yield location, Quarantined(opts.source, stream.failure, location, "")


def _parquet(path: str, opts: ReaderOptions) -> Iterator[Located]:
    """Parquet: one row per document, read in batches; an unreadable file or row group is quarantined."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = Path(path).name
    row = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for obj in batch.to_pylist():
                row += 1
                location = f"{path}:row {row}"
                yield location, _from_mapping(obj, opts, location, f"{name}:{row}")
    except (pa.ArrowException, OSError) as err:
        location = f"{path}:row {row + 1}"
        yield location, Quarantined(opts.source, f"corrupt:parquet unreadable after row {row} ({err})", location, "")


class _VisibleText(HTMLParser):
    """Visible text of an HTML page: script/style dropped, a newline at block tags, whitespace collapsed."""

    SKIP = frozenset({"script", "style", "svg", "template", "noscript", "head"})
    BLOCK = frozenset(
        "p div br li ul ol h1 h2 h3 h4 h5 h6 tr td th table section article header footer nav "  # noqa: SIM905
        "blockquote pre title form aside main figure figcaption dd dt".split()
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0
        self.in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        elif tag in self.SKIP:
            self.skip += 1
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        elif tag in self.SKIP and self.skip:
            self.skip -= 1
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip or self.in_title:
            self.parts.append(data)

    def text(self) -> str:
        lines = (" ".join(line.split()) for line in "".join(self.parts).split("\n"))
        return "\n".join(line for line in lines if line)


def html_to_text(html: str) -> str:
    """Visible text of an HTML document (the WET-like extraction used for WARC response records)."""
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    return parser.text()


WARC_VERSIONS = frozenset({b"WARC/1.0", b"WARC/1.1", b"WARC/0.17", b"WARC/0.18"})
LINE_LIMIT = 1 << 16  # longest line read at once while looking for a header
MAX_WARC_HEADER = 1 << 20


def _is_warc_version(line: bytes) -> bool:
    return line.rstrip(b"\r\n") in WARC_VERSIONS


class _Pushback:
    """A byte stream with ``unread`` (to step back over a record whose Content-Length was wrong) and offsets."""

    def __init__(self, reader: IO[bytes]) -> None:
        self._reader, self._back, self._at, self.offset = reader, b"", 0, 0

    def read(self, size: int) -> bytes:
        out = self._back[self._at:self._at + size]
        self._at += len(out)
        if len(out) < size:
            out += self._reader.read(size - len(out))
        self.offset += len(out)
        return out

    def readline(self, limit: int = LINE_LIMIT) -> bytes:
        if self._at < len(self._back):
            newline = self._back.find(b"\n", self._at, self._at + limit)
            end = newline + 1 if newline >= 0 else min(len(self._back), self._at + limit)
            line = self._back[self._at:end]
            self._at = end
            if newline < 0 and len(line) < limit:
                line += self._reader.readline(limit - len(line))
        else:
            line = self._reader.readline(limit)
        self.offset += len(line)
        return line

    def at_end(self) -> bool:
        byte = self.read(1)
        self.unread(byte)
        return not byte

    def unread(self, data: bytes) -> None:
        self._back, self._at = data + self._back[self._at:], 0
        self.offset -= len(data)

    def skip_to_header(self) -> tuple[int, bytes]:
        """Skip to the next line that opens a WARC record (left unread): (bytes skipped, their first bytes)."""
        skipped, head, line_start = 0, b"", True
        while line := self.readline():
            if line_start and _is_warc_version(line):
                self.unread(line)
                break
            if len(head) < RAW_SNIPPET:
                head += line[:RAW_SNIPPET]
            skipped += len(line)
            line_start = line.endswith(b"\n")
        return skipped, head


def _content_length(header: bytes) -> int | None:
    for line in header.split(b"\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                return None
            return length if length >= 0 else None
    return None


def _record_ends(s: _Pushback, after: bytes, guarded: _GuardedStream) -> bool:
    """Is the block followed by the CRLF CRLF that ends a record (or by the clean end of the file)?

    Two lines are checked: one blank line alone is what a Content-Length that stops at a line end inside the
    next record's headers also gives. A single blank line before the next ``WARC/1.x`` line is tolerated.
    """
    if not after:
        return guarded.failure is None
    if after.strip():
        return False
    second = s.readline()
    if not second:
        return guarded.failure is None
    if second.strip() and not _is_warc_version(second):
        s.unread(second)
        return False
    if second.strip():
        s.unread(second)
    return True


def _warc_frames(path: str, opts: ReaderOptions) -> Iterator[tuple[int, str, bytes | Quarantined]]:
    """Split a (decompressed) WARC into records by their own framing: ``(number, location, bytes)``.

    Each record must be ``WARC/1.x`` headers, a blank line, ``Content-Length`` bytes, then a blank line.
    What breaks that is yielded as ``Quarantined`` and reading resynchronises at the next ``WARC/1.x`` line:
    a wrong Content-Length (too long swallows the next record, too short leaves a tail), a file or
    compressed stream that ends inside a record (``truncated``), bytes that are not WARC (``not_warc`` at
    the start, ``junk_between_records`` later). gzip is read as one stream, so one gzip member per record
    (Common Crawl) and one member for the whole file (``gzip file.wet``) both work.
    """
    max_block = max(4 * opts.max_chars, 1 << 20)
    with open_binary(path) as reader:
        guarded: _GuardedStream = reader.raw  # type: ignore[assignment]
        s = _Pushback(reader)
        number, reported = 0, False

        def quarantined(reason: str, location: str, raw: bytes) -> Quarantined:
            return Quarantined(opts.source, reason, location, _snippet(raw))

        while True:
            start, line = s.offset, s.readline()
            while line and not line.strip():
                start, line = s.offset, s.readline()
            if not line:
                break
            if not _is_warc_version(line):
                s.unread(line)
                skipped, head = s.skip_to_header()
                kind = "not_warc" if number == 0 else "junk_between_records"
                yield number, f"{path}:byte {start}", quarantined(
                    f"{kind}:{skipped} bytes that are not a WARC/1.x record", f"{path}:byte {start}", head)
                continue
            number += 1
            location = f"{path}:record {number}"
            header, ended = line, False
            while len(header) <= MAX_WARC_HEADER and (line := s.readline()):
                header += line
                if not line.strip():
                    ended = True
                    break
            if not ended:
                if not line:
                    reported = guarded.failure is not None
                    reason = guarded.failure or f"truncated:file ends inside the headers of record {number}"
                    yield number, location, quarantined(reason, location, header)
                    break
                s.skip_to_header()
                yield number, location, quarantined(f"bad_record:headers over {MAX_WARC_HEADER} bytes",
                                                    location, header)
                continue
            length = _content_length(header)
            if length is None:
                s.skip_to_header()
                yield number, location, quarantined("bad_record:missing or invalid Content-Length", location, header)
                continue
            if length > max_block:
                # Too big to hold: find its end by the next header instead of trusting the length.
                skipped, _ = s.skip_to_header()
                if s.at_end() and guarded.failure is not None:
                    reported, reason = True, f"{guarded.failure}; record {number} is cut"
                elif skipped in (length, length + 2, length + 4):  # followed by CRLF CRLF, or the file's end
                    reason = f"too_large:record block of {length} bytes > {max_block}"
                else:
                    reason = f"bad_content_length:Content-Length {length}, next record after {skipped} bytes"
                yield number, location, quarantined(reason, location, header)
                continue
            block = s.read(length)
            after = s.readline() if len(block) == length else b""
            if len(block) == length and _record_ends(s, after, guarded):
                yield number, location, header + block
                continue
            # The block does not end where Content-Length says: step back and look for the next record.
            s.unread(block + after)
            skipped, _ = s.skip_to_header()
            if s.at_end() and guarded.failure is not None:
                reported, reason = True, f"{guarded.failure}; record {number} is cut"
            elif s.at_end() and len(block) < length:
                reason = f"truncated:record {number} declares {length} bytes, the file ends after {len(block)}"
            else:
                reason = f"bad_content_length:Content-Length {length}, next record after {skipped} bytes"
            yield number, location, quarantined(reason, location, header + block)
        if guarded.failure is not None and not reported:
            location = f"{path}:byte {s.offset}"
            yield number, location, quarantined(guarded.failure, location, b"")


def _warc(path: str, opts: ReaderOptions) -> Iterator[Located]:
    """Common Crawl WET (``conversion`` records) or WARC (``response`` records with HTML), parsed by warcio."""
    from warcio.recordloader import ArcWarcRecordLoader

    loader = ArcWarcRecordLoader(verify_http=False, arc2warc=False)
    for number, location, frame in _warc_frames(path, opts):
        if isinstance(frame, Quarantined):
            yield location, frame
            continue
        try:
            record = loader.parse_record_stream(io.BytesIO(frame), known_format="warc")
            kind = record.rec_type
            if kind not in ("conversion", "response"):
                continue
            payload = record.content_stream().read()
        except Exception as err:  # warcio's parse errors have no common base; any is this record's fault
            yield location, Quarantined(opts.source, f"bad_record:{type(err).__name__}: {err}", location,
                                        _snippet(frame))
            continue
        headers = record.rec_headers
        url = headers.get_header("WARC-Target-URI")
        if kind == "response":
            ctype = (record.http_headers.get_header("Content-Type") if record.http_headers else "") or ""
            if "html" not in ctype.lower():
                continue
            text = html_to_text(payload.decode("utf-8", errors="replace"))
        else:
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError as err:
                yield location, Quarantined(opts.source, f"invalid_utf8:byte {err.start}", location,
                                            _snippet(payload))
                continue
        record_id = headers.get_header("WARC-Record-ID") or f"{Path(path).name}:{number}"
        obj = {
            "id": record_id.strip("<>"),
            "text": text,
            "url": url,
            "warc_date": headers.get_header("WARC-Date"),
        }
        yield location, _from_mapping(obj, ReaderOptions(opts.source, max_chars=opts.max_chars), location,
                                      record_id)


def _hf(uri: str, opts: ReaderOptions) -> Iterator[Located]:
    """A Hugging Face dataset by id, ``hf://owner/name[/config]``, streamed with ``datasets.load_dataset``.

    ``hf://json`` (or ``parquet``, ``text``) with ``hf_data_files`` reads local files through the same path,
    which is how the tests exercise it offline.
    """
    import datasets

    name, _, config = uri.removeprefix("hf://").partition("/")
    if "/" in config:  # owner/name/config
        owner_name, _, config = f"{name}/{config}".rpartition("/")
        name = owner_name
    elif name not in ("json", "parquet", "text", "csv"):
        name, config = f"{name}/{config}", ""
    kwargs: dict[str, Any] = {"split": opts.hf_split, "streaming": True}
    if opts.hf_data_files:
        kwargs["data_files"] = list(opts.hf_data_files)
    dataset = datasets.load_dataset(name, config or None, **kwargs)
    for number, obj in enumerate(dataset, start=1):
        location = f"{uri}:record {number}"
        yield location, _from_mapping(obj, opts, location, f"{uri}:{number}")


LOCATED_READERS: dict[str, Callable[[str, ReaderOptions], Iterator[Located]]] = {
    "jsonl": _jsonl,
    "parquet": _parquet,
    "warc": _warc,
    "hf": _hf,
}


def _records(located: Callable[[str, ReaderOptions], Iterator[Located]]) -> Callable[[str, ReaderOptions],
                                                                                    Iterator[Record]]:
    def read(path: str, opts: ReaderOptions) -> Iterator[Record]:
        return (record for _, record in located(path, opts))

    read.__name__, read.__doc__ = located.__name__.lstrip("_"), located.__doc__
    return read


read_jsonl = _records(_jsonl)
read_parquet = _records(_parquet)
read_warc = _records(_warc)
read_hf = _records(_hf)

READERS: dict[str, Callable[[str, ReaderOptions], Iterator[Record]]] = {
    "jsonl": read_jsonl,
    "parquet": read_parquet,
    "warc": read_warc,
    "hf": read_hf,
}


def infer_reader(path: str) -> str:
    """Pick a reader from the path: ``hf://`` URIs, ``.parquet``, WARC/WET, else JSON Lines."""
    if path.startswith("hf://"):
        return "hf"
    lowered = path.lower()
    if lowered.endswith(".parquet"):
        return "parquet"
    if any(lowered.endswith(ext) for ext in (".warc", ".warc.gz", ".wet", ".wet.gz")):
        return "warc"
    return "jsonl"


def read_source(path: str, opts: ReaderOptions, reader: str | None = None) -> Iterator[Record]:
    """Read one path with the named (or inferred) reader."""
    return READERS[reader or infer_reader(path)](path, opts)


def read_located(path: str, opts: ReaderOptions, reader: str | None = None) -> Iterator[Located]:
    """Like :func:`read_source`, with each record's location (``file:line``, ``file:row N``, ``file:record N``).

    Documents do not carry where they were read from; :class:`pipelines.unique_ids.UniqueIds` needs it to
    keep the first of two records with one id whatever order a runner delivers them in.
    """
    return LOCATED_READERS[reader or infer_reader(path)](path, opts)

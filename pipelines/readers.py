"""Readers: turn a source file (or a Hugging Face dataset) into Documents, quarantining what is malformed.

Every reader is a plain generator (usable without Beam) yielding either a :class:`Document` or a
:class:`Quarantined` record that says what was wrong and where (file and line, or record number). Nothing
is dropped silently: a record that cannot become a document is always yielded as ``Quarantined``.
"""

from __future__ import annotations

import gzip
import io
import json
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
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    meta = dict(meta)
    for key, value in obj.items():
        if key not in (opts.text_field, opts.id_field, opts.url_field, "meta", "source"):
            meta.setdefault(key, value)
    url = obj.get(opts.url_field) or meta.get("url")
    return Document(id=doc_id, text=text, source=opts.source, url=str(url) if url else None, meta=meta)


def open_binary(path: str | Path) -> IO[bytes]:
    """Open a local file for reading bytes, decompressing ``.gz`` and ``.zst`` transparently."""
    path = str(path)
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.endswith(".zst"):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)
    return open(path, "rb")


def read_jsonl(path: str, opts: ReaderOptions) -> Iterator[Record]:
    """JSON Lines (plain, .gz, .zst): one object per line; blank lines are skipped, not counted."""
    name = Path(path).name
    with open_binary(path) as raw_file:
        for lineno, raw in enumerate(io.BufferedReader(raw_file), start=1):  # type: ignore[arg-type]
            location = f"{path}:{lineno}"
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield Quarantined(opts.source, f"invalid_utf8:byte {err.start}", location, _snippet(raw))
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                yield Quarantined(opts.source, f"malformed_json:{err.msg}", location, _snippet(line))
                continue
            yield _from_mapping(obj, opts, location, f"{name}:{lineno}")


def read_parquet(path: str, opts: ReaderOptions) -> Iterator[Record]:
    """Parquet: one row per document, read in batches."""
    import pyarrow.parquet as pq

    name = Path(path).name
    row = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for obj in batch.to_pylist():
            row += 1
            yield _from_mapping(obj, opts, f"{path}:row {row}", f"{name}:{row}")


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


def read_warc(path: str, opts: ReaderOptions) -> Iterator[Record]:
    """Common Crawl WET (``conversion`` records) or WARC (``response`` records with HTML) via warcio."""
    from warcio.archiveiterator import ArchiveIterator

    with open(path, "rb") as stream:
        for number, record in enumerate(ArchiveIterator(stream), start=1):
            location = f"{path}:record {number}"
            kind = record.rec_type
            if kind not in ("conversion", "response"):
                continue
            headers = record.rec_headers
            url = headers.get_header("WARC-Target-URI")
            payload = record.content_stream().read()
            if kind == "response":
                ctype = (record.http_headers.get_header("Content-Type") if record.http_headers else "") or ""
                if "html" not in ctype.lower():
                    continue
                text = html_to_text(payload.decode("utf-8", errors="replace"))
            else:
                try:
                    text = payload.decode("utf-8")
                except UnicodeDecodeError as err:
                    yield Quarantined(opts.source, f"invalid_utf8:byte {err.start}", location, _snippet(payload))
                    continue
            record_id = headers.get_header("WARC-Record-ID") or f"{Path(path).name}:{number}"
            obj = {
                "id": record_id.strip("<>"),
                "text": text,
                "url": url,
                "warc_date": headers.get_header("WARC-Date"),
            }
            yield _from_mapping(obj, ReaderOptions(opts.source, max_chars=opts.max_chars), location, record_id)


def read_hf(uri: str, opts: ReaderOptions) -> Iterator[Record]:
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
        yield _from_mapping(obj, opts, f"{uri}:record {number}", f"{uri}:{number}")


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


"""JSON Lines, the one way Mixlab reads and writes them: plain or ``.gz``, errors naming ``file:line``.

Writes are atomic (a temporary file renamed into place), so a killed process leaves the old file or the new one;
appends are one ``write`` per row, and :func:`read_jsonl` leaves out a torn last line (what a kill during an
append leaves) while a bad line before the last is an error.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)


def _open(path: Path, mode: str, gz: bool | None = None) -> IO[str]:
    if path.suffix == ".gz" if gz is None else gz:
        return gzip.open(path, mode + "t", encoding="utf-8", compresslevel=6)  # type: ignore[return-value]
    return path.open(mode, encoding="utf-8")


def _dump(row: Any) -> str:
    return json.dumps(row, ensure_ascii=False, sort_keys=True)


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for every non-blank line; a line that is not JSON raises ``ValueError(file:line)``."""
    with _open(Path(path), "r") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not a JSON row ({err.msg})") from err


def read_jsonl(path: Path) -> list[Any]:
    """Rows of a JSON Lines file (empty if missing), leaving out a torn last line."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines() if path.suffix != ".gz" else \
        gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace").splitlines()
    numbered = [(number, line) for number, line in enumerate(lines, 1) if line.strip()]
    rows = []
    for number, line in numbered:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number != numbered[-1][0]:
                raise ValueError(f"{path}:{number}: not a JSON row ({err.msg})") from err
            log.warning("%s:%d: left out a torn last line (%d characters)", path, number, len(line))
    return rows


def write_jsonl(path: Path, rows: Iterable[Any]) -> Path:
    """Replace ``path`` with ``rows`` (sorted keys; gzip when it ends in ``.gz``), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with _open(tmp, "w", gz=path.suffix == ".gz") as out:
        for row in rows:
            out.write(_dump(row) + "\n")
    os.replace(tmp, path)
    return path


def append_jsonl(path: Path, row: Any) -> None:
    """Append one row (one write, so a kill leaves at most a torn last line)."""
    with Path(path).open("a", encoding="utf-8") as out:
        out.write(_dump(row) + "\n")

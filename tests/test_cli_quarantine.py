"""``mixlab filter`` and ``mixlab dedup`` keep the records they quarantine: OUT_DIR/quarantine.jsonl.gz."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from mixlab.cli import main

GOOD = [{"id": f"g{i}", "text": f"A perfectly fine document, number {i}, with enough words to keep."} for i in range(5)]


def _input(path: Path) -> Path:
    lines = [json.dumps(x) for x in GOOD[:3]] + ['{"id": "broken", "text": '] + [json.dumps(x) for x in GOOD[3:]]
    path.write_text("\n".join(lines) + "\n")
    return path


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode().splitlines()]


def _check(out: Path, source: str, data: Path) -> None:
    rows = _rows(out / "quarantine.jsonl.gz")
    assert len(rows) == 1
    row = rows[0]
    assert row["source"] == source and row["location"] == f"{data}:4" and row["reason"].startswith("malformed_json:")
    assert row["raw"].startswith('{"id": "broken"')
    assert len(_rows(out / "kept.jsonl.gz")) == 5
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == []  # the temporary run is gone


def test_filter_writes_quarantined_records_with_reason_and_location(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _input(tmp_path / "web.jsonl")
    out = tmp_path / "out"
    assert main(["filter", "--chain", "length", str(data), str(out)]) == 0
    _check(out, "web", data)
    assert "kept 5, removed 0, quarantined 1" in capsys.readouterr().out


def test_dedup_writes_quarantined_records_with_reason_and_location(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _input(tmp_path / "web.jsonl")
    other = tmp_path / "wiki.jsonl"
    other.write_text(json.dumps({"id": "w1", "text": "Something else entirely, about other things."}) + "\n")
    out = tmp_path / "out"
    assert main(["dedup", str(data), str(other), str(out)]) == 0
    rows = _rows(out / "quarantine.jsonl.gz")
    assert [(r["source"], r["location"]) for r in rows] == [("web", f"{data}:4")]
    assert "quarantined 1" in capsys.readouterr().out

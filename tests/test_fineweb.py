"""FineWeb quality rules: each threshold on both sides, the chain, and datatrove agreement."""

from __future__ import annotations

import gzip
import importlib.util
import itertools
import json
from pathlib import Path

import pytest

from filters.base import Document
from filters.fineweb import FineWebQuality
from filters.registry import CHAINS, build_filter, expand

REPO = Path(__file__).resolve().parent.parent


def sentence(i: int) -> str:
    """A distinct line of 8 words, longer than 30 characters, ending with a full stop."""
    return f"Line number {i} tells the reader something new today."


def check(text: str, **params: object) -> str | None:
    return FineWebQuality(**params).check(text)


def test_empty_and_blank_pages() -> None:
    assert check("") == "empty"
    assert check(" \n\t\n") == "empty"


def test_line_punct_ratio_both_sides() -> None:
    # 1 of 8 non-empty lines ends in terminal punctuation: 0.125 >= 0.12 keeps; 1 of 9 (0.111) drops
    keep = "\n".join([sentence(0)] + [sentence(i)[:-1] + " and more words" for i in range(1, 8)])
    assert check(keep, new_line_ratio=None) is None
    drop = keep + "\nanother line without an end mark here"
    assert check(drop) == "line_punct_ratio"
    assert check(drop, line_punct_thr=0.1, new_line_ratio=None) is None
    no_marks = "\n".join(sentence(i)[:-1] + " trailing words" for i in range(5))
    assert check(no_marks) == "line_punct_ratio"
    assert check(no_marks, line_punct_exclude_zero=True, new_line_ratio=None) is None
    assert check("Fin du texte？", stop_chars=["!"]) == "line_punct_ratio"


def test_short_line_ratio_both_sides() -> None:
    # 2 long lines and 4 short ones: 4/6 = 0.667 <= 0.67 keeps; 5/7 = 0.714 drops
    keep = "\n".join([sentence(0), sentence(1)] + [f"Short {i}." for i in range(4)])
    assert check(keep, new_line_ratio=None) is None
    drop = keep + "\nShort 9."
    assert check(drop) == "short_line_ratio"
    assert check(drop, short_line_length=5, new_line_ratio=None) is None


def test_char_dup_ratio_both_sides() -> None:
    body = "\n".join(sentence(i) for i in range(200))  # 10,490 characters without newlines
    one, three = sentence(3), "\n".join(sentence(i) for i in range(3))
    assert check(f"{body}\n{one}", new_line_ratio=None) is None  # 51 / 10,541 = 0.5%
    assert check(f"{body}\n{three}") == "char_dup_ratio"  # 153 / 10,643 = 1.4%
    assert check(f"{body}\n{three}", char_duplicates_ratio=0.02, new_line_ratio=None) is None


def test_list_ratio_both_sides() -> None:
    # "Item 3." is 3 words: 10 such lines hold 9 newlines / 30 words = 0.3 (keeps); one more newline drops
    listing = "\n".join(f"Item {i}." for i in range(10))
    assert check(listing, short_line_thr=None) is None
    assert check(listing + "\n", short_line_thr=None) == "list_ratio"
    assert check(listing + "\n", short_line_thr=None, new_line_ratio=0.4) is None
    assert check("\n".join(sentence(i) for i in range(10))) is None


def test_registry_name_and_fineweb_chain() -> None:
    doc = Document(id="1", text="\n".join(sentence(i) for i in range(5)), source="web")
    assert build_filter("fineweb_quality")(doc).keep
    verdict = build_filter("fineweb_quality", {"short_line_length": 100})(doc)
    assert (verdict.keep, verdict.reason) == (False, "fineweb_quality.short_line_ratio")
    assert [n for n, _ in expand([("fineweb", {})])] == CHAINS["fineweb"]
    assert CHAINS["fineweb"] == ["gopher_repetition", "gopher_quality", "fineweb_quality"]


@pytest.mark.bench
def test_same_decisions_as_datatrove_on_web_slice(corpora) -> None:
    pytest.importorskip("datatrove")
    pytest.importorskip("spacy")
    spec = importlib.util.spec_from_file_location("datatrove_peer", REPO / "bench" / "datatrove_peer.py")
    assert spec and spec.loader
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    theirs = peer.load()["fineweb"]
    ours = FineWebQuality()
    with gzip.open(corpora / "web.jsonl.gz", "rt", encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in itertools.islice(fh, 60)]
    for text in texts:
        keep, reason, _ = peer.decide(theirs, text)
        assert ours.check(text) == reason and (reason is None) == keep

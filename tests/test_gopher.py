"""Gopher quality and repetition rules: each threshold on both sides, the word split, and datatrove agreement."""

from __future__ import annotations

import gzip
import importlib.util
import itertools
import json
from pathlib import Path

import pytest

from filters.base import Document
from filters.gopher import GopherQuality, GopherRepetition
from filters.registry import CHAINS, build_filter, expand
from filters.text import (
    NgramKeys,
    duplicate_ngram_chars,
    duplicate_ngram_chars_keyed,
    find_duplicates,
    repeated_positions,
    words,
)

REPO = Path(__file__).resolve().parent.parent
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima",
         "mike", "november", "oscar")


def prose(n_words: int, seed: str = "") -> str:
    """Prose of n_words words with two stop words; every word but those four differs (and between seeds)."""
    base = [f"{w}{seed}{i}" for i, w in enumerate(itertools.islice(itertools.cycle(WORDS), n_words - 4))]
    return " ".join(["the", "cat", "and", "the", *base]) + "."


def quality(text: str, **params: object) -> str | None:
    return GopherQuality(**params).check(text)


def test_words_split_like_spacy_english() -> None:
    assert list(words("Don't stop, U.S. e.g. well-known $10.50 (I'm) 10km end... :)")) == [
        "Do", "n't", "stop", ",", "U.S.", "e.g.", "well", "-", "known", "$", "10.50", "(", "I", "'m", ")",
        "10", "km", "end", "...", ":)"]
    assert list(words("see http://example.com/a?b=1 now")) == ["see", "http://example.com/a?b=1", "now"]


def test_word_count_both_sides() -> None:
    assert quality(prose(50)) is None
    assert quality(prose(49)) == "short_doc"
    assert quality(prose(60), max_doc_words=59) == "long_doc"
    assert quality(prose(60), max_doc_words=60) is None
    assert quality("") == "short_doc"


def test_mean_word_length_both_sides() -> None:
    short = " ".join(["the", "and"] + ["ab"] * 60)
    assert quality(short) == "below_avg_threshold"
    assert quality(short, min_avg_word_length=2) is None
    long_words = " ".join(["the", "and"] + [f"extraordinarily{i}" for i in range(60)])
    assert quality(long_words) == "above_avg_threshold"
    assert quality(long_words, max_avg_word_length=None) is None


def test_hash_and_ellipsis_ratio() -> None:
    base = prose(60)  # 61 tokens: 60 words and a full stop
    assert quality(base + " #" * 6) is None  # 6 / 67 <= 0.1
    assert quality(base + " #" * 7) == "too_many_hashes"  # 7 / 68 > 0.1
    assert quality(base + " #tag" * 9) == "too_many_hashes"
    assert quality(base + " wait..." * 9) == "too_many_ellipsis"
    assert quality(base + " wait…" * 9 + " end.", max_symbol_word_ratio=0.5) is None


def test_bullet_and_end_ellipsis_lines() -> None:
    bullets = "\n".join(f"- {prose(12, str(i))}" for i in range(10))
    assert quality(bullets) == "too_many_bullets"
    assert quality(bullets, max_bullet_lines_ratio=1.0) is None
    mixed = "\n".join([prose(30, "a")] + [f"• {prose(12, str(i))}" for i in range(8)] + [prose(30, "b")])
    assert quality(mixed) is None  # 80% bullets <= 90%
    trailing = "\n".join([prose(20, str(i)) + ".." for i in range(4)] + [prose(20, f"b{i}") for i in range(6)])
    assert quality(trailing) == "too_many_end_ellipsis"  # 40% of lines end with "..."
    assert quality(trailing, max_ellipsis_lines_ratio=0.4) is None


def test_alpha_ratio_and_stop_words() -> None:
    numbers = prose(60) + " " + " ".join(str(1000 + i) for i in range(20))
    assert quality(numbers) == "below_alpha_threshold"  # 62 of 82 words have a letter
    assert quality(numbers, min_alpha_words_ratio=0.7) is None
    no_stop = " ".join(f"{w}{i}" for i, w in enumerate(itertools.islice(itertools.cycle(WORDS), 60)))
    assert quality(no_stop) == "enough_stop_words"
    assert quality(no_stop + " the with") is None
    assert quality(no_stop + " The With") == "enough_stop_words"  # case-sensitive, as datatrove


def repetition(text: str, **params: object) -> str | None:
    return GopherRepetition(**params).check(text)


def test_duplicate_paragraphs_and_lines() -> None:
    paras = [prose(20, str(i)) for i in range(6)]
    assert repetition("\n\n".join(paras)) is None
    assert repetition("\n\n".join(paras + paras[:3])) == "dup_para_frac"  # 3/9 > 0.3
    assert repetition("\n\n".join(paras + paras[:2])) == "dup_para_char_frac"  # 2/8 ok, chars ~25% > 20%
    assert repetition("\n\n".join(paras + paras[:2]), dup_para_char_frac=0.3, dup_line_char_frac=0.3,
                      dup_n_grams=[]) is None
    lines = [prose(20, str(i)) for i in range(6)]
    assert repetition("\n".join(lines + lines[:3])) == "dup_line_frac"
    assert repetition("\n".join(lines + lines[:3]), dup_line_frac=0.4, dup_line_char_frac=0.4,
                      dup_n_grams=[]) is None
    assert repetition("") == "empty"


def test_top_and_duplicated_ngrams() -> None:
    spam = prose(60) + " buy now" * 20  # "buy now" x 20 = 140 of 560 characters
    assert repetition(spam) == "top_2_gram"
    assert repetition(spam, top_n_grams=[(2, 0.5)], dup_n_grams=[]) is None
    dup = prose(60) + " " + " ".join(WORDS[:6]) + " " + " ".join(WORDS[:6])
    assert repetition(dup, top_n_grams=[]) is None
    loud = prose(40) + (" " + " ".join(WORDS[:10])) * 3
    assert repetition(loud, top_n_grams=[]) == "duplicated_5_n_grams"
    assert repetition(loud, top_n_grams=[], dup_n_grams=[(5, 0.9)]) is None


def test_duplicate_helpers_match_the_reference_definition() -> None:
    assert find_duplicates(["a", "bb", "a", "bb", "c"]) == (2, 3)
    grams = ["ab", "cd", "ab", "ab", "ef", "cd"]
    assert repeated_positions(grams) == [2, 3, 5]
    # at 2 "ab" repeats -> +2, jump to 4; "ef" new; "cd" repeats -> +2
    assert duplicate_ngram_chars(grams, 2) == 4


def test_hashed_ngram_keys_agree_with_strings() -> None:
    tokens = list(words(" ".join([prose(40, "a"), " ".join(WORDS[:9]), prose(30, "b"), " ".join(WORDS[:9])] * 3)))
    index = NgramKeys(tokens)
    for n in range(1, 11):
        grams = ["".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
        exact = duplicate_ngram_chars(grams, n)
        assert exact > 0
        assert duplicate_ngram_chars_keyed(index, n, 10**6, -1.0) == exact
        assert duplicate_ngram_chars_keyed(index, n, 10**6, 1.0) <= 10**6  # early bound within the limit


def test_registry_names_and_chains() -> None:
    doc = Document(id="1", text=prose(80), source="web")
    assert build_filter("gopher_quality")(doc).keep
    assert build_filter("gopher_repetition")(doc).keep
    verdict = build_filter("gopher_quality", {"min_doc_words": 100})(doc)
    assert (verdict.keep, verdict.reason) == (False, "gopher_quality.short_doc")
    assert [n for n, _ in expand([("gopher", {})])] == CHAINS["gopher"] == ["gopher_repetition", "gopher_quality"]


def load_peer():
    """bench/datatrove_peer.py, or skip when datatrove (bench extra) is not installed."""
    pytest.importorskip("datatrove")
    pytest.importorskip("spacy")
    spec = importlib.util.spec_from_file_location("datatrove_peer", REPO / "bench" / "datatrove_peer.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def web_slice(corpora, n: int) -> list[str]:
    with gzip.open(corpora / "web.jsonl.gz", "rt", encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in itertools.islice(fh, n)]


@pytest.mark.bench
def test_same_decisions_as_datatrove_on_web_slice(corpora) -> None:
    peer = load_peer()
    flts = peer.load()
    ours = {"gopher_quality": GopherQuality(), "gopher_repetition": GopherRepetition()}
    for text in web_slice(corpora, 30):
        for key, rule in ours.items():
            keep, reason, _ = peer.decide(flts[key], text)
            mine = rule.check(text)
            assert (mine is None) == keep
            assert (mine or None) == (reason and reason.removeprefix("gopher_"))

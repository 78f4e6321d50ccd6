"""filters.langdetect_fast gives langdetect's numbers bit for bit: every language probability of every trial sum,
on real pages of every shared corpus (400+ languages, code, papers) and on hand-made edge cases."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from langdetect import DetectorFactory, detector_factory
from langdetect.lang_detect_exception import LangDetectException

from filters.langdetect_fast import _fast_class

EDGE_TEXTS = ["", "12345 67890", "Hello", "HELLO WORLD THIS IS LOUD", "ÀÉÎÕÜ àéîõü", "mail me at a@b.org",
              "see https://example.org/page?x=1 now", "Ελληνικά και English mixed 漢字 かな カナ", "a" * 20000,
              "  spaced   out   words  ", "Der Ausschuss wird sich nächste Woche erneut treffen."]


def _pages(corpora: Path, per_corpus: int) -> list[str]:
    pages = list(EDGE_TEXTS)
    for name in ("web", "multilingual", "code", "papers", "wiki"):
        with gzip.open(corpora / f"{name}.jsonl.gz", "rt", encoding="utf-8") as f:
            pages += [json.loads(line)["text"] for _, line in zip(range(per_corpus), f, strict=False)]
    return pages


def _langprob(detector: object, text: str) -> list[float] | str:
    detector.append(text)  # type: ignore[attr-defined]
    try:
        detector._detect_block()  # type: ignore[attr-defined]
    except LangDetectException as err:
        return f"exception: {err}"
    return list(detector.langprob)  # type: ignore[attr-defined]


@pytest.mark.parametrize("seed", [0, 7])
def test_probabilities_are_langdetects_bit_for_bit(corpora: Path, seed: int) -> None:
    detector_factory.init_factory()
    factory = detector_factory._factory
    DetectorFactory.seed = seed
    fast = _fast_class()
    checked = 0
    for text in _pages(corpora, 30):
        reference = _langprob(factory.create(), text)
        assert _langprob(fast(factory), text) == reference, text[:80]
        checked += isinstance(reference, list)
    DetectorFactory.seed = 0
    assert checked > 100

"""Mixlab's C4/mC4 rules agree with the TFDS reference functions (``tensorflow_datasets.text.c4_utils``).

The issue's bar: keep/drop agreement >= 99.5 % of documents, same cleaned text for >= 99 % of pages both
keep. ``clean_page`` runs on the whole web corpus (about 15 s); the langdetect chain, URL + line dedup and
the mC4 rules run on fixed slices. Whole-file figures for every check: ``docs/c4.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow_datasets", reason="needs tensorflow-datasets (pip install -e '.[dev]')")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.c4_conformance import (
    Figures,
    check_clean,
    check_dedup,
    check_doc_chain,
    check_mc4_doc_rules,
    load_docs,
)


def assert_conforms(fig: Figures, min_kept: int) -> None:
    print(f"\n{fig.check}: {fig.keep_agree}/{fig.docs} keep/drop, {fig.text_agree}/{fig.kept_both} text, "
          f"disagreements {dict(fig.classes)}")
    assert fig.kept_both >= min_kept, "slice too easy: too few pages survive to compare texts"
    assert fig.keep_rate >= 0.995
    assert fig.text_rate >= 0.99


@pytest.fixture(scope="module")
def web(corpora: Path) -> list:
    return load_docs(corpora / "web.jsonl.gz")


def test_clean_page_agrees_on_the_whole_web_corpus(web: list) -> None:
    fig = check_clean(web)
    assert fig.docs == 6975
    assert_conforms(fig, min_kept=6000)


def test_length_clean_langdetect_badwords_agree_on_a_slice(web: list) -> None:
    # c4/diffusion pages are English C4 text (mostly kept); wcxb pages mix languages (mostly dropped).
    fig = check_doc_chain(web[4000:4150] + web[6200:6300])
    assert_conforms(fig, min_kept=100)


def test_url_and_line_dedup_agree_on_a_slice_with_duplicate_urls(web: list) -> None:
    # 3850-4050 holds the dated WARC captures of one URL; 6000-6020 and 6500-6520 repeat wcxb URLs.
    fig = check_dedup(web[3850:4050] + web[6000:6020] + web[6500:6520])
    assert_conforms(fig, min_kept=150)


def test_mc4_paragraph_cld3_badwords_agree_on_a_slice(corpora: Path) -> None:
    docs = load_docs(corpora / "multilingual.jsonl.gz", source="multilingual")
    fig = check_mc4_doc_rules(docs[::10])
    assert_conforms(fig, min_kept=20)

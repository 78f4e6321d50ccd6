"""C4 and mC4 rules on tiny hand-made pages: each rule, TFDS's ordering subtleties, the constants."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from filters import registry
from filters.badwords import (
    TFDS_LIST_NAMES,
    BadWordsFilter,
    BadWordsMatcher,
    compile_badwords,
    load_badwords,
    soft_keep,
)
from filters.base import Document, run_chain
from filters.c4 import (
    C4Cleaner,
    C4EnglishLangdetect,
    C4Length,
    count_sentences,
    lacks_end_mark,
    normalize_url,
    strip_citations,
)
from filters.mc4 import Cld3LanguageId, ParagraphFilter

GOOD = "The cat sat on the warm mat today."
GOOD2 = "Then the dog came in and sat down too."
GOOD3 = "They both slept there until the evening came."


def doc(text: str, url: str | None = None, **meta: object) -> Document:
    return Document("d1", text, "web", url, dict(meta))


def page(*lines: str) -> str:
    return "\n".join(lines)


def test_clean_keeps_only_lines_passing_every_line_rule() -> None:
    text = page(GOOD, "Menu", "Read more...", "Please enable JavaScript in your browser now.",
                "This site uses cookies to give you a better time.", "x" * 1001 + " is a long word here.",
                GOOD2, GOOD3)
    verdict = C4Cleaner()(doc(text))
    assert verdict.keep
    assert verdict.text == page(GOOD, GOOD2, GOOD3)


def test_edits_name_each_line_reason() -> None:
    text = page(GOOD, "Menu", "Too few words here.", "Please enable JavaScript in your browser now.",
                "This site uses cookies to give you a better time.", "x" * 1001 + " tail words are here.",
                GOOD2, GOOD3)
    edits = C4Cleaner()(doc(text)).edits
    assert edits == {"c4.no_endmark": 4, "c4.too_short": 19, "c4.javascript": 45, "c4.policy": 49,
                     "c4.too_long_word": 1022}


def test_ellipsis_is_no_end_mark_but_quote_is() -> None:
    assert lacks_end_mark("And then he left...")
    assert lacks_end_mark("No mark at all")
    assert not lacks_end_mark('He said "go home."')
    assert not lacks_end_mark('He said "go home"')
    assert not lacks_end_mark("Is it?")


def test_citation_markers_stripped_before_the_end_mark_test() -> None:
    assert strip_citations("Paris is big.[1][citation needed][edit][]") == "Paris is big."
    cleaned = C4Cleaner()(doc(page("Paris is a very big city.[12]", GOOD2, GOOD3)))
    assert cleaned.text == page("Paris is a very big city.", GOOD2, GOOD3)
    assert cleaned.edits == {"c4.citation": 4}
    # The line is stripped before the citation goes, so a space left behind hides the end mark (as TFDS).
    spaced = C4Cleaner()(doc(page("Paris is a very big city. [12]", GOOD, GOOD2, GOOD3)))
    assert spaced.text == page(GOOD, GOOD2, GOOD3)


def test_curly_bracket_drops_the_page_only_on_a_line_that_passed_the_line_rules() -> None:
    assert C4Cleaner()(doc(page(GOOD, "if (x) { y }", GOOD2, GOOD3))).keep  # no end mark: line rule first
    assert C4Cleaner()(doc(page(GOOD, "a { b;", GOOD2, GOOD3))).keep  # too short
    verdict = C4Cleaner()(doc(page(GOOD, "The function body is { return x; } here.", GOOD2, GOOD3)))
    assert (verdict.keep, verdict.reason) == (False, "c4.curly_bracket")


def test_javascript_line_goes_before_the_curly_bracket_test() -> None:
    verdict = C4Cleaner()(doc(page(GOOD, "Our javascript code is { like this } today.", GOOD2, GOOD3)))
    assert verdict.keep and verdict.edits == {"c4.javascript": 43}


def test_lorem_ipsum_drops_the_page() -> None:
    verdict = C4Cleaner()(doc(page(GOOD, "Lorem ipsum dolor sit amet, consectetur.", GOOD2, GOOD3)))
    assert (verdict.keep, verdict.reason) == (False, "c4.lorem_ipsum")
    assert C4Cleaner()(doc(page(GOOD, "lorem ipsum", GOOD2, GOOD3))).keep  # too short: dropped as a line


def test_too_few_sentences_uses_punkt_and_min_words_is_configurable() -> None:
    verdict = C4Cleaner()(doc(page(GOOD, GOOD2)))
    assert (verdict.keep, verdict.reason) == (False, "c4.too_few_sentences")
    assert C4Cleaner()(doc(page(GOOD + " " + GOOD2 + " " + GOOD3))).keep  # one line, three sentences
    assert not C4Cleaner()(doc(page("Mr. Smith went to Washington today.", GOOD))).keep  # "Mr." no split
    assert C4Cleaner(min_num_sentences=2)(doc(page(GOOD, GOOD2))).keep
    assert C4Cleaner(min_words_per_line=9)(doc(page(GOOD, GOOD2, GOOD3))).reason == "c4.too_few_sentences"
    assert count_sentences("One here. Two there. Three.") == 3
    assert count_sentences("One here. Two there. Three.", at_most=2) == 2


def test_unchanged_page_returns_no_text_and_lines_are_stripped() -> None:
    text = page(GOOD, GOOD2, GOOD3)
    assert C4Cleaner()(doc(text)).text is None
    assert C4Cleaner()(doc("  " + GOOD + "  \n\n" + GOOD2 + "\r\n" + GOOD3)).text == text


def test_length_cap_is_190000_chars() -> None:
    assert C4Length()(doc("a" * 190_000)).keep
    verdict = C4Length()(doc("a" * 190_001))
    assert (verdict.keep, verdict.reason) == (False, "c4.too_long_page")
    assert not C4Length(max_length=10)(doc("a" * 11)).keep


def test_normalize_url_as_tfds() -> None:
    assert normalize_url("https://www.example.com/a/b/") == "example.com/a/b"
    assert normalize_url("http://example.com/x?utm_source=y&z=1") == "example.com/x"
    assert normalize_url("http://example.com/x?refresh=1") == "example.com/x"
    assert normalize_url("http://example.com/x?id=1") == "example.com/x?id=1"
    assert normalize_url("http://a.com/redirect?to=https://www.b.com/") == "a.com/redirect?to=b.com"


def test_langdetect_keeps_confident_english_and_tags_lang() -> None:
    english = "The committee will meet again next week to discuss the budget for the new school year."
    verdict = C4EnglishLangdetect()(doc(english))
    assert verdict.keep and verdict.tags["lang"] == "en" and verdict.tags["lang_score"] >= 0.99
    german = "Der Ausschuss wird sich nächste Woche erneut treffen, um den Haushalt zu besprechen."
    dropped = C4EnglishLangdetect()(doc(german))
    assert (dropped.keep, dropped.reason, dropped.tags["lang"]) == (False, "c4.ignored_language", "de")
    assert C4EnglishLangdetect()(doc("12345 67890")).reason == "c4.langdetect_exception"


def test_badwords_word_boundaries_allowlist_and_missing_language(tmp_path) -> None:
    words = load_badwords(["en", "ja", "zh"])
    assert "sm" not in words["ja"] and "性" not in words["zh"] and "anal" in words["en"]
    en = compile_badwords("en", words["en"])
    assert en.search("the anal exam") and not en.search("analysis of data")
    assert compile_badwords("zh", ["坏"]).search("这是坏的")  # no word boundary for zh
    with pytest.raises(FileNotFoundError, match="'xx'"):
        BadWordsFilter(langs=["xx"])
    with pytest.raises(FileNotFoundError, match="en"):
        BadWordsFilter(wordlist_dir=str(tmp_path))


EDGE_PAGES = ["anal", "the anal exam.", "analysis", "_anal_", "x anal\n", "2 girls 1 cup", "2 girls 1 cups",
              "two girls 1 cup", "so a$$ hole", "a$$", "ba$$", "blow  job", "blow job", "blow job_", "(blow job)",
              "", " ", "  ", "é anal é", "anal" * 3, "anal-anal", "\nanal"]


def test_badwords_matcher_answers_as_the_tfds_regex(corpora: Path) -> None:
    """The fast matcher against TFDS's regex, every language's list: real pages of every shared corpus (400+
    languages) and hand-made boundary cases, the empty entry included."""
    pages = list(EDGE_PAGES)
    for name in ("web", "multilingual", "code", "wiki"):
        with gzip.open(corpora / f"{name}.jsonl.gz", "rt", encoding="utf-8") as f:
            pages += [json.loads(line)["text"].lower() for _, line in zip(range(80), f, strict=False)]
    lists = load_badwords(sorted({n.split("-")[0] for n in TFDS_LIST_NAMES}))
    lists["xx"] = frozenset({"", "a$$", "blow job"})  # the empty entry matches between two non-word characters
    matched = 0
    for lang, words in lists.items():
        regex, matcher = compile_badwords(lang, words), BadWordsMatcher(lang, words)
        expected = [regex.search(p) is not None for p in pages]
        assert [matcher.search(p) for p in pages] == expected, lang
        matched += sum(expected)
    assert matched > 300  # the pages do hit the lists


def test_badwords_filter_uses_the_page_language_and_lowercases() -> None:
    flt = BadWordsFilter(langs="all")
    assert flt(doc("This is an ANAL exam.", lang="en")).reason == "c4.badwords"
    assert flt(doc("This is an ANAL exam.", lang="und")).keep  # no list for und: passes
    assert flt(doc("Nothing to see here.", lang="en")).keep
    assert flt(doc("Das ist ein arsch.", lang="de")).reason == "c4.badwords"


def test_soft_badwords_keep_exactly_the_tfds_url_hash_share() -> None:
    num, den = (0.999).as_integer_ratio()
    urls = [f"https://www.site{i}.com/page/" for i in range(4000)]
    expected = {u for u in urls if int(hashlib.md5(normalize_url(u).encode()).hexdigest(), 16) % den >= num}
    flt = BadWordsFilter(fraction=0.999)
    kept = {u for u in urls if flt(doc("an anal exam", url=u, lang="en")).keep}
    assert kept == expected and 0 < len(kept) < 20
    assert not soft_keep(doc("x", url="https://a.com"), *(1.0).as_integer_ratio())
    assert soft_keep(doc("x", url="https://a.com"), *(0.0).as_integer_ratio())


def test_paragraph_filter() -> None:
    long = "w" * 200
    assert ParagraphFilter()(doc(page(long, long, long, "short"))).keep
    assert ParagraphFilter()(doc(page(long, long))).reason == "mc4.too_few_paragraphs"
    assert ParagraphFilter()(doc(page(long, long, "w" * 199, "x"))).reason == "mc4.short_paragraphs"
    assert ParagraphFilter(min_paragraphs=2, min_paragraph_len=5)(doc(page("hello", "world"))).keep


def _tfds_paragraph_filter():
    """TFDS's own ``paragraph_filter`` (it needs no TensorFlow: only Beam, for its counters)."""
    pytest.importorskip("tensorflow_datasets", reason="needs tensorflow-datasets (pip install -e '.[dev]')")
    from tensorflow_datasets.text import c4_utils

    return lambda text, **kw: c4_utils.paragraph_filter(
        c4_utils.PageFeatures(url="http://x.org/", normalized_url="x.org", text=text), **kw)


PARAGRAPH_PAGES = [
    page("w" * 200, "w" * 200, "w" * 200, "s"),
    page("w" * 200, "w" * 200, "w" * 199, "x"),
    page("w" * 200, "w" * 200),
    page("w" * 200),
    page("w" * 200, "w" * 200, "w" * 200, "a", "b"),  # 5 lines, only 3 long
    page("w" * 200, "w" * 200, "w" * 200, "w" * 200, "w" * 200),
    page("w" * 300, "w" * 250, "w" * 200, "w" * 10, "", "w" * 199),
    page("w" * 5, "w" * 5),
    "",
]


@pytest.mark.parametrize("min_paragraphs", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("min_paragraph_len", [5, 200])
def test_paragraph_filter_matches_tfds_for_any_min_paragraphs(min_paragraphs: int, min_paragraph_len: int) -> None:
    # TFDS: len(lines) < min_paragraphs or min(heapq.nlargest(3, lengths)) < min_paragraph_len -- always 3.
    tfds = _tfds_paragraph_filter()
    ours = ParagraphFilter(min_paragraphs=min_paragraphs, min_paragraph_len=min_paragraph_len)
    for text in PARAGRAPH_PAGES:
        expected = tfds(text, min_paragraphs=min_paragraphs, min_paragraph_len=min_paragraph_len)
        assert ours(doc(text)).keep == expected, (min_paragraphs, min_paragraph_len, text[:40])


def test_paragraph_filter_long_paragraphs_is_an_explicit_option() -> None:
    five = page("w" * 200, "w" * 200, "w" * 200, "a", "b")
    assert ParagraphFilter(min_paragraphs=5)(doc(five)).keep  # TFDS: 5 lines, the 3 longest >= 200
    strict = ParagraphFilter(min_paragraphs=5, long_paragraphs=5)  # every one of 5 lines >= 200
    assert strict(doc(five)).reason == "mc4.short_paragraphs"
    assert ParagraphFilter(long_paragraphs=1)(doc(page("w" * 200, "a", "b"))).keep
    with pytest.raises(ValueError, match="long_paragraphs"):
        ParagraphFilter(long_paragraphs=0)


def test_cld3_langid_tags_unknown_and_filters_languages() -> None:
    german = ("Der Ausschuss wird sich nächste Woche erneut treffen, um den Haushalt für das neue Schuljahr "
              "zu besprechen. Alle Mitglieder sind eingeladen.")
    verdict = Cld3LanguageId()(doc(german))
    assert verdict.keep and verdict.tags["lang"] == "de" and verdict.tags["lang_score"] >= 0.95
    short = Cld3LanguageId()(doc("Hallo Welt"))
    assert short.keep and short.tags["lang"] == "und"  # under 100 bytes: unreliable
    assert Cld3LanguageId(langs=["fr"])(doc(german)).reason == "mc4.ignored_language"
    assert Cld3LanguageId(langs=["fr"], keep_unknown=False)(doc("Hallo Welt")).reason == "mc4.unknown_language"


def test_registry_names_and_chains_build() -> None:
    assert registry.CHAINS["c4"] == ["c4_length", "c4_url_dedup", "c4_clean", "c4_line_dedup",
                                     "c4_langdetect", "c4_badwords"]
    for name in ("c4_length", "c4_clean", "c4_langdetect", "c4_badwords", "mc4_badwords", "mc4_paragraph",
                 "mc4_langid"):
        assert registry.build_filter(name).name in (name, "c4_badwords")
    mc4_bad = registry.build_filter("mc4_badwords")
    assert mc4_bad.fraction == 0.999 and "zh" in mc4_bad._matchers
    chain = [registry.build_filter(n) for n in ("c4_length", "c4_clean")]
    assert run_chain(doc(page(GOOD, GOOD2, GOOD3)), chain).doc is not None

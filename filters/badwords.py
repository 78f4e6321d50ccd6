"""The LDNOOBW bad-words page filter exactly as TFDS C4/mC4 (``c4_utils.get_badwords_filter_fn``).

One regex per language over the lower-cased page: ``(?:\\W|^)(w1|w2|...)(?:\\W|$)``, without word boundaries
for ``ja``, ``th`` and ``zh``. English C4 drops every page with a match (``fraction=1.0``); mC4 drops 99.9 %
of them (``fraction=0.999``): a matching page is kept when ``md5(normalize_url(url)) % d >= n`` where
``n / d = float(fraction).as_integer_ratio()``, the same pages TFDS keeps.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import Field

from filters.base import KEEP, Document, Verdict, drop
from filters.c4 import normalize_url
from filters.params import check, params_model

# The word-list files TFDS downloads (``c4.py _BADWORDS_LANGS``); variants merge on the part before "-".
TFDS_LIST_NAMES = (
    "ar", "cs", "da", "de", "en", "eo", "es", "fa", "fi", "fil", "fr", "fr-CA-u-sd-caqc", "hi", "hu", "it",
    "ja", "kab", "ko", "nl", "no", "pl", "pt", "ru", "sv", "th", "tlh", "tr", "zh",
)
# Every language but English comes from this LDNOOBW commit ...
LISTS_COMMIT = "5faf2ba"
# ... English from this older one, "for reproducibility of the original C4".
EN_LIST_COMMIT = "25e679f"
# Words TFDS removes from the lists: common subwords that would filter > 10 % of pages of their language.
ALLOWLIST: Mapping[str, frozenset[str]] = {"ja": frozenset({"sm", "グロ", "女の子"}), "zh": frozenset({"性"})}
# Languages written without spaces: the regex matches anywhere, not between non-word characters.
NO_WORD_BOUNDARY = frozenset({"ja", "th", "zh"})
# mC4's soft filtering: the share of bad-word pages dropped.
MC4_FRACTION = 0.999


def default_wordlist_dir() -> Path:
    """``$MIXLAB_SHARED/wordlists/ldnoobw``, else ``../shared/wordlists/ldnoobw`` next to the repository."""
    shared = os.environ.get("MIXLAB_SHARED")
    root = Path(shared) if shared else Path(__file__).resolve().parent.parent.parent / "shared"
    return root / "wordlists" / "ldnoobw"


def list_files(lang: str, wordlist_dir: Path) -> list[Path]:
    """The files that make up a language's list (``fr`` is ``fr`` plus ``fr-CA-u-sd-caqc``)."""
    names = [n for n in TFDS_LIST_NAMES if n.split("-")[0] == lang] or [lang]
    return [wordlist_dir / (EN_LIST_COMMIT if n == "en" else LISTS_COMMIT) / n for n in names]


def load_badwords(langs: Iterable[str], wordlist_dir: Path | None = None) -> dict[str, frozenset[str]]:
    """Read each language's list as TFDS does (stripped lines, variants merged, allow-list removed)."""
    directory = Path(wordlist_dir) if wordlist_dir else default_wordlist_dir()
    words: dict[str, frozenset[str]] = {}
    for lang in langs:
        found: set[str] = set()
        for path in list_files(lang, directory):
            if not path.is_file():
                raise FileNotFoundError(
                    f"bad-words list for language {lang!r} not found: {path} (set wordlist_dir or "
                    "MIXLAB_SHARED; lists come from LDNOOBW at commits 25e679f (en) and 5faf2ba)")
            found.update(line.strip() for line in path.read_text(encoding="utf-8").splitlines())
        words[lang] = frozenset(found - ALLOWLIST.get(lang, frozenset()))
    return words


def compile_badwords(lang: str, words: Iterable[str]) -> re.Pattern[str]:
    """The TFDS regex for one language (sorted alternation, so the pattern is the same every run)."""
    alternation = "|".join(re.escape(w) for w in sorted(words))
    if lang in NO_WORD_BOUNDARY:
        return re.compile(alternation)
    return re.compile(rf"(?:\W|^)({alternation})(?:\W|$)")


_WORD_RUN = re.compile(r"\w+")
_WORD_CHAR = re.compile(r"\w")


class BadWordsMatcher:
    """Whether the TFDS regex (:func:`compile_badwords`) matches a lower-cased page, decided faster, same answer.

    The regex matches a listed word where the page holds it with a non-word character or an end of the page on
    each side. So a word made only of word characters matches exactly when it equals a maximal run of word
    characters of the page: one set lookup per run. Any other entry (phrases, symbols) can only match when every
    word-character run of it is a run of the page; only then are its occurrences found (``str.find``) and their
    two neighbours checked. Languages written without word boundaries use the regex itself.
    """

    def __init__(self, lang: str, words: Iterable[str]) -> None:
        words = sorted(words)
        self.regex = compile_badwords(lang, words) if lang in NO_WORD_BOUNDARY else None
        self.simple = frozenset(w for w in words if _WORD_RUN.fullmatch(w))
        self.others = [(w, frozenset(_WORD_RUN.findall(w))) for w in words if w not in self.simple]

    def search(self, text: str) -> bool:
        """True when the lower-cased ``text`` holds a listed word (as the TFDS regex says)."""
        if self.regex is not None:
            return self.regex.search(text) is not None
        runs = set(_WORD_RUN.findall(text))
        if not self.simple.isdisjoint(runs):
            return True
        return any(need <= runs and _bounded_occurrence(text, w) for w, need in self.others)


def _bounded_occurrence(text: str, word: str) -> bool:
    """``word`` occurs in ``text`` with a non-word character or an end of ``text`` on each side."""
    at = text.find(word)
    while at >= 0:
        end = at + len(word)
        if (at == 0 or not _WORD_CHAR.match(text, at - 1)) and (end == len(text) or not _WORD_CHAR.match(text, end)):
            return True
        at = text.find(word, at + 1)
    return False


def soft_keep(doc: Document, numerator: int, denominator: int) -> bool:
    """TFDS ``_badwords_predicate`` on md5(normalized URL); documents without a URL hash their id."""
    key = normalize_url(doc.url) if doc.url else doc.id
    return int(hashlib.md5(key.encode("utf-8")).hexdigest(), 16) % denominator >= numerator


@dataclass(slots=True)
class BadWordsFilter:
    """Drop pages containing a word of their language's LDNOOBW list (a ``fraction`` of them, by URL hash).

    The language is ``meta["lang"]`` (set by the language-ID step; ``default_lang`` when absent), cut at
    the first ``-`` as TFDS does; pages in a language without a list pass.
    """

    langs: Annotated[tuple[str, ...] | list[str] | str, Field(
        description="languages whose list applies; `all`: every TFDS language")] = ("en",)
    fraction: Annotated[float, Field(ge=0, le=1, description=(
        "share of matching pages dropped, chosen by URL hash as TFDS does (1: all; mC4: 0.999)"))] = 1.0
    wordlist_dir: Annotated[str | None, Field(description=(
        "LDNOOBW lists directory; default `$MIXLAB_SHARED/wordlists/ldnoobw`"))] = None
    default_lang: Annotated[str, Field(description="language of a page without `meta.lang`")] = "en"
    name: str = field(default="c4_badwords", init=False)
    _matchers: dict[str, BadWordsMatcher] = field(default_factory=dict, init=False, repr=False)
    _ratio: tuple[int, int] = field(default=(1, 1), init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"c4_badwords: fraction must be in [0, 1], got {self.fraction}")
        langs = self.langs
        if langs == "all":
            langs = sorted({n.split("-")[0] for n in TFDS_LIST_NAMES})
        elif isinstance(langs, str):
            langs = [langs]
        lists = load_badwords(langs, Path(self.wordlist_dir) if self.wordlist_dir else None)
        self._matchers = {lang: BadWordsMatcher(lang, words) for lang, words in lists.items()}
        self._ratio = float(self.fraction).as_integer_ratio()

    def __call__(self, doc: Document) -> Verdict:
        lang = str(doc.meta.get("lang") or self.default_lang).split("-")[0]
        matcher = self._matchers.get(lang)
        if matcher is None or not matcher.search(doc.text.lower()):
            return KEEP
        if soft_keep(doc, *self._ratio):
            return Verdict(True, tags={"badwords_soft_kept": True})
        return drop("c4.badwords")


BadWordsParams = params_model(BadWordsFilter, "BadWordsParams")
Mc4BadWordsParams = params_model(BadWordsFilter, "Mc4BadWordsParams",
                                 defaults={"langs": "all", "fraction": MC4_FRACTION},
                                 doc="The mC4 setting of the bad-words filter: every TFDS language, soft filtering.")


def mc4_badwords(**params: object) -> BadWordsFilter:
    """The mC4 setting: every TFDS language, soft filtering with fraction 0.999 (:data:`Mc4BadWordsParams`)."""
    return BadWordsFilter(**check(Mc4BadWordsParams, params, "mc4_badwords").model_dump())

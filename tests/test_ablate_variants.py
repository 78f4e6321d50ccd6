"""Experiment variants (mixtures/variants.py), the C4 switches they use, and the experiment statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from filters.base import Document
from filters.c4 import C4Cleaner
from mixtures import ablation_stats as st
from mixtures import scaling
from mixtures.chains import source_steps
from mixtures.spec import SpecError, load_spec
from mixtures.variants import RULE_SWITCHES, leave_one_out, parse_sweep, sweep, write_variants

GOOD = "The quick brown fox jumps over the lazy dog."
GOOD2 = "A second sentence follows with several more words."
GOOD3 = "Finally a third sentence closes this small page."


def _page(*lines: str) -> Document:
    return Document(id="p", source="web", text="\n".join(lines))


# ---- C4 switches: defaults decide as before, each switch turns its rule off ----------------------------------

@pytest.mark.parametrize(("line", "switch", "reason"), [
    ("Please enable javascript in your browser today.", "filter_javascript", None),
    ("The function body is { return x; } here.", "filter_curly_bracket", "c4.curly_bracket"),
    ("Lorem ipsum dolor sit amet, consectetur.", "filter_lorem_ipsum", "c4.lorem_ipsum"),
    ("This site uses cookies to improve your visit.", "filter_policy", None),
    ("A line without any end mark at all here", "filter_no_terminal_punct", None),
])
def test_each_c4_switch_turns_its_rule_off(line: str, switch: str, reason: str | None) -> None:
    doc = _page(GOOD, line, GOOD2, GOOD3)
    default = C4Cleaner()(doc)
    assert default.reason == reason  # None: the line is removed, the page kept
    assert line not in (default.text or "")
    off = C4Cleaner(**{switch: False})(doc)
    assert off.keep and line in (off.text or doc.text)  # None: the page is kept unchanged


def test_citation_switch_keeps_markers() -> None:
    doc = _page("Paris is a very big city.[12]", GOOD2, GOOD3)
    assert "[12]" not in C4Cleaner()(doc).text
    assert "[12]" in (C4Cleaner(remove_citations=False)(doc).text or doc.text)


def test_every_switch_is_a_parameter_of_its_rule() -> None:
    from filters.registry import build_filter

    for step, rules in RULE_SWITCHES.items():
        for _, _, params in rules:
            build_filter(step, params)  # raises on an unknown parameter


# ---- leave one out and sweeps -------------------------------------------------------------------------------

def test_leave_one_out_has_one_variant_per_rule(tmp_path: Path) -> None:
    variants = leave_one_out("mix_v1.yaml", "web")
    base = variants[0]
    assert base.baseline and base.name == "mix_v1"
    chain = [next(iter(e)) if isinstance(e, dict) else e for e in base.data["sources"]["web"]["filters"]]
    assert chain == ["c4_length", "c4_url_dedup", "c4_clean", "c4_line_dedup", "c4_langdetect", "c4_badwords"]
    assert len(variants) == 1 + 6 + len(RULE_SWITCHES["c4_clean"])
    paths = write_variants(variants, tmp_path, "mix_v1.yaml")
    original = source_steps(load_spec("mix_v1.yaml"), "web")
    assert source_steps(load_spec(paths[0]), "web") == original  # the expanded chain is the same chain
    js = load_spec(tmp_path / "mix_v1--no-c4_clean.javascript.yaml")
    assert js.name == "mix_v1--no-c4_clean.javascript"
    assert source_steps(js, "web")[2] == ("c4_clean", {"filter_javascript": False})
    no_lang = [n for n, _ in source_steps(load_spec(tmp_path / "mix_v1--no-c4_langdetect.yaml"), "web")]
    assert "c4_langdetect" not in no_lang and len(no_lang) == 5
    assert "# variant: without c4_clean: javascript" in Path(js.spec_path).read_text()
    assert source_steps(js, "wiki") == source_steps(load_spec("mix_v1.yaml"), "wiki")


def test_leave_one_out_picks_rules_and_names_unknown_ones() -> None:
    picked = leave_one_out("mix_v1.yaml", "web", rules=["javascript", "c4_badwords"])
    assert [v.name for v in picked] == ["mix_v1", "mix_v1--no-c4_clean.javascript", "mix_v1--no-c4_badwords"]
    with pytest.raises(SpecError, match="no rule nonsense"):
        leave_one_out("mix_v1.yaml", "web", rules=["nonsense"])
    with pytest.raises(SpecError, match="no source"):
        leave_one_out("mix_v1.yaml", "nowhere")


def test_sweep_values_are_yaml_and_may_hold_commas(tmp_path: Path) -> None:
    assert parse_sweep("a.b=1,null,mc4") == ("a.b", [1, None, "mc4"])
    _, values = parse_sweep("sources.web.filters=[c4],[mc4_paragraph, {mc4_langid: {langs: [en]}}]")
    assert values == [["c4"], ["mc4_paragraph", {"mc4_langid": {"langs": ["en"]}}]]
    with pytest.raises(ValueError, match="at least two values"):
        parse_sweep("a.b=1")
    variants = sweep("mix_v3.yaml", "sources.web.filters.2.quality.top_percent", [100, 25])
    assert [v.name for v in variants] == ["mix_v3--top_percent-100", "mix_v3--top_percent-25"]
    assert variants[0].baseline and not variants[1].baseline
    spec = load_spec(write_variants(variants, tmp_path, "mix_v3.yaml")[1])
    assert spec.sources["web"].filters[2].params == {"mode": "top_percentile", "top_percent": 25}
    recipe = sweep("mix_v1.yaml", "sources.web.filters.0", ["c4", "mc4"])
    assert recipe[1].data["sources"]["web"]["filters"] == ["mc4"]
    opened = sweep("mix_v1.yaml", "sources.wiki.filters.0.length.min_chars", [200, 1000])
    assert opened[1].data["sources"]["wiki"]["filters"][0] == {"length": {"min_chars": 1000}}
    with pytest.raises(SpecError, match="no entry 9"):
        sweep("mix_v1.yaml", "sources.web.filters.9", ["c4", "mc4"])
    # docs/ablations.md's C4-versus-mC4 sweep: a value longer than a line still writes a valid spec
    _, values = parse_sweep("sources.web.filters=[c4],[mc4_paragraph, c4_url_dedup, mc4_line_dedup, "
                            "{mc4_langid: {langs: [en], keep_unknown: false}}, mc4_badwords]")
    written = write_variants(sweep("mix_v1.yaml", "sources.web.filters", values), tmp_path / "mc4", "mix_v1.yaml")
    assert [s.name for s in load_spec(written[1]).sources["web"].filters][-2:] == ["mc4_langid", "mc4_badwords"]


# ---- statistics -------------------------------------------------------------------------------------------------

def _long(values: dict[str, list[float]], metric: str = "bpb_common/mean") -> pd.DataFrame:
    return pd.DataFrame([{"mix": m, "seed": s, "metric": metric, "value": v, "higher_is_better": False}
                         for m, vals in values.items() for s, v in enumerate(vals)])


def test_paired_effects_by_hand() -> None:
    table = _long({"base": [1.0, 2.0, 3.0], "var": [1.5, 2.5, 3.5], "same": [1.0, 2.0, 3.0]})
    effects = st.paired_effects(table, "base").set_index("variant")
    assert effects.loc["var", "effect"] == pytest.approx(0.5)
    assert effects.loc["var", "ci_low"] == pytest.approx(0.5) and effects.loc["var", "ci_high"] == pytest.approx(0.5)
    assert effects.loc["var", "p_better"] == 0.0  # higher bpb on every seed: never better
    assert effects.loc["same", "effect"] == 0.0 and effects.loc["same", "p_better"] == 0.5
    with pytest.raises(ValueError, match="baseline"):
        st.paired_effects(table, "missing")


def _wide(means: list[float], seeds: int, noise: float, rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame({f"m{i}": mean + noise * rng.standard_normal(seeds) for i, mean in enumerate(means)})


def test_size_agreement_on_synthetic_rankings() -> None:
    rng = np.random.default_rng(0)
    small = _wide([1.0, 2.0, 3.0, 4.0], 3, 0.01, rng)
    large = _wide([0.5, 1.0, 1.5, 2.0], 3, 0.01, rng)
    same = st.size_agreement(small, large)
    assert same["agreement"] == 1.0 and (same["ci_low"], same["ci_high"]) == (1.0, 1.0)
    assert same["pairs"] == 6
    flipped = st.size_agreement(small, _wide([2.0, 1.5, 1.0, 0.5], 3, 0.01, rng))
    assert flipped["agreement"] == 0.0 and flipped["ci_high"] == 0.0
    # m0 and m1 swap at the large size: 5 of 6 pairs agree
    one = st.size_agreement(small, _wide([1.0, 0.5, 1.5, 2.0], 3, 0.01, rng))
    assert one["agreement"] == pytest.approx(5 / 6)
    assert one["pair_agreement"]["m0 vs m1"] == 0.0 and one["pair_agreement"]["m2 vs m3"] == 1.0
    # seed noise as large as the gaps: the point may agree, the interval must say it is unsure
    noisy = st.size_agreement(_wide([1.0, 1.1, 1.2], 3, 0.3, rng), _wide([1.0, 1.1, 1.2], 3, 0.3, rng))
    assert noisy["ci_low"] < noisy["ci_high"] and noisy["ci_low"] <= noisy["agreement"] <= noisy["ci_high"]
    with pytest.raises(ValueError, match="two mixes"):
        st.size_agreement(small[["m0"]], large[["m0"]])


def test_size_agreements_table_over_sizes() -> None:
    results = {"tiny": _long({"a": [1.0, 1.1], "b": [2.0, 2.1]}), "small": _long({"a": [0.9, 1.0], "b": [0.5, 0.6]})}
    table = st.size_agreements(results, ["bpb_common/mean"])
    assert table.iloc[0][["size_a", "size_b", "agreement"]].tolist() == ["tiny", "small", 0.0]


def test_repetition_law_prices_repetition() -> None:
    fresh = st.repetition_law(1e8, {"web": (1e9, 1e9)})
    assert fresh["law_loss"] == pytest.approx(scaling.loss(1e8, 1e9, 1e9))
    repeated = st.repetition_law(1e8, {"web": (1e8, 1e9)})  # the same tokens from a tenth of the unique data
    assert repeated["law_loss"] > fresh["law_loss"]
    assert repeated["effective_tokens"] < 1e9
    two = st.repetition_law(1e8, {"web": (5e8, 5e8), "wiki": (5e8, 5e8)})
    assert two["effective_tokens"] == pytest.approx(1e9)


# ---- the common set of an experiment: the baseline's held-out documents no variant trained on ---------------

def _run(root: Path, name: str, rows: list[tuple[str, str, str | None]], texts: dict[str, str]) -> Path:
    """A fake run directory: catalogue rows (id, split, text key) for source web, cleaned texts of kept ones."""
    run = root / name
    (run / "catalogue" / "docs").mkdir(parents=True)
    (run / "docs" / "web").mkdir(parents=True)
    pd.DataFrame([{"source": "web", "id": i, "split": split} for i, split, _ in rows]).to_parquet(
        run / "catalogue" / "docs" / "part-00000.parquet")  # the docs table is written in parts
    pd.DataFrame([{"id": i, "text": texts[key]} for i, _, key in rows if key is not None]).to_parquet(
        run / "docs" / "web" / "part-0.parquet")
    return run


def test_reference_set_keeps_what_no_variant_trained_on(tmp_path: Path) -> None:
    from proxy_train.ablate import Mix, common_eval_set

    texts = {"a": "page a", "a+js": "page a\nenable javascript", "b": "page b", "c": "page c", "d": "page d"}
    base = _run(tmp_path, "base", [("a", "valid", "a"), ("b", "valid", "b"), ("c", "valid", "c"),
                                   ("d", "train", "d")], texts)
    # the variant keeps a with more lines (held out), removed b, trained on c
    variant = _run(tmp_path, "variant", [("a", "valid", "a+js"), ("b", None, None), ("c", "train", "c"),
                                         ("d", "train", "d")], texts)
    mixes = [Mix("base", base), Mix("variant", variant)]
    common = common_eval_set(mixes, reference="base")
    assert common.docs["web"] == [("a", "page a"), ("b", "page b")]  # baseline text; c leaked, d trained
    assert "1 more that some mix trained on" in common.notes["web"]
    assert "1 removed and 1 cleaned to other texts" in common.notes["web"]
    assert common_eval_set(mixes).docs == {}  # without a reference: no document has the same text everywhere
    with pytest.raises(ValueError, match="reference mix"):
        common_eval_set(mixes, reference="other")

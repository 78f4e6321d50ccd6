"""Step parameters and the spec file itself are checked at load time; every error names the file and the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from filters import registry
from filters.params import ParamError, StrictModel, is_internal
from mixtures.spec import SpecError, Step, load_spec

REPO = Path(__file__).resolve().parent.parent

SPEC = """
name: mix_params
data_root: {root}
output_dir: {out}
sources:
  web:
    paths: [web.jsonl.gz]
    filters:
      - {step}
"""


def _write(tmp_path: Path, corpora: Path, step: str = "length", extra: str = "") -> Path:
    path = tmp_path / "mix.yaml"
    path.write_text(SPEC.format(root=corpora, out=tmp_path / "runs", step=step) + extra, encoding="utf-8")
    return path


def _error(path: Path) -> str:
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert not (path.parent / "runs").exists()  # validation writes nothing
    return str(err.value)


MIXTURE = """
mixture:
  budget_tokens: {budget}
  sources:
    web: {{weight: {weight}}}
"""


@pytest.mark.parametrize(
    ("step", "extra", "expected"),
    [
        # unknown or mistyped step parameters, for document filters and corpus stages
        ("length: {min_char: 200}", "", "sources.web.filters.0.length.min_char: unknown parameter"),
        ("length: {min_chars: '200'}", "", "sources.web.filters.0.length.min_chars: Input should be a valid integer"),
        ("length: {min_chars: true}", "", "sources.web.filters.0.length.min_chars: Input should be a valid integer"),
        ("length: {min_chars: 2.5}", "", "sources.web.filters.0.length.min_chars: Input should be a valid integer"),
        ("length: {min_chars: -1}", "", "sources.web.filters.0.length.min_chars: Input should be greater than"),
        ("decontam: {policy: burn}", "", "sources.web.filters.0.decontam.policy: unknown policy 'burn'"),
        ("langid: {langs: [en], min_score: 2}", "", "sources.web.filters.0.langid.min_score: Input should be less"),
        ("pii: {kinds: [ssn]}", "", "sources.web.filters.0.pii.kinds.0: Input should be 'email', 'ip' or 'phone'"),
        ("gopher_repetition: {top_n_grams: 3}", "", "sources.web.filters.0.gopher_repetition.top_n_grams: "),
        ("minhash_dedup: {treshold: 0.8}", "", "sources.web.filters.0.minhash_dedup.treshold: unknown parameter"),
        ("minhash_dedup: {unit: bytes}", "", "sources.web.filters.0.minhash_dedup.unit: unknown unit 'bytes'"),
        ("minhash_dedup: {bands: 10}", "", "sources.web.filters.0.minhash_dedup: give both bands and rows"),
        ("exact_dedup: {normalise: {stemming: true}}", "",
         "sources.web.filters.0.exact_dedup.normalise.stemming: unknown parameter"),
        ("c4_line_dedup: {min_num_sentences: x}", "", "sources.web.filters.0.c4_line_dedup.min_num_sentences: "),
        ("quality: {mode: top}", "", "sources.web.filters.0.quality.mode: unknown mode 'top'"),
        # run-filled parameters are accepted from the run, not from a spec
        ("quality: {trained: abc}", "", "sources.web.filters.0.quality.trained: set by the run, not by a spec"),
        ("decontam: {index_path: x.npz}", "", "sources.web.filters.0.decontam.index_path: set by the run"),
        # a chain's params must be taken by some member
        ("c4: {min_chars: 5}", "", "sources.web.filters.0.c4.min_chars: unknown parameter; no step of chain c4"),
        ("c4: {min_num_sentences: '5'}", "", "sources.web.filters.0.c4.min_num_sentences: Input should be a valid"),
        ("gopher: {dup_line_frac: 2}", "", "sources.web.filters.0.gopher.dup_line_frac: Input should be less"),
        # non-finite numbers, anywhere
        ("quality: {threshold: .nan}", "", "sources.web.filters.0.quality.threshold: not a finite number"),
        ("length", MIXTURE.format(budget=100, weight=".inf"), "mixture.sources.web.weight: not a finite number"),
        ("length", MIXTURE.format(budget=100, weight="-.inf"), "mixture.sources.web.weight: not a finite number"),
        ("length", "seed: .nan\n", "seed: not a finite number"),
        # numbers given as strings
        ("length", MIXTURE.format(budget='"100"', weight=1),
         "mixture.budget_tokens: Input should be a valid integer, not the string '100'"),
        ("length", MIXTURE.format(budget=100, weight="'0.5'"), "mixture.sources.web.weight: Input should be a valid"),
        ("length", "seed: '3'\n", "seed: Input should be a valid integer"),
        # the spec's own sections are just as strict
        ("length", "dedup: {minhash: {threshold: 1.5}}\n", "dedup.minhash.threshold: Input should be less than 1"),
        ("length", "dedup: {minhash: {tresh: 0.5}}\n", "dedup.minhash.tresh: unknown key"),
        ("length", "pipeline: {shards_per_source: '2'}\n", "pipeline.shards_per_source: Input should be a valid"),
    ],
)
def test_bad_values_name_the_file_and_the_key(tmp_path: Path, corpora: Path, step: str, extra: str,
                                              expected: str) -> None:
    path = _write(tmp_path, corpora, step, extra)
    message = _error(path)
    assert str(path) in message and expected in message, message


def test_yaml_ints_are_accepted_for_floats(tmp_path: Path, corpora: Path) -> None:
    spec = load_spec(_write(tmp_path, corpora, "quality: {threshold: 1, top_percent: 50}",
                            MIXTURE.format(budget=100, weight=1) + "dedup: {minhash: {threshold: 0.8}}\n"))
    assert spec.mixture is not None and spec.mixture.sources["web"].weight == 1.0
    assert spec.sources["web"].filters[0].params == {"threshold": 1, "top_percent": 50}  # kept as written


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("name: a\nname: b\n", ":2: duplicate key 'name' (first given on line 1)"),
        (SPEC + "  web:\n    paths: [wiki.jsonl.gz]\n", ":10: duplicate key 'web' (first given on line 6)"),
        (SPEC.replace("- {step}", "- length: {{min_chars: 1, min_chars: 2}}"),
         ":9: duplicate key 'min_chars' (first given on line 9)"),
    ],
)
def test_duplicate_keys_are_errors_with_the_line(tmp_path: Path, corpora: Path, body: str, expected: str) -> None:
    path = tmp_path / "mix.yaml"
    path.write_text(body.format(root=corpora, out=tmp_path / "runs", step="length"), encoding="utf-8")
    message = _error(path)
    assert message.startswith(str(path)) and expected in message, message


def test_yaml_merge_keys_may_still_be_overridden(tmp_path: Path, corpora: Path) -> None:
    body = SPEC.format(root=corpora, out=tmp_path / "runs", step="length") + (
        "  wiki: &base\n    paths: [wiki.jsonl.gz]\n    limit: 5\n  papers:\n    <<: *base\n    limit: 7\n")
    path = tmp_path / "mix.yaml"
    path.write_text(body, encoding="utf-8")
    assert load_spec(path).sources["papers"].limit == 7


def test_a_spec_that_is_not_utf8_names_the_byte_offset(tmp_path: Path, corpora: Path) -> None:
    path = _write(tmp_path, corpora)
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"mix_params", b"mix_\xe9params"))  # Latin-1 e-acute
    message = _error(path)
    offset = raw.index(b"mix_params") + 4
    assert str(path) in message and "not UTF-8" in message and f"offset {offset}" in message, message


def test_chain_params_go_only_to_members_that_take_them(tmp_path: Path, corpora: Path) -> None:
    spec = load_spec(_write(tmp_path, corpora, "c4: {min_num_sentences: 5, max_length: 1000}"))
    expanded = dict(registry.expand([(s.name, s.params) for s in spec.sources["web"].filters]))
    assert expanded == {"c4_length": {"max_length": 1000}, "c4_url_dedup": {}, "c4_clean": {"min_num_sentences": 5},
                        "c4_line_dedup": {"min_num_sentences": 5}, "c4_langdetect": {}, "c4_badwords": {}}
    with pytest.raises(ParamError, match=r"c4: unknown parameter.*min_chars"):
        registry.expand([("c4", {"min_chars": 1})])


def test_every_registered_step_has_a_parameter_model() -> None:
    assert set(registry.PARAMS) == set(registry.DOC_FILTERS) | set(registry.CORPUS_STAGES)
    for name in registry.PARAMS:
        model = registry.params_model(name)
        assert issubclass(model, StrictModel) and model.__doc__, name
        for key, info in model.model_fields.items():
            assert info.description, f"{name}.{key} has no description"
        model()  # every parameter has a default: a bare `- name` step is valid
    assert [k for k, i in registry.params_model("quality").model_fields.items() if is_internal(i)] == ["trained"]
    assert [k for k, i in registry.params_model("decontam").model_fields.items() if is_internal(i)] == ["index_path"]


def test_parameter_models_import_without_beam() -> None:
    code = ("import sys; from filters import registry; [registry.params_model(n) for n in registry.PARAMS]; "
            "from mixtures.spec import load_spec; assert 'apache_beam' not in sys.modules, 'beam imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, env={"PYTHONPATH": str(REPO)})


def test_derived_models_follow_the_rule_constructors() -> None:
    from filters.badwords import BadWordsFilter
    from filters.c4 import C4Cleaner
    from filters.gopher import GopherQuality
    from filters.length import LengthFilter

    rule = C4Cleaner()
    assert registry.params_model("c4_clean")().model_dump() == {
        "min_words_per_line": rule.min_words_per_line, "min_num_sentences": rule.min_num_sentences,
        "max_word_length": rule.max_word_length, "remove_citations": True, "filter_no_terminal_punct": True,
        "filter_lorem_ipsum": True, "filter_javascript": True, "filter_curly_bracket": True, "filter_policy": True}
    assert all(getattr(rule, k) for k in ("remove_citations", "filter_policy", "filter_no_terminal_punct"))
    assert registry.params_model("length")().model_dump() == {"min_chars": LengthFilter().min_chars, "max_chars": None}
    assert registry.params_model("gopher_quality").model_fields["min_doc_words"].default == 50
    assert GopherQuality().min_doc_words == 50
    assert registry.params_model("mc4_badwords")().langs == "all"
    assert registry.params_model("c4_badwords")().langs == BadWordsFilter.__dataclass_fields__["langs"].default
    assert registry.build_filter("mc4_badwords").fraction == 0.999 and BadWordsFilter().fraction == 1.0


def test_shipped_specs_still_load(corpora: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXLAB_DATA_ROOT", str(corpora))
    for name in ("mix_v1.yaml", "mix_v2.yaml", "mix_v3.yaml"):
        spec = load_spec(REPO / "mixtures" / name)
        for source, src in spec.sources.items():
            for i, step in enumerate(src.filters):
                assert registry.step_problems(step.name, step.params) == [], (name, source, i)


def test_steps_built_in_python_are_checked_when_built() -> None:
    step = Step(name="length", params={"min_char": 3})  # the run adds internal params to steps it builds
    with pytest.raises(ParamError, match=r"length: min_char: unknown parameter \(length takes: min_chars"):
        registry.build_filter(step.name, step.params)
    Step(name="quality", params={"model": "m.bin", "max_chars": 100, "trained": "abc"})  # no error


def test_corpus_stage_factories_build_from_validated_params() -> None:
    from filters.dedup import MinHashDedupParams
    from pipelines.dedup import minhash_dedup

    params = MinHashDedupParams.model_validate({"threshold": 0.8, "source_priority": ["wiki"]})
    stage = minhash_dedup(3, params)
    assert stage.threshold == 0.8 and stage.priority == ("wiki",)
    assert (stage.params.bands, stage.params.rows) == (9, 12)  # datasketch's optimal split of 112 at 0.8
    assert minhash_dedup(3, threshold=0.8, source_priority=["wiki"]).params == stage.params
    with pytest.raises(ParamError, match="minhash_dedup: treshold: unknown parameter"):
        minhash_dedup(3, treshold=0.8)
    with pytest.raises(ParamError, match="not both"):
        minhash_dedup(3, params, threshold=0.9)


def test_one_minhash_config_for_spec_stage_and_cli() -> None:
    from filters.dedup import MinHashConfig, MinHashDedupParams, MinHashParams
    from mixlab.cli import build_parser
    from mixlab.commands.dedup import minhash_config
    from mixtures.dedup_spec import DedupSpec

    assert DedupSpec.model_fields["minhash"].annotation == MinHashConfig | None
    assert issubclass(MinHashDedupParams, MinHashConfig)
    args = build_parser().parse_args(["dedup", "a.jsonl", "out"])
    assert minhash_config(args) == MinHashConfig() == DedupSpec().minhash
    assert MinHashConfig().lsh() == (MinHashParams().bands, MinHashParams().rows) == (14, 8)
    params = dict(DedupSpec().steps(["web"]))["minhash_dedup"]
    assert MinHashDedupParams.model_validate(params).model_dump(include=set(MinHashConfig.model_fields)) == (
        MinHashConfig().model_dump())
    bad = build_parser().parse_args(["dedup", "a.jsonl", "out", "--threshold", "1.5"])
    with pytest.raises(ValueError, match="threshold: Input should be less than 1"):
        minhash_config(bad)


def test_every_settings_model_uses_the_one_strict_base() -> None:
    from mixtures import dedup_spec, mixture_spec, quality_spec, spec

    models = [obj for module in (spec, dedup_spec, mixture_spec, quality_spec) for obj in vars(module).values()
              if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__.startswith("mixtures.")]
    assert len(models) >= 9
    assert all(issubclass(m, StrictModel) for m in models)
    assert StrictModel.model_config == {"extra": "forbid", "frozen": True, "strict": True, "allow_inf_nan": False}


def test_docs_list_every_step_parameter() -> None:
    text = (REPO / "docs" / "spec.md").read_text(encoding="utf-8")
    _, _, rest = text.partition(registry.DOCS_BEGIN)
    generated, _, _ = rest.partition(registry.DOCS_END)
    assert generated.strip() == registry.params_reference().strip(), (
        "docs/spec.md is stale: run `python -m filters.registry docs/spec.md`")


def test_cli_validate_reports_one_error_and_writes_nothing(tmp_path: Path, corpora: Path,
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from mixlab.cli import main

    path = _write(tmp_path, corpora, "length: {min_char: 200}")
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and out == ""
    problems = [line for line in err.splitlines() if line.strip().startswith(str(path) + ":")]
    assert problems == [f"  {path}: sources.web.filters.0.length.min_char: unknown parameter "
                        "(length takes: min_chars, max_chars)"]
    assert sorted(tmp_path.rglob("*")) == before  # no run directory, nothing else either

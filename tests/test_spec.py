"""Spec validation: every problem is an error naming the file and the key, before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixlab.cli import main
from mixtures.spec import SpecError, load_spec


def _write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "data.jsonl").write_text('{"id": "1", "text": "x"}\n')
    path = tmp_path / "mix_bad.yaml"
    path.write_text(body)
    return path


GOOD = """
name: mix_ok
data_root: .
sources:
  web:
    paths: [data.jsonl]
    filters: [length, {length: {min_chars: 3}}]
"""


def test_a_good_spec_loads_with_paths_relative_to_the_spec(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, GOOD))
    assert spec.resolve_paths("web") == [str(tmp_path / "data.jsonl")]
    assert [(s.name, s.params) for s in spec.sources["web"].filters] == [("length", {}), ("length", {"min_chars": 3})]
    assert spec.fingerprint() == load_spec(tmp_path / "mix_bad.yaml").fingerprint()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (GOOD.replace("paths:", "pathz:"), "sources.web.pathz: unknown key"),
        (GOOD.replace("[data.jsonl]", "data.jsonl"), "sources.web.paths: Input should be a valid list"),
        (GOOD.replace("filters: [length,", "filters: [lenght,"), "sources.web.filters.0.name: unknown filter 'lenght'"),
        (GOOD + "seed: many\n", "seed: Input should be a valid integer"),
        (GOOD + "colour: blue\n", "colour: unknown key"),
        (GOOD.replace("data.jsonl]", "missing.jsonl]"), "sources.web.paths.0: no file matches"),
        (GOOD.replace("name: mix_ok", "name: 'bad name'"), "name: 'bad name' is not a plain folder name"),
        ("- just\n- a list\n", "a mixture spec is a mapping at the top level"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_specs_name_file_and_key(tmp_path: Path, body: str, expected: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_filter_params_are_checked_at_construction(tmp_path: Path) -> None:
    from filters.registry import build_filter

    with pytest.raises(ValueError, match="min_chars <= max_chars"):
        build_filter("length", {"min_chars": 10, "max_chars": 5})


def test_cli_reports_spec_errors_with_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, GOOD.replace("paths:", "pathz:"))
    assert main(["validate", str(path)]) == 2
    assert "sources.web.pathz: unknown key" in capsys.readouterr().err


def test_help_is_fast_and_lists_commands() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "mixlab", "--help"],
                         capture_output=True, text=True, check=True)
    assert "mixture" in out.stdout and "filter" in out.stdout
    assert "apache_beam" not in out.stderr and "torch" not in out.stderr


def test_bad_filter_params_fail_before_the_pipeline_runs(tmp_path: Path) -> None:
    from mixlab import jobs

    spec = load_spec(_write(tmp_path, GOOD.replace("min_chars: 3", "min_chars: 3, max_chars: 1")))
    with pytest.raises(SpecError, match=r"sources.web.filters.1: length: need 0 <= min_chars <= max_chars"):
        jobs.clean(spec)
    assert not spec.run_dir.exists()

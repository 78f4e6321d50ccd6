"""The three notebooks run end to end (jupytext -> nbclient) on tiny settings, in order, sharing one work dir."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


# Run after notebook 2's own cells, in its kernel: what a person does with the widgets, done by calling them.
WIDGET_CELLS = [
    """first = sorted(sliders)[0]
before = view["table"].set_index("source").target_tokens.to_dict()
sliders[first].value = 0.0  # the slider's observer replans
after = view["table"].set_index("source").target_tokens.to_dict()
assert view["weights"][first] == 0.0 and after[first] == 0 and after != before, (before, after)
budget_slider.value = budget_slider.value // 2
assert view["budget"] == budget_slider.value and 0 < view["table"].target_tokens.sum() <= view["budget"]
print("slider replanned:", view["estimate"])""",
    """path = write_mix()  # what the button calls
print(path.read_text())
print("valid spec:", load_spec(path).name)
button.click()  # the button itself writes the next one
assert regmix.next_spec_path(OUT).name == "mix_v3.yaml"
for slider in sliders.values():
    slider.value = 0.0
assert view["table"] is None and view["error"]  # shown as "cannot be built", not raised
print("all-zero weights:", view["error"])""",
]


def _run(name: str, cwd: Path, extra: list[str] = ()) -> dict:
    notebook = jupytext.read(NOTEBOOKS / name)
    notebook.cells += [nbformat.v4.new_code_cell(code) for code in extra]
    NotebookClient(notebook, kernel_name="python3", timeout=240,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return notebook


def _text(notebook: dict) -> str:
    parts = []
    for cell in notebook.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.extend(str(v) for v in out.get("data", {}).values())
    return "\n".join(parts)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> Path:
    return tmp_path_factory.mktemp("notebooks")


def test_notebooks_run_in_order(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIXLAB_NB_WORK", str(work / "work"))
    monkeypatch.setenv("MIXLAB_NB_OUT", str(work / "out"))
    monkeypatch.setenv("MIXLAB_NB_DOCS", "40")
    (work / "out").mkdir()

    explored = _text(_run("01_explore_sources.py", work))
    assert "tokens_by_source" not in explored  # the query ran: its result is a table, not an error
    assert "kept_tokens" in explored and "c4." in explored  # token table and a C4 removal reason

    designed = _text(_run("02_design_mixture.py", work, WIDGET_CELLS))
    assert "Verdict:" in designed and "Estimate:" in designed and "worth_of_a_token" in designed
    assert "slider replanned:" in designed and "valid spec: mix_v1" in designed and "all-zero weights:" in designed
    spec = (work / "out" / "mix_v1.yaml").read_text()
    assert spec.startswith("# Designed in notebooks/02_design_mixture.py from mix_v3.yaml")
    assert (work / "out" / "mix_v2.yaml").is_file()  # written by the button

    monkeypatch.setenv("MIXLAB_NB_MIXES", f"{work / 'work' / 'runs' / 'mix_v3'},mix_v1.yaml")
    monkeypatch.setenv("MIXLAB_NB_SEEDS", "2")
    monkeypatch.setenv("MIXLAB_NB_TOKENS", str(8 * 64 * 4))
    ablated = _text(_run("03_run_ablation.py", work))
    assert "bpb/shared_mean" in ablated and "P(A beats B)" in ablated
    assert (work / "work" / "ablations" / "notebook" / "results.parquet").is_file()

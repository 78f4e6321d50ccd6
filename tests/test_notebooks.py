"""The three notebooks run end to end (jupytext -> nbclient) on tiny settings, in order, sharing one work dir."""

from __future__ import annotations

from pathlib import Path

import jupytext
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _run(name: str, cwd: Path) -> dict:
    notebook = jupytext.read(NOTEBOOKS / name)
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

    designed = _text(_run("02_design_mixture.py", work))
    assert "Verdict:" in designed and "valid spec: mix_v1" in designed
    spec = (work / "out" / "mix_v1.yaml").read_text()
    assert spec.startswith("# Designed in notebooks/02_design_mixture.py from mix_v3.yaml")

    monkeypatch.setenv("MIXLAB_NB_MIXES", f"{work / 'work' / 'runs' / 'mix_v3'},mix_v1.yaml")
    monkeypatch.setenv("MIXLAB_NB_SEEDS", "2")
    monkeypatch.setenv("MIXLAB_NB_TOKENS", str(8 * 64 * 4))
    ablated = _text(_run("03_run_ablation.py", work))
    assert "bpb/shared_mean" in ablated and "P(A beats B)" in ablated
    assert (work / "work" / "ablations" / "notebook" / "results.parquet").is_file()

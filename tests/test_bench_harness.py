"""bench/: no sys.path edits, the shared harness (timer, table, corpus reader), every script's ``--help``."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
# Imported by a script's --help would make it slow: argparse must run before these load.
HEAVY = {"torch", "apache_beam", "tensorflow_datasets", "tensorflow", "datatrove", "transformers", "streaming",
         "fasttext", "pandas", "pyarrow", "spacy"}


def _is_sys_path(node: ast.AST, sys_names: set[str], path_names: set[str]) -> bool:
    """``sys.path`` (under any name ``sys`` was imported as) or a name bound by ``from sys import path``."""
    if isinstance(node, ast.Attribute):
        return node.attr == "path" and isinstance(node.value, ast.Name) and node.value.id in sys_names
    return isinstance(node, ast.Name) and node.id in path_names


def _base(node: ast.AST) -> ast.AST:
    """``sys.path`` for ``sys.path[0]`` or ``sys.path[:]``: the object a subscript target changes."""
    while isinstance(node, ast.Subscript):
        node = node.value
    return node


def sys_path_edits(source: str) -> list[int]:
    """Lines that assign to, delete from or call a method of ``sys.path``."""
    tree = ast.parse(source)
    sys_names, path_names = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            sys_names |= {a.asname or a.name for a in node.names if a.name == "sys"}
        elif isinstance(node, ast.ImportFrom) and node.module == "sys":
            path_names |= {a.asname or a.name for a in node.names if a.name == "path"}
    lines = []
    for node in ast.walk(tree):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            targets = [node.func.value]  # sys.path.insert(...), sys.path.append(...), ...
        flat = [t for target in targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])]
        if any(_is_sys_path(_base(t), sys_names, path_names) for t in flat):
            lines.append(node.lineno)
        if isinstance(node, ast.Assign) and _is_sys_path(node.value, sys_names, path_names):
            lines.append(node.lineno)  # an alias (p = sys.path) would let later edits hide
    return sorted(set(lines))


def bench_scripts() -> list[str]:
    """Modules under bench/ with an ``if __name__ == "__main__"`` block."""
    names = []
    for path in sorted(BENCH.glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
                    and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"):
                names.append(path.stem)
                break
    return names


def test_detector_sees_every_kind_of_edit() -> None:
    edits = sys_path_edits("import sys\nimport sys as s\nfrom sys import path as p\n"
                           "sys.path.insert(0, 'x')\nsys.path[0] = 'x'\nsys.path[:] = []\ns.path.append('x')\n"
                           "p.extend([])\nsys.path += ['x']\nq = sys.path\nprint(sys.path)\nx = sys.path[0]\n")
    assert edits == [4, 5, 6, 7, 8, 9, 10]


def test_no_bench_file_edits_sys_path() -> None:
    offenders = {p.relative_to(REPO).as_posix(): lines for p in sorted(BENCH.rglob("*.py"))
                 if (lines := sys_path_edits(p.read_text(encoding="utf-8")))}
    assert offenders == {}, f"bench/ files edit sys.path (run them as python -m bench.NAME instead): {offenders}"


def test_bench_is_a_package() -> None:
    assert (BENCH / "__init__.py").is_file()


def test_table_has_header_and_a_row_per_input() -> None:
    from bench import harness

    rows = [("a", 1, 2.5), ("b|c", 10, None)]
    text = harness.table(["name", "n", "x"], rows, align="lrr")
    lines = text.splitlines()
    assert lines[0] == "| name | n | x |"
    assert lines[1] == "|---|---:|---:|"
    assert lines[2:] == ["| a | 1 | 2.5 |", "| b\\|c | 10 |  |"]
    assert len(lines) == 2 + len(rows)
    assert harness.table(["only"], []).splitlines() == ["| only |", "|---|"]
    with pytest.raises(ValueError):
        harness.table(["a", "b"], [(1,)])
    with pytest.raises(ValueError):
        harness.table(["a"], [], align="lr")


def test_streamed_table_matches_rendered() -> None:
    from bench import harness

    t = harness.Table(["a", "b"], align="lr")
    assert "\n".join([t.header(), t.row("x", 1)]) == harness.table(["a", "b"], [("x", 1)], align="lr")


def test_timer_counts_cpu_of_a_busy_loop() -> None:
    from bench import harness

    with harness.Timer() as t:
        deadline = time.process_time() + 0.05
        n = 0
        while time.process_time() < deadline:
            n += 1
    assert n > 0
    assert t.cpu > 0 and t.cpu_self > 0 and t.wall > 0
    assert t.cpu == pytest.approx(t.cpu_self + t.cpu_children)
    assert t.load_start >= 0 and t.load_end >= 0
    assert t.cpu_per_wall == pytest.approx(t.cpu / t.wall)
    assert "CPU s" in t.summary()


def test_timer_counts_child_processes() -> None:
    from bench import harness

    with harness.Timer() as t:
        subprocess.run([sys.executable, "-c", "import time\nd = time.process_time() + 0.1\n"
                        "while time.process_time() < d: pass"], check=True)
    assert t.cpu_children > 0
    assert t.cpu >= t.cpu_children


def test_timed_returns_result_and_timing() -> None:
    from bench import harness

    out, t = harness.timed(sum, range(1000))
    assert out == sum(range(1000)) and t.wall >= 0 and t.cpu >= 0
    with pytest.raises(RuntimeError):
        _ = harness.Timer().wall  # not started


def test_corpus_reader(corpora: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import harness

    monkeypatch.setenv("MIXLAB_SHARED", str(corpora.parent))
    assert harness.corpus_path("web") == corpora / "web.jsonl.gz"
    assert harness.corpus_path("dedup_bench/synthetic_docs") == corpora / "dedup_bench" / "synthetic_docs.jsonl.gz"
    docs = harness.read_corpus("web", 3)
    assert len(docs) == 3 and all("text" in d and "id" in d for d in docs)
    assert harness.read_texts("web", 3) == [d["text"] for d in docs]
    assert harness.read_texts(corpora / "web.jsonl.gz", 2) == [d["text"] for d in docs[:2]]
    assert harness.read_texts("web", 0) == []
    with pytest.raises(FileNotFoundError, match="MIXLAB_SHARED"):
        harness.read_corpus("no_such_corpus", 1)


def test_shared_root_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import harness

    monkeypatch.delenv("MIXLAB_SHARED", raising=False)
    assert harness.shared_root() == REPO.parent / "shared"


def test_missing_peer_says_how_to_install() -> None:
    from bench import peers

    with pytest.raises(peers.PeerMissing, match=r"^peer no-such-peer not installed .*: run make bench-setup$"):
        peers.require("no-such-peer", modules=("no_such_module_xyz",))
    with pytest.raises(peers.PeerMissing, match=r"peer datatrove not installed \(no module no_such_xyz\)"):
        peers.require("datatrove", modules=("no_such_xyz",))
    found, messages = peers.venv_peers("/nonexistent/bin/python", ("text-dedup",))
    assert found == [] and len(messages) == 1
    assert messages[0].startswith("peer text-dedup not installed in /nonexistent/bin/python")
    assert peers.venv_peers("", ("text-dedup",)) == ([], [])
    found, messages = peers.venv_peers(sys.executable, ("tensorflow-datasets",))  # the probe, in a child process
    assert (found == ["tensorflow-datasets"]) == peers.installed("tensorflow-datasets") == (not messages)


def test_venv_peer_runs_as_module_from_repo_root() -> None:
    from bench import peers

    proc = peers.run_in_venv(sys.executable, "dedup_peers", "--help")
    assert proc.stdout.decode().startswith("usage: python -m bench.dedup_peers")


def test_every_script_is_listed() -> None:
    scripts = bench_scripts()
    assert {"filters", "mixture", "c4_conformance", "dedup_quality", "proxy_gpu"} <= set(scripts)
    assert "harness" not in scripts


@pytest.mark.parametrize("name", bench_scripts())
def test_help_runs_without_heavy_imports(name: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", f"bench.{name}", "--help"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage:") and f"bench.{name}" in proc.stdout.splitlines()[0]
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in proc.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    assert not imported & HEAVY, f"--help imported {sorted(imported & HEAVY)}: move them into main()"


def test_conformance_without_tfds_shows_na(corpora: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import c4_conformance, peers

    monkeypatch.setitem(peers.MODULES, "tensorflow-datasets", ("no_such_tfds_xyz",))
    fig = c4_conformance.check_clean(c4_conformance.load_docs(corpora / "web.jsonl.gz", 5))
    assert (fig.docs, fig.reference) == (5, False)
    lines = c4_conformance.table([fig]).splitlines()
    assert lines[0].startswith("| check | docs |") and lines[2].startswith("| clean_page | 5 | n/a | n/a | n/a |")
    assert lines[2].endswith("| n/a |")

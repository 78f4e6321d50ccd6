"""A run never writes or deletes outside its own folder, and one job at a time holds a run directory.

Names: ``.``, ``..``, hidden and separated names are spec errors naming the file and ``name``; a name that is a
symlink out of output_dir is refused; a symlinked child of the run is unlinked on a rebuild, its target kept.
Locks: a second job fails with the first one's pid and command (exit 2), a lock file left by a killed process
does not block, and the lock is reentrant in one process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mixlab import jobs
from mixlab.cli import main
from mixlab.locks import RunLocked, holder, run_lock
from mixtures.layout import RunDirError, RunLayout, run_root
from mixtures.spec import SpecError, load_spec

REPO = Path(__file__).resolve().parent.parent
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]
LINES = [{"id": f"d{i}", "text": " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] + str(j % 5) for j in range(80))}
         for i in range(40)]


def _write_spec(folder: Path, name: str, mixture: bool = False, output_dir: Path | None = None) -> Path:
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "web.jsonl").write_text("\n".join(json.dumps(x) for x in LINES) + "\n")
    spec: dict = {"name": name, "data_root": str(data), "output_dir": str(output_dir or folder / "runs"),
                  "sources": {"web": {"paths": ["web.jsonl"]}}}
    if mixture:
        spec["mixture"] = {"tokenizer": {"name": "bpe", "vocab_size": 512, "sample_chars": 50_000},
                           "budget_tokens": 512, "max_seq_len": 32, "validation": {"fraction": 0.1},
                           "sources": {"web": {"weight": 1.0}}}
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- names ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [".", "..", ".hidden", "a/b", "../escape", ""])
def test_a_name_that_is_not_a_plain_folder_is_a_spec_error_naming_file_and_key(tmp_path: Path, name: str) -> None:
    path = _write_spec(tmp_path, name)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert f"{path}: name: " in str(err.value) and "plain folder name" in str(err.value)


def test_dotdot_name_never_touches_the_output_dirs_parent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The reported bug: `name: '..'` made the repo root the run directory and deleted its tracked docs/."""
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "design.md").write_text("tracked\n")
    path = _write_spec(tmp_path, "..", output_dir=repo / "runs")
    assert main(["mixture", str(path)]) == 2
    assert "error: " in capsys.readouterr().err
    assert (repo / "docs" / "design.md").read_text() == "tracked\n"
    assert sorted(p.name for p in repo.iterdir()) == ["docs"]


def test_dot_name_never_deletes_another_run(tmp_path: Path) -> None:
    other = tmp_path / "runs" / "docs"  # `name: '.'` made runs/ the run: its docs/ would be removed
    other.mkdir(parents=True)
    (other / "keep.txt").write_text("another run\n")
    assert main(["mixture", str(_write_spec(tmp_path, "."))]) == 2
    assert (other / "keep.txt").read_text() == "another run\n"


def test_a_name_that_is_a_symlink_out_of_output_dir_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "docs").mkdir(parents=True)
    (outside / "docs" / "precious.txt").write_text("keep me\n")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "evil").symlink_to(outside, target_is_directory=True)
    path = _write_spec(tmp_path, "evil")
    spec = load_spec(path)
    with pytest.raises(SpecError) as err:
        _ = spec.run_dir
    assert str(err.value).startswith(f"{path}: name: ") and "outside" in str(err.value)
    assert main(["mixture", str(path)]) == 2
    assert _tree(outside) == {"docs/precious.txt": b"keep me\n"}


def test_run_root_accepts_a_symlink_to_another_folder_inside_output_dir(tmp_path: Path) -> None:
    (tmp_path / "runs" / "real").mkdir(parents=True)
    (tmp_path / "runs" / "alias").symlink_to(tmp_path / "runs" / "real")
    assert run_root(tmp_path / "runs", "alias") == (tmp_path / "runs").resolve() / "alias"
    (tmp_path / "runs" / "self").symlink_to(tmp_path / "runs")
    with pytest.raises(RunDirError):
        run_root(tmp_path / "runs", "self")


# ---- guarded removal ------------------------------------------------------------------------------------------


def test_remove_refuses_anything_not_strictly_inside_the_run(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f.txt").write_text("x")
    layout = RunLayout(tmp_path / "runs" / "mix")
    layout.root.mkdir(parents=True)
    (layout.root / "mds").symlink_to(outside, target_is_directory=True)
    for path in (layout.root, layout.root.parent, tmp_path / "outside", layout.root / "..", layout.root / ".",
                 layout.root / "mds" / "f.txt", Path("/")):
        with pytest.raises(RunDirError):
            layout.remove(path)
    assert (outside / "f.txt").read_text() == "x"
    assert layout.remove(layout.root / "mds") is True  # the link itself lives in the run: unlinked, target kept
    assert not (layout.root / "mds").exists() and (outside / "f.txt").read_text() == "x"
    assert layout.remove(layout.root / "missing") is False


def test_force_rebuild_unlinks_a_symlinked_child_and_keeps_its_target(tmp_path: Path) -> None:
    spec = load_spec(_write_spec(tmp_path, "mix"))
    layout = jobs.clean(spec)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me\n")
    for child in (layout.docs, layout.work):
        layout.remove(child)
        child.symlink_to(outside, target_is_directory=True)
    jobs.clean(spec, force=True)
    assert _tree(outside) == {"precious.txt": b"keep me\n"}  # nothing deleted there, nothing written there
    assert not layout.docs.is_symlink() and list(layout.docs.glob("web/*.parquet"))


def test_mixture_rebuild_unlinks_symlinked_outputs_and_keeps_their_targets(tmp_path: Path) -> None:
    spec = load_spec(_write_spec(tmp_path, "mix", mixture=True))
    layout = jobs.mixture(spec)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me\n")
    layout.remove(layout.tokenizer)
    layout.tokenizer.symlink_to(outside, target_is_directory=True)
    layout.remove(layout.plan)
    layout.plan.symlink_to(outside / "precious.txt")
    jobs.build(spec)
    assert _tree(outside) == {"precious.txt": b"keep me\n"}
    assert not layout.tokenizer.is_symlink() and layout.tokenizer_file.is_file()
    assert not layout.plan.is_symlink() and json.loads(layout.plan.read_text())


# ---- the lock -------------------------------------------------------------------------------------------------

HOLD = """
import sys, time
from pathlib import Path
from mixlab.locks import run_lock
from mixtures.layout import RunLayout
with run_lock(RunLayout(Path(sys.argv[1])), "test hold"):
    print("held", flush=True)
    time.sleep(120)
"""


def _hold(root: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True, env=env,
                            cwd=REPO)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_job_on_a_locked_run_says_who_holds_it_and_exits_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_spec(tmp_path, "mix")
    layout = RunLayout(load_spec(path).run_dir)
    proc = _hold(layout.root)
    try:
        with pytest.raises(RunLocked) as err, run_lock(layout, "mixture"):
            pass
        assert f"pid {proc.pid}" in str(err.value) and "test hold" in str(err.value)
        assert main(["mixture", str(path)]) == 2
        message = capsys.readouterr().err.strip()
        assert message.startswith("error: ") and "\n" not in message and f"pid {proc.pid}" in message
        assert main(["quality", "train", str(path)]) == 2  # the lock is checked before anything else
        assert f"pid {proc.pid}" in capsys.readouterr().err
        assert not layout.docs.exists()
    finally:
        proc.kill()
        proc.wait()


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path: Path) -> None:
    spec = load_spec(_write_spec(tmp_path, "mix"))
    layout = RunLayout(spec.run_dir)
    proc = _hold(layout.root)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert layout.lock_file.is_file() and (holder(layout) or {}).get("pid") == proc.pid  # stale file left behind
    assert jobs.clean(spec).stats.is_file()
    assert layout.lock_file.read_text() == ""  # released: no holder named


def test_the_lock_is_reentrant_in_one_process_and_released_after(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path / "runs" / "mix")
    with run_lock(layout, "outer"), run_lock(layout, "inner"):
        assert holder(layout)["job"] == "outer"  # type: ignore[index]
        probe = subprocess.run([sys.executable, "-c", HOLD, str(layout.root)], capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, timeout=60)
        assert probe.returncode != 0 and "RunLocked" in probe.stderr
    proc = _hold(layout.root)  # free again once the outer block ends
    proc.kill()
    proc.wait()


def test_a_symlinked_lock_file_is_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me\n")
    layout = RunLayout(tmp_path / "runs" / "mix")
    layout.root.mkdir(parents=True)
    layout.lock_file.symlink_to(outside)
    with pytest.raises(RunLocked), run_lock(layout, "mixture"):
        pass
    assert outside.read_text() == "keep me\n"

"""A quiet run prints Mixlab's own lines only: no Beam harness chatter from any worker process; -v brings it back."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

CHATTER = ("sdk_worker", "apitools not found", "semi_persistent_directory", "Python sdk harness",
           "Pipeline_options", "direct_num_workers is not equal")


def _filter(tmp_path: Path, *flags: str) -> str:
    data = tmp_path / "in.jsonl.gz"
    data.write_bytes(gzip.compress("\n".join(json.dumps({"id": f"d{i}", "text": f"Line {i} of a page. " * 30})
                                             for i in range(50)).encode()))
    done = subprocess.run(
        [sys.executable, "-m", "mixlab", *flags, "filter", "--chain", "length", str(data), str(tmp_path / "out"),
         "--beam-option=--direct_num_workers=2", "--beam-option=--direct_running_mode=multi_processing"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "kept 50, removed 0" in done.stdout
    return done.stderr


def test_multi_process_run_is_quiet(tmp_path: Path) -> None:
    err = _filter(tmp_path)
    assert not [c for c in CHATTER if c in err], err
    assert "clean: done" in err  # Mixlab's own progress lines stay


def test_verbose_brings_the_worker_lines_back(tmp_path: Path) -> None:
    assert "Python sdk harness" in _filter(tmp_path, "-v")

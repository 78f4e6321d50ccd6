"""Progress: workers count into files, the driver sums and shows them, on a terminal or as periodic log lines."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from mixtures import progress


def test_watch_sums_every_workers_counts_and_prints_periodic_lines(tmp_path: Path) -> None:
    lines: list[str] = []
    folder = tmp_path / "progress"
    with progress.Watch(folder, "clean demo", ["read", "docs"], interval=0.3, live=False, emit=lines.append):
        assert os.environ[progress.PROGRESS_ENV] == str(folder)
        # another "worker process": its own file in the folder
        (folder / "other-worker.json").write_text(json.dumps({"read": {"web": [5, 500]}}))

        def work() -> None:
            for _ in range(30):
                progress.count("read", "web", 1, 100)
                time.sleep(0.05)
            progress.flush()

        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
        time.sleep(0.7)
        assert progress.totals(folder)["read"]["web"] == [35, 3500]
    assert progress.PROGRESS_ENV not in os.environ and not folder.exists()
    assert len(lines) >= 2 and lines[-1].startswith("clean demo 00:0")
    assert "read 35 docs" in lines[-1] and "docs/s" in lines[-1]
    assert "| docs" not in lines[-1]  # a stage no worker reached is not shown as zero


def test_counting_without_a_watch_is_a_no_op(tmp_path: Path) -> None:
    os.environ.pop(progress.PROGRESS_ENV, None)
    progress.count("read", "web")
    progress.flush()
    assert not list(tmp_path.iterdir())


def test_a_long_clean_prints_progress_lines_when_not_on_a_terminal(tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl.gz"
    data.write_bytes(gzip.compress("\n".join(json.dumps({"id": f"d{i}", "text": f"Line {i} of a page. " * 30})
                                             for i in range(8000)).encode()))
    done = subprocess.run([sys.executable, "-m", "mixlab", "filter", "--chain", "gopher", str(data),
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(Path.cwd()), progress.INTERVAL_ENV: "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    progress_lines = [line for line in done.stderr.splitlines() if "mixlab.progress" in line]
    assert progress_lines, done.stderr[-2000:]
    assert "clean filter 00:0" in progress_lines[0]  # the first line within seconds
    assert any("read" in line and "docs/s" in line for line in progress_lines), progress_lines

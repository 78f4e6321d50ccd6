"""Streaming's shared-memory prefix race: datasets started at the same moment in several processes all open."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path
from typing import Any

import numpy as np

from mixtures.streaming_compat import import_streaming

PROCESSES = 6


def _write(folder: Path) -> None:
    streaming = import_streaming()
    with streaming.MDSWriter(out=str(folder), columns={"tokens": "ndarray:int32"}) as out:
        for i in range(4):
            out.write({"tokens": np.arange(i, i + 8, dtype=np.int32)})


def _open(folder: str, barrier: Any, results: Any) -> None:
    streaming = import_streaming()
    barrier.wait()  # every process asks for a prefix at the same moment
    try:
        ds = streaming.StreamingDataset(streams=[streaming.Stream(local=folder)], batch_size=1, shuffle=False)
        results.put(int(ds[3]["tokens"][0]))
    except Exception as err:  # reported to the test
        results.put(repr(err))


def test_the_prefix_choice_is_locked_once() -> None:
    import_streaming()
    from streaming.base import dataset

    first = dataset.get_shm_prefix
    import_streaming()
    assert dataset.get_shm_prefix is first and getattr(first, "_mixlab_locked", False)


def test_datasets_started_together_in_several_processes_all_open(tmp_path: Path) -> None:
    folders = [tmp_path / f"stream{i}" for i in range(PROCESSES)]
    for folder in folders:
        _write(folder)
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [ctx.Process(target=_open, args=(str(f), barrier, results)) for f in folders]
    for proc in procs:
        proc.start()
    got = [results.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert got == [3] * PROCESSES

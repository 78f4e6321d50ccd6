"""Proxy training: schedule, spike guard, kill-and-resume equal to an uninterrupted run, rollback, DDP."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mixtures.streams_manifest import StreamsError
from proxy_train.data import load_streams
from proxy_train.train import (
    ProxyUsageError,
    SpikeGuard,
    TrainConfig,
    latest_checkpoint,
    lr_factor,
    read_jsonl,
    train,
)

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parent.parent
SHORT = TrainConfig(size="tiny", tokens=8 * 64 * 30, checkpoint_every=10, keep_checkpoints=5)


def losses(out: Path) -> list[float]:
    return [row["loss"] for row in read_jsonl(out / "metrics.jsonl")]


def test_schedule_warms_up_then_decays_to_the_floor() -> None:
    assert lr_factor(0, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, 0.1) == pytest.approx(0.55)
    assert lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)


def test_spike_guard_flags_a_jump_and_non_finite_losses_only() -> None:
    guard = SpikeGuard(factor=2.0, warmup=3)
    assert not any(guard.is_spike(x) for x in [6.0, 5.0, 4.5, 4.2, 4.0, 6.5])
    assert guard.is_spike(12.0)
    assert guard.is_spike(float("nan")) and guard.is_spike(float("inf"))
    assert not guard.is_spike(4.0)


def test_streams_yaml_accepts_relative_paths_and_names_missing_keys(tiny_mixture: Path, tmp_path: Path) -> None:
    text = (tiny_mixture / "streams.yaml").read_text().replace(str(tiny_mixture.resolve()) + "/", "")
    run = tmp_path / "run"
    run.mkdir()
    (run / "streams.yaml").write_text(text)
    for name in ("mds", "tokenizer"):
        (run / name).symlink_to(tiny_mixture / name)
    mix = load_streams(run)
    assert mix.train["web"] == (run.resolve() / "mds/train/web", 0.5)
    assert mix.eos_token_id == 1  # id 0 is the padding token (llm-foundry refuses eos_token_id 0)
    (run / "streams.yaml").write_text(text.replace("eos_token_id: 1\n", ""))
    with pytest.raises(StreamsError, match="eos_token_id"):
        load_streams(run)


def test_training_lowers_the_loss_and_writes_metrics(tiny_mixture: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    out = train(tiny_mixture, SHORT, out=tmp_path / "proxy")
    curve = losses(out)
    assert len(curve) == 30 and [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == list(range(1, 31))
    assert sum(curve[-5:]) / 5 < curve[0] - 1.0
    summary = pq.read_table(out / "summary.parquet").to_pylist()[0]
    assert summary["steps"] == 30 and summary["tokens"] == 30 * 8 * 64 and summary["spikes"] == 0
    assert pq.read_table(out / "metrics.parquet").num_rows == 30
    assert latest_checkpoint(out).name == "step-000030.pt"
    with pytest.raises(ProxyUsageError, match="--resume"):
        train(tiny_mixture, SHORT, out=out)


KILL_SCRIPT = """
import os, signal, sys, torch
torch.set_num_threads(1)
from proxy_train.train import TrainConfig, train
cfg = TrainConfig(size="tiny", tokens=8 * 64 * 30, checkpoint_every=10, keep_checkpoints=5)
def die(step, info):
    if step == 13:
        os.kill(os.getpid(), signal.SIGKILL)
train(sys.argv[1], cfg, out=sys.argv[2], callbacks=[die])
"""


def test_killed_run_resumes_and_matches_the_uninterrupted_curve(tiny_mixture: Path, tmp_path: Path) -> None:
    whole = losses(train(tiny_mixture, SHORT, out=tmp_path / "whole"))
    killed = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(tiny_mixture), str(killed)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert latest_checkpoint(killed).name == "step-000010.pt"
    assert len(losses(killed)) == 13  # steps 11-13 were logged but never checkpointed
    train(tiny_mixture, SHORT, out=killed, resume=True)
    resumed = losses(killed)
    assert len(resumed) == 30
    assert resumed == pytest.approx(whole, rel=1e-6, abs=1e-6)
    events = [e["event"] for e in read_jsonl(killed / "events.jsonl")]
    assert "resume" in events


def test_a_spike_rolls_back_to_the_last_checkpoint_and_skips_its_batches(tiny_mixture: Path,
                                                                          tmp_path: Path) -> None:
    fired = []

    def poison(step: int, info: dict) -> None:
        if step == 15 and not fired:
            fired.append(step)
            with torch.no_grad():
                info["model"].wte.weight.mul_(float("nan"))

    out = train(tiny_mixture, SHORT, out=tmp_path / "spiky", callbacks=[poison])
    spikes = [e for e in read_jsonl(out / "events.jsonl") if e["event"] == "spike"]
    assert len(spikes) == 1
    assert spikes[0]["step"] == 16 and spikes[0]["rolled_back_to"] == 10 and spikes[0]["skipped_batches"] == 6
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 31)) and all(math.isfinite(r["loss"]) for r in rows)
    state = torch.load(latest_checkpoint(out), weights_only=False)
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert state["rollbacks"] == 1


def test_two_gloo_processes_match_a_single_process_run(tiny_mixture: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(size="tiny", tokens=8 * 64 * 6, checkpoint_every=100)
    single = losses(train(tiny_mixture, cfg, out=tmp_path / "single"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mixlab", "proxy", "train", str(tiny_mixture), "--config", "tiny", "--tokens",
           str(8 * 64 * 6), "--checkpoint-every", "100", "--out", str(tmp_path / "ddp"), "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both workers
        output, _ = proc.communicate()
    assert proc.returncode == 0, output[-3000:]
    ddp = losses(tmp_path / "ddp")
    assert len(ddp) == 6
    assert ddp == pytest.approx(single, rel=1e-4)

"""Proxy training faults: non-finite states are never checkpointed, config checks, torn logs, misuse of train()."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from proxy_train.train import (
    ProxyUsageError,
    TrainConfig,
    checkpoint_path,
    config_from_args,
    read_jsonl,
    train,
)

torch.set_num_threads(1)
# 12 steps of 8 x 64 tokens, checkpoints at 0, 4, 8, 12, all kept (so every checkpoint ever saved can be checked)
FAULT = TrainConfig(size="tiny", tokens=8 * 64 * 12, checkpoint_every=4, keep_checkpoints=10)


def checkpoint_is_finite(path: Path) -> bool:
    state = torch.load(path, map_location="cpu", weights_only=False)
    tensors = [*state["model"].values()] + [t for per_param in state["optimizer"]["state"].values()
                                            for t in per_param.values()]
    return all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())


def listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and mtime (to show a refused call wrote nothing)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def finished(tiny_mixture: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished FAULT run (read-only: tests that change it work on a copy)."""
    return train(tiny_mixture, FAULT, out=tmp_path_factory.mktemp("finished") / "proxy")


# ---------------------------------------------------------------------------------------------------------------
# 1. a step that leaves a non-finite state on a checkpoint step


@pytest.mark.parametrize("target", ["weights", "optimizer"])
def test_a_non_finite_state_on_a_checkpoint_step_is_not_saved_and_rolls_back(
        tiny_mixture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    real_step = torch.optim.AdamW.step
    calls = []

    def faulty_step(self: torch.optim.AdamW, *args: object, **kwargs: object) -> object:
        result = real_step(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 8:  # optimizer step 8 = training step 8, a checkpoint step
            first = self.param_groups[0]["params"][0]
            with torch.no_grad():
                if target == "weights":
                    first.fill_(float("nan"))
                else:  # finite weights, but this parameter would never move again
                    self.state[first]["exp_avg_sq"].fill_(float("inf"))
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", faulty_step)
    out = train(tiny_mixture, FAULT, out=tmp_path / "proxy")
    spikes = [e for e in read_jsonl(out / "events.jsonl") if e["event"] == "spike"]
    assert [(e["step"], e["rolled_back_to"], e["skipped_batches"], e["cause"]) for e in spikes] == [
        (8, 4, 4, "non-finite state")]
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 13)) and all(math.isfinite(r["loss"]) for r in rows)
    saved = sorted((out / "checkpoints").glob("step-*.pt"))
    assert [p.name for p in saved] == [checkpoint_path(out, s).name for s in (0, 4, 8, 12)]
    assert all(checkpoint_is_finite(p) for p in saved)


def test_resume_passes_over_a_non_finite_checkpoint(finished: Path, tiny_mixture: Path, tmp_path: Path) -> None:
    out = shutil.copytree(finished, tmp_path / "proxy")
    newest = checkpoint_path(out, 12)
    state = torch.load(newest, weights_only=False)
    state["model"]["wte.weight"].fill_(float("nan"))  # as an older trainer could have saved it
    torch.save(state, newest)
    train(tiny_mixture, FAULT, out=out, resume=True)
    resumes = [e for e in read_jsonl(out / "events.jsonl") if e["event"] == "resume"]
    assert resumes[-1]["step"] == 8
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == list(range(1, 13))
    assert checkpoint_is_finite(newest)


# ---------------------------------------------------------------------------------------------------------------
# 2. the config is checked when it is built


@pytest.mark.parametrize(("values", "option"), [
    ({"spike_factor": 0}, "--spike-factor"), ({"spike_factor": -1.0}, "--spike-factor"),
    ({"spike_factor": 1.0}, "--spike-factor"), ({"spike_factor": float("nan")}, "--spike-factor"),
    ({"tokens": 0}, "--tokens"), ({"global_batch": -8}, "--global-batch"), ({"micro_batch": 0}, "--micro-batch"),
    ({"lr": 0.0}, "--lr"), ({"lr": -1e-3}, "--lr"), ({"checkpoint_every": 0}, "--checkpoint-every"),
    ({"size": "huge"}, "--config"), ({"batching": "sorted"}, "--batching"), ({"tokens": 1.5}, "--tokens"),
    ({"keep_checkpoints": 0}, "TrainConfig.keep_checkpoints"), ({"grad_clip": 0}, "TrainConfig.grad_clip"),
    ({"warmup_fraction": 1.5}, "TrainConfig.warmup_fraction"), ({"betas": (0.9, 1.0)}, "TrainConfig.betas"),
    ({"max_rollbacks": -1}, "TrainConfig.max_rollbacks"), ({"attn_backend": "fast"}, "--attn-backend"),
])
def test_a_config_that_cannot_work_is_refused_when_built(values: dict, option: str) -> None:
    with pytest.raises(ProxyUsageError) as caught:
        TrainConfig(**values)
    message = str(caught.value)
    assert message.startswith(f"{option} must be ") and "\n" not in message
    with pytest.raises(ProxyUsageError, match=option):
        config_from_args({**values, "size": values.get("size", "tiny")})


def test_default_and_test_configs_are_valid() -> None:
    for size in ("tiny", "125m", "350m"):
        TrainConfig(size=size).resolved()
    assert config_from_args({"spike_factor": 1.5, "lr": None, "threads": 1}).spike_factor == 1.5


# ---------------------------------------------------------------------------------------------------------------
# 3. a torn last line of metrics.jsonl (a kill during the append) does not block --resume


class Died(Exception):
    """Stands in for a kill (the subprocess SIGKILL test is in test_proxy_train.py)."""


def test_resume_drops_a_torn_metrics_line_and_the_rows_after_the_checkpoint(
        finished: Path, tiny_mixture: Path, tmp_path: Path) -> None:
    def die(step: int, info: dict) -> None:
        if step == 6:
            raise Died

    out = tmp_path / "proxy"
    with pytest.raises(Died):
        train(tiny_mixture, FAULT, out=out, callbacks=[die])
    for name, torn in (("metrics.jsonl", '{"grad_norm": 0.5, "loss": 4.'), ("events.jsonl", '{"event": "chec')):
        with (out / name).open("a") as log:
            log.write(torn)  # no newline: the kill came in the middle of the write
    train(tiny_mixture, FAULT, out=out, resume=True)
    for name in ("metrics.jsonl", "events.jsonl"):
        [json.loads(line) for line in (out / name).read_text().splitlines()]  # every line is whole
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == list(range(1, 13))
    assert [r["loss"] for r in read_jsonl(out / "metrics.jsonl")] == pytest.approx(
        [r["loss"] for r in read_jsonl(finished / "metrics.jsonl")], rel=1e-6, abs=1e-6)
    assert [e["step"] for e in read_jsonl(out / "events.jsonl") if e["event"] == "resume"] == [4]


def test_a_bad_line_before_the_last_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"st\n{"step": 2}\n{"step": 3')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a JSON row"):
        read_jsonl(path)
    path.write_text('{"step": 1}\n{"step": 2}\n{"st')
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]


# ---------------------------------------------------------------------------------------------------------------
# 4. misuse: one-line ProxyUsageError before anything is written


def test_a_run_dir_without_streams_yaml_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    run = tmp_path / "not_a_mixture"
    run.mkdir()
    with pytest.raises(ProxyUsageError, match=r"streams\.yaml not found") as caught:
        train(run, FAULT)
    assert "\n" not in str(caught.value)
    assert list(run.iterdir()) == []  # no proxy/tiny/, no config.json
    with pytest.raises(ProxyUsageError, match=r"streams\.yaml"):
        train(tmp_path / "missing", FAULT, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_checkpoints_without_resume_are_refused_and_left_alone(finished: Path, tiny_mixture: Path) -> None:
    before = listing(finished)
    with pytest.raises(ProxyUsageError) as caught:
        train(tiny_mixture, FAULT, out=finished)
    assert str(caught.value) == f"{finished} has checkpoints: pass --resume to continue or --out to start elsewhere"
    assert listing(finished) == before


def test_resume_with_another_config_is_refused_and_names_the_field(finished: Path, tiny_mixture: Path) -> None:
    before = listing(finished)
    with pytest.raises(ProxyUsageError) as caught:
        train(tiny_mixture, TrainConfig(**{**FAULT.to_dict(), "lr": 1e-3}), out=finished, resume=True)
    message = str(caught.value)
    assert message.startswith(f"{finished} was trained with another config (lr 0.003 -> 0.001)") and "\n" not in message
    assert "pass --out" in message
    assert listing(finished) == before


@pytest.mark.parametrize(("values", "pattern"), [
    ({"micro_batch": 3}, r"--global-batch 8 is not a multiple of --micro-batch x ranks \(3 x 1\)"),
    ({"tokens": 100}, r"--tokens 100 is less than one global batch \(8 x 64 tokens\)"),
])
def test_a_budget_or_batch_that_cannot_run_is_refused_before_anything_is_written(
        tiny_mixture: Path, tmp_path: Path, values: dict, pattern: str) -> None:
    with pytest.raises(ProxyUsageError, match=pattern):
        train(tiny_mixture, TrainConfig(**{**FAULT.to_dict(), **values}), out=tmp_path / "proxy")
    assert not (tmp_path / "proxy").exists()

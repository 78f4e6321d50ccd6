"""Train an MPT proxy on a mixture run's streams: schedule, checkpoints, resume, spike guard, DDP, metrics.

Layout of ``OUT`` (default ``RUN_DIR/proxy/<size>/``): ``config.json``, ``metrics.jsonl`` (one row per step),
``events.jsonl`` (checkpoints, resumes, spikes), ``checkpoints/step-NNNNNN.pt`` (model, optimizer, scheduler,
RNG, dataloader and guard state), and at the end ``metrics.parquet`` and ``summary.parquet``.
Run under ``torchrun`` for DDP (gloo on CPU, NCCL on CUDA); rank 0 writes every file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from proxy_train import data
from proxy_train.attention import choose_backend
from proxy_train.model import MPT, config_for

log = logging.getLogger(__name__)

# Per-size defaults: llm-foundry's mpt-125m/350m yamls (lr, global batch, token budget); tiny is for CPU.
SIZE_DEFAULTS: dict[str, dict[str, Any]] = {
    "tiny": {"lr": 3e-3, "global_batch": 8, "tokens": 400_000},  # 97 steps at max_seq_len 512
    "125m": {"lr": 6e-4, "global_batch": 256, "tokens": 2_500_000_000},
    "350m": {"lr": 3e-4, "global_batch": 256, "tokens": 7_000_000_000},
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a proxy run; ``None`` fields take the size's defaults (SIZE_DEFAULTS)."""

    size: str = "tiny"
    tokens: int | None = None  # token budget; steps = tokens // (global_batch * max_seq_len)
    global_batch: int | None = None  # sequences per optimizer step, over all ranks
    micro_batch: int | None = None  # sequences per forward pass on one rank (default: global_batch / ranks)
    lr: float | None = None
    warmup_fraction: float = 0.02
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio (llm-foundry alpha_f)
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    seed: int = 17
    data_seed: int = data.SHUFFLE_SEED
    batching: str = "random"  # or stratified: every global batch holds the exact proportions
    checkpoint_every: int = 20
    keep_checkpoints: int = 3
    spike_factor: float = 2.0  # a loss above spike_factor x its running average is a spike
    spike_warmup: int = 10  # steps before the running average is trusted (non-finite losses always count)
    max_rollbacks: int = 5
    attn_backend: str = "auto"
    compile: bool | None = None  # torch.compile the model (default: on CUDA)
    device: str = "auto"

    def resolved(self) -> TrainConfig:
        """A copy with the size's defaults filled in."""
        if self.size not in SIZE_DEFAULTS:
            raise ValueError(f"unknown proxy size {self.size!r}; choose one of {', '.join(SIZE_DEFAULTS)}")
        defaults = SIZE_DEFAULTS[self.size]
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def to_dict(self) -> dict:
        """Plain dict for config.json and checkpoints."""
        return asdict(self)


# --------------------------------------------------------------------------------------------------------------
# Schedule and spike guard


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to ``min_ratio`` at ``total`` (step counts from 0)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass
class SpikeGuard:
    """Flags a loss that is non-finite or ``factor`` times above its running (exponential) average."""

    factor: float = 2.0
    warmup: int = 10
    decay: float = 0.9
    average: float | None = None
    seen: int = 0

    def is_spike(self, loss: float) -> bool:
        """Whether ``loss`` is a spike; normal losses update the running average."""
        if not math.isfinite(loss):
            return True
        if self.seen >= self.warmup and self.average is not None and loss > self.factor * self.average:
            return True
        self.average = loss if self.average is None else self.decay * self.average + (1 - self.decay) * loss
        self.seen += 1
        return False

    def state(self) -> dict:
        """Checkpointable state."""
        return {"average": self.average, "seen": self.seen}


# --------------------------------------------------------------------------------------------------------------
# Processes, devices, files


@dataclass
class World:
    """This process's place in a (possibly single-process) DDP job."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes files."""
        return self.rank == 0


def init_world(device_kind: str) -> World:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, NCCL on CUDA)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return World(rank=dist.get_rank(), size=size, local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(requested: str, world: World) -> torch.device:
    """cuda:<local rank> when available (or asked), else cpu."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        return torch.device("cuda", world.local_rank)
    return torch.device(requested)


def _append_jsonl(path: Path, row: dict) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(row, sort_keys=True) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON Lines file (empty if missing)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def checkpoint_path(out: Path, step: int) -> Path:
    """Where the checkpoint of ``step`` lives."""
    return out / "checkpoints" / f"step-{step:06d}.pt"


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint in ``out`` (or ``None``)."""
    found = sorted((out / "checkpoints").glob("step-*.pt"))
    return found[-1] if found else None


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------------------------------------------
# The run


@dataclass
class Trainer:
    """State of one proxy run; :func:`train` builds and drives it."""

    cfg: TrainConfig
    mix: data.MixtureStreams
    out: Path
    world: World
    device: torch.device
    model: MPT
    module: torch.nn.Module  # what forward runs through: the model, DDP-wrapped and/or compiled
    ddp: DistributedDataParallel | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    loader: Any
    total_steps: int
    guard: SpikeGuard
    step: int = 0
    tokens_seen: int = 0
    rollbacks: int = 0
    wall: float = 0.0
    callbacks: Sequence[Callable[[int, dict], None]] = field(default_factory=tuple)

    @property
    def micro_batch(self) -> int:
        """Sequences per forward pass on this rank."""
        return self.cfg.micro_batch or self.cfg.global_batch // self.world.size

    @property
    def accumulation(self) -> int:
        """Micro-batches per optimizer step on this rank."""
        return self.cfg.global_batch // (self.micro_batch * self.world.size)

    def save(self) -> Path:
        """Write a checkpoint of the current step (rank 0), keep the newest few, sync ranks."""
        path = checkpoint_path(self.out, self.step)
        if self.world.main:
            path.parent.mkdir(parents=True, exist_ok=True)
            state = {"step": self.step, "tokens_seen": self.tokens_seen, "rollbacks": self.rollbacks,
                     "wall": self.wall, "model": self.model.state_dict(),
                     "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                     "guard": self.guard.state(), "loader": self.loader.state_dict(), "rng": _rng_state(),
                     "train_config": self.cfg.to_dict(), "model_config": self.model.cfg.to_dict(),
                     "run_dir": str(self.mix.run_dir)}
            tmp = path.with_suffix(".tmp")
            torch.save(state, tmp)
            os.replace(tmp, path)
            for old in sorted(path.parent.glob("step-*.pt"))[: -self.cfg.keep_checkpoints]:
                old.unlink()
            _append_jsonl(self.out / "events.jsonl", {"event": "checkpoint", "step": self.step, "path": str(path)})
        if self.world.size > 1:
            dist.barrier()
        return path

    def restore(self, path: Path, with_loader: bool) -> None:
        """Load model, optimizer, scheduler, guard and RNG state (and the dataloader position if asked)."""
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.guard.average, self.guard.seen = state["guard"]["average"], state["guard"]["seen"]
        self.step, self.tokens_seen, self.wall = state["step"], state["tokens_seen"], state["wall"]
        self.rollbacks = max(self.rollbacks, state["rollbacks"])
        _set_rng_state(state["rng"])
        if with_loader:
            self.loader.load_state_dict(state["loader"])

    def batches(self) -> Iterator[dict]:
        """Micro-batches forever: the loader's epochs one after another."""
        empty_epochs = 0
        while empty_epochs < 2:
            count = 0
            for count, batch in enumerate(self.loader, 1):  # noqa: B007 (count is read after the loop)
                yield batch
            empty_epochs = empty_epochs + 1 if count == 0 else 0
        raise RuntimeError(f"the training streams of {self.mix.run_dir} yield no samples")

    def forward_backward(self, batches: Iterator[dict]) -> float:
        """Accumulate gradients over one global batch; returns its mean loss (averaged over ranks)."""
        total = torch.zeros((), device=self.device)
        for i in range(self.accumulation):
            tokens = next(batches)["tokens"].to(self.device, non_blocking=True)
            last = i == self.accumulation - 1
            sync = self.ddp.no_sync() if self.ddp is not None and not last else contextlib.nullcontext()
            with sync, torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                       enabled=self.device.type == "cuda"):
                loss = self._loss(tokens) / self.accumulation
            loss.backward()
            total += loss.detach()
        if self.world.size > 1:
            dist.all_reduce(total, op=dist.ReduceOp.AVG)
        return float(total)

    def _loss(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.module(tokens[:, :-1], tokens[:, 1:])

    def rollback(self, loss: float) -> None:
        """Return to the last checkpoint after a spike; the loader keeps its place, so the batches since are skipped."""
        self.rollbacks += 1
        path = latest_checkpoint(self.out)
        if self.rollbacks > self.cfg.max_rollbacks or path is None:
            raise RuntimeError(f"loss spike at step {self.step + 1} (loss {loss}); {self.rollbacks - 1} rollbacks "
                               f"already (max_rollbacks={self.cfg.max_rollbacks}): giving up")
        spiked_at = self.step + 1
        self.optimizer.zero_grad(set_to_none=True)
        self.restore(path, with_loader=False)
        if self.world.main:
            _truncate_metrics(self.out, self.step)
        event = {"event": "spike", "step": spiked_at, "loss": loss if math.isfinite(loss) else str(loss),
                 "average": self.guard.average, "rolled_back_to": self.step,
                 "skipped_batches": spiked_at - self.step, "rollbacks": self.rollbacks}
        log.warning("loss spike at step %d (loss %s, running average %s): rolled back to step %d, skipping %d "
                    "batches", spiked_at, loss, self.guard.average, self.step, spiked_at - self.step)
        if self.world.main:
            _append_jsonl(self.out / "events.jsonl", event)

    def run(self) -> None:
        """Train until the token budget is spent."""
        from tqdm import tqdm

        batches = self.batches()
        bar = tqdm(total=self.total_steps, initial=self.step, desc="proxy", unit="step",
                   disable=not self.world.main or None)
        tokens_per_step = self.cfg.global_batch * self.mix.max_seq_len
        while self.step < self.total_steps:
            start = time.perf_counter()
            loss = self.forward_backward(batches)
            if self.guard.is_spike(loss):
                self.rollback(loss)
                bar.n = self.step
                continue
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            lr = self.scheduler.get_last_lr()[0]
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            self.tokens_seen += tokens_per_step
            elapsed = time.perf_counter() - start
            self.wall += elapsed
            row = {"step": self.step, "tokens": self.tokens_seen, "loss": loss, "lr": lr,
                   "grad_norm": float(grad_norm), "tokens_per_s": tokens_per_step / elapsed, "wall_s": self.wall}
            if self.world.main:
                _append_jsonl(self.out / "metrics.jsonl", row)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{row['tokens_per_s']:.0f}")
            for callback in self.callbacks:
                callback(self.step, {**row, "model": self.model})
            if self.step % self.cfg.checkpoint_every == 0 or self.step == self.total_steps:
                log.info("step %d/%d: loss %.4f, %.0f tokens/s", self.step, self.total_steps, loss,
                         row["tokens_per_s"])
                self.save()
        bar.close()


def _check_config(out: Path, cfg: TrainConfig) -> None:
    saved = json.loads((out / "config.json").read_text())
    new = json.loads(json.dumps(cfg.to_dict()))
    differ = sorted(k for k in new if saved.get(k) != new[k] and k not in ("device",))
    if differ:
        raise ValueError(f"{out / 'config.json'}: --resume with a different config ({', '.join(differ)}); "
                         f"use the same settings or a new output directory")


def _prepare_output(out: Path, cfg: TrainConfig, resume: bool, world: World) -> Path | None:
    """Create ``out`` (rank 0); returns the checkpoint to resume from, if any."""
    latest = latest_checkpoint(out)
    if latest is not None and not resume:
        raise FileExistsError(f"{out} already holds checkpoints (latest {latest.name}); pass --resume to continue "
                              f"it or choose another output directory")
    if latest is not None:
        _check_config(out, cfg)
    if world.main:
        out.mkdir(parents=True, exist_ok=True)
        if latest is None:
            for name in ("metrics.jsonl", "events.jsonl"):
                (out / name).unlink(missing_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")
    return latest


def _truncate_metrics(out: Path, step: int) -> None:
    """Drop metric rows after ``step`` (logged by a run that died before its next checkpoint)."""
    rows = [r for r in read_jsonl(out / "metrics.jsonl") if r["step"] <= step]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def build_trainer(run_dir: Path, cfg: TrainConfig, out: Path, world: World,
                  callbacks: Sequence[Callable[[int, dict], None]] = ()) -> Trainer:
    """Model, optimizer, schedule and data for a run (nothing trained yet)."""
    mix = data.load_streams(run_dir)
    device = pick_device(cfg.device, world)
    if cfg.global_batch % world.size or (cfg.micro_batch and cfg.global_batch % (cfg.micro_batch * world.size)):
        raise ValueError(f"global_batch {cfg.global_batch} is not a multiple of micro_batch x ranks "
                         f"({cfg.micro_batch or '?'} x {world.size})")
    total_steps = cfg.tokens // (cfg.global_batch * mix.max_seq_len)
    if total_steps < 1:
        raise ValueError(f"token budget {cfg.tokens} is less than one global batch "
                         f"({cfg.global_batch} x {mix.max_seq_len} tokens)")
    torch.manual_seed(cfg.seed)
    model_cfg = config_for(cfg.size, mix.vocab_size, mix.max_seq_len, choose_backend(device, cfg.attn_backend))
    model = MPT(model_cfg).to(device)
    ddp = None
    if world.size > 1:
        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    module: torch.nn.Module = ddp or model
    if cfg.compile if cfg.compile is not None else device.type == "cuda":
        module = torch.compile(module)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=1e-8,
                                  weight_decay=cfg.weight_decay, fused=device.type == "cuda")
    warmup = max(1, round(cfg.warmup_fraction * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, warmup, cfg.min_lr_ratio))
    micro = cfg.micro_batch or cfg.global_batch // world.size
    dataset = data.train_dataset(mix, micro, epoch_size=total_steps * cfg.global_batch, seed=cfg.data_seed,
                                 batching_method=cfg.batching)
    return Trainer(cfg=cfg, mix=mix, out=out, world=world, device=device, model=model, module=module, ddp=ddp,
                   optimizer=optimizer, scheduler=scheduler, loader=data.train_loader(dataset, micro),
                   total_steps=total_steps, guard=SpikeGuard(cfg.spike_factor, cfg.spike_warmup),
                   callbacks=callbacks)


def train(run_dir: str | Path, cfg: TrainConfig, out: str | Path | None = None, resume: bool = False,
          callbacks: Sequence[Callable[[int, dict], None]] = ()) -> Path:
    """Train a proxy on ``run_dir``'s streams; returns the output directory (see the module docstring)."""
    cfg = cfg.resolved()
    run_dir = Path(run_dir).resolve()
    out = Path(out) if out is not None else run_dir / "proxy" / cfg.size
    world = init_world("cuda" if cfg.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    latest = _prepare_output(out, cfg, resume, world)
    data.clean_shared_memory()  # collective under DDP: every rank calls it
    trainer = build_trainer(run_dir, cfg, out, world, callbacks)
    log.info("proxy %s: %d params, %d steps x %d sequences x %d tokens, backend %s, %d rank(s) on %s",
             cfg.size, trainer.model.num_params(), trainer.total_steps, cfg.global_batch, trainer.mix.max_seq_len,
             trainer.model.cfg.attn_backend, world.size, trainer.device)
    if latest is not None:
        trainer.restore(latest, with_loader=True)
        if world.main:
            _truncate_metrics(out, trainer.step)
            _append_jsonl(out / "events.jsonl", {"event": "resume", "step": trainer.step, "path": str(latest)})
        log.info("resumed from %s (step %d)", latest, trainer.step)
    else:
        trainer.save()  # step 0: the spike guard always has a checkpoint to return to
    trainer.run()
    if world.main:
        write_summary(trainer)
    return out


def write_summary(trainer: Trainer) -> None:
    """metrics.parquet (every step) and summary.parquet (one row for the run)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = read_jsonl(trainer.out / "metrics.jsonl")
    pq.write_table(pa.Table.from_pylist(rows), trainer.out / "metrics.parquet")
    spikes = [e for e in read_jsonl(trainer.out / "events.jsonl") if e["event"] == "spike"]
    last = [r["loss"] for r in rows[-10:]]
    summary = {"run_dir": str(trainer.mix.run_dir), "size": trainer.cfg.size, "params": trainer.model.num_params(),
               "steps": trainer.step, "tokens": trainer.tokens_seen, "final_loss": rows[-1]["loss"],
               "mean_loss_last10": float(np.mean(last)), "wall_s": trainer.wall,
               "tokens_per_s": trainer.tokens_seen / trainer.wall if trainer.wall else None,
               "spikes": len(spikes), "attn_backend": trainer.model.cfg.attn_backend,
               "world_size": trainer.world.size, "device": str(trainer.device),
               "proportions": json.dumps({k: p for k, (_, p) in trainer.mix.train.items()}),
               "config": json.dumps(trainer.cfg.to_dict(), sort_keys=True)}
    pq.write_table(pa.Table.from_pylist([summary]), trainer.out / "summary.parquet")
    log.info("proxy done: %d steps, final loss %.4f, %s", trainer.step, summary["final_loss"], trainer.out)


def config_from_args(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from CLI values (unknown or None values ignored)."""
    names = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in values.items() if k in names and v is not None})

"""Train an MPT proxy on a mixture run's streams: schedule, checkpoints, resume, spike guard, DDP, metrics.

Layout of ``OUT`` (default ``RUN_DIR/proxy/<size>/``): ``config.json``, ``metrics.jsonl`` (one row per step),
``events.jsonl`` (checkpoints, resumes, spikes), ``checkpoints/step-NNNNNN.pt`` (model, optimizer, scheduler,
RNG, dataloader and guard state), and at the end ``metrics.parquet`` and ``summary.parquet``.
Run under ``torchrun`` for DDP (gloo on CPU, NCCL on CUDA); rank 0 writes every file. Mistakes in the request
(options, run directory, output directory) raise :class:`ProxyUsageError` before anything is written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from filters.errors import UserError
from filters.jsonl import append_jsonl, read_jsonl, write_jsonl
from mixtures.streams_manifest import StreamsError, StreamsManifest
from proxy_train import data
from proxy_train.attention import BACKENDS, choose_backend
from proxy_train.model import MPT, config_for

log = logging.getLogger(__name__)

# Per-size defaults: llm-foundry's mpt-125m/350m yamls (lr, global batch, token budget); tiny is for CPU.
SIZE_DEFAULTS: dict[str, dict[str, Any]] = {
    "tiny": {"lr": 3e-3, "global_batch": 8, "tokens": 400_000},  # 97 steps at max_seq_len 512
    "small": {"lr": 2e-3, "global_batch": 16, "tokens": 614_400},  # 600 steps at max_seq_len 64 (tiny copies)
    "125m": {"lr": 6e-4, "global_batch": 256, "tokens": 2_500_000_000},
    "350m": {"lr": 3e-4, "global_batch": 256, "tokens": 7_000_000_000},
}

# Fields of TrainConfig that a resumed run may change (how it runs, not what it computes or where it goes).
RESUMABLE_CHANGES = frozenset({"device", "compile", "attn_backend", "keep_checkpoints", "max_rollbacks"})
# TrainConfig fields that `mixlab proxy train` sets, by flag (the others are named as TrainConfig.<field>).
CLI_FLAGS = {"size": "--config", "tokens": "--tokens", "global_batch": "--global-batch",
             "micro_batch": "--micro-batch", "lr": "--lr", "seed": "--seed", "data_seed": "--data-seed",
             "batching": "--batching", "checkpoint_every": "--checkpoint-every", "spike_factor": "--spike-factor",
             "attn_backend": "--attn-backend", "compile": "--compile", "device": "--device"}


class ProxyUsageError(UserError):
    """A mistake in how a proxy run was asked for: an option's value, the run directory, the output directory.

    The message is one line that says what to do; ``mixlab proxy train`` prints it as ``error: ...`` and exits
    with status 2. :func:`train` raises it before it writes anything.
    """


def _option(name: str) -> str:
    return CLI_FLAGS.get(name, f"TrainConfig.{name}")


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

    def __post_init__(self) -> None:
        _validate(self)

    def resolved(self) -> TrainConfig:
        """A copy with the size's defaults filled in."""
        defaults = SIZE_DEFAULTS[self.size]
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def to_dict(self) -> dict:
        """Plain dict for config.json and checkpoints."""
        return asdict(self)


def _validate(cfg: TrainConfig) -> None:
    """Raise ProxyUsageError naming the first field whose value cannot work (``None`` means the size's default)."""

    def fail(name: str, rule: str) -> NoReturn:
        raise ProxyUsageError(f"{_option(name)} must be {rule}, got {getattr(cfg, name)!r}")

    def number(name: str, integer: bool) -> Any:
        value = getattr(cfg, name)
        if value is None and name in ("tokens", "global_batch", "micro_batch", "lr"):
            return None
        if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
            fail(name, "an integer" if integer else "a number")
        return value

    if cfg.size not in SIZE_DEFAULTS:
        fail("size", f"one of {', '.join(SIZE_DEFAULTS)}")
    for name in ("tokens", "global_batch", "micro_batch", "checkpoint_every", "keep_checkpoints"):
        value = number(name, integer=True)
        if value is not None and value < 1:
            fail(name, ">= 1")
    for name in ("seed", "data_seed", "spike_warmup", "max_rollbacks"):
        if number(name, integer=True) < 0:
            fail(name, ">= 0")
    for name in ("lr", "grad_clip"):
        value = number(name, integer=False)
        if value is not None and not value > 0:  # `not >` also catches NaN
            fail(name, "> 0")
    # <= 1 flags every loss above its running average: on a noisy curve the run rolls back until it gives up
    if not number("spike_factor", integer=False) > 1:
        fail("spike_factor", "> 1 (a loss above spike_factor x its running average is a spike)")
    for name in ("warmup_fraction", "min_lr_ratio"):
        if not 0 <= number(name, integer=False) <= 1:
            fail(name, "between 0 and 1")
    if not number("weight_decay", integer=False) >= 0:
        fail("weight_decay", ">= 0")
    betas = cfg.betas
    if (not isinstance(betas, tuple | list) or len(betas) != 2
            or not all(isinstance(b, int | float) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
        fail("betas", "two numbers in [0, 1)")
    if cfg.batching not in ("random", "stratified"):
        fail("batching", "random or stratified")
    if cfg.attn_backend not in ("auto", *BACKENDS):
        fail("attn_backend", f"auto or one of {', '.join(BACKENDS)}")
    if cfg.compile is not None and not isinstance(cfg.compile, bool):
        fail("compile", "true, false or None")
    if cfg.device != "auto":
        try:
            torch.device(cfg.device)
        except (RuntimeError, TypeError):
            fail("device", "auto, cpu, cuda or cuda:N")


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


def checkpoint_path(out: Path, step: int) -> Path:
    """Where the checkpoint of ``step`` lives."""
    return out / "checkpoints" / f"step-{step:06d}.pt"


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint in ``out`` (or ``None``)."""
    found = sorted((out / "checkpoints").glob("step-*.pt"))
    return found[-1] if found else None


def all_finite(tensors: Iterable[Any]) -> bool:
    """Whether every floating-point tensor among ``tensors`` is finite (one host sync per device)."""
    flags: dict[torch.device, list[torch.Tensor]] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            flags.setdefault(t.device, []).append(torch.isfinite(t).all())
    return all(bool(torch.stack(group).all()) for group in flags.values())


def _state_tensors(model: dict, optimizer: dict) -> Iterator[Any]:
    """The tensors of a model state dict and an optimizer's ``state`` (param index -> {name: tensor})."""
    yield from model.values()
    for per_param in optimizer.values():
        yield from per_param.values()


def finite_checkpoint(out: Path) -> tuple[Path, dict] | tuple[None, None]:
    """The newest checkpoint whose model and optimizer state are finite, loaded on the CPU (or ``None, None``)."""
    for path in sorted((out / "checkpoints").glob("step-*.pt"), reverse=True):
        state = torch.load(path, map_location="cpu", weights_only=False)
        if all_finite(_state_tensors(state["model"], state["optimizer"]["state"])):
            return path, state
        log.warning("%s holds non-finite weights or optimizer state: passed over", path)
    return None, None


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
    mix: StreamsManifest
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
        return self.cfg.micro_batch or self.global_batch // self.world.size

    @property
    def global_batch(self) -> int:
        """Sequences per optimizer step (the config is resolved before a trainer exists)."""
        assert self.cfg.global_batch is not None
        return self.cfg.global_batch

    @property
    def accumulation(self) -> int:
        """Micro-batches per optimizer step on this rank."""
        return self.global_batch // (self.micro_batch * self.world.size)

    def state_is_finite(self) -> bool:
        """Whether the weights, buffers and optimizer state are all finite (the same answer on every rank)."""
        finite = all_finite(_state_tensors(self.model.state_dict(), self.optimizer.state))
        if self.world.size > 1:
            flag = torch.tensor(0.0 if finite else 1.0, device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            finite = not flag.item()
        return finite

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0), keep the newest few, sync ranks.

        A non-finite state is never saved (a rollback would return to it): then nothing is written and the
        result is ``None``.
        """
        if not self.state_is_finite():
            return None
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
            append_jsonl(self.out / "events.jsonl", {"event": "checkpoint", "step": self.step, "path": str(path)})
        if self.world.size > 1:
            dist.barrier()
        return path

    def restore(self, state: dict, with_loader: bool) -> None:
        """Load model, optimizer, scheduler, guard and RNG state from a loaded checkpoint (and the dataloader
        position if asked)."""
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

    def rollback(self, bad_step: int, loss: float, cause: str) -> None:
        """Return to the newest finite checkpoint after a spike at ``bad_step`` (a loss spike, or a non-finite state
        after that step); the loader keeps its place, so the batches since that checkpoint are skipped."""
        self.rollbacks += 1
        what = f"loss spike at step {bad_step} (loss {loss})" if cause == "loss" else \
            f"non-finite weights or optimizer state after step {bad_step}"
        if self.rollbacks > self.cfg.max_rollbacks:
            raise RuntimeError(f"{what}; {self.rollbacks - 1} rollbacks already (max_rollbacks="
                               f"{self.cfg.max_rollbacks}): giving up")
        path, state = finite_checkpoint(self.out)
        if path is None or state is None:
            raise RuntimeError(f"{what}; no checkpoint in {self.out / 'checkpoints'} is finite: giving up")
        self.optimizer.zero_grad(set_to_none=True)
        self.restore(state, with_loader=False)
        if self.world.main:
            _truncate_metrics(self.out, self.step)
        event = {"event": "spike", "cause": cause, "step": bad_step,
                 "loss": loss if math.isfinite(loss) else str(loss), "average": self.guard.average,
                 "rolled_back_to": self.step, "skipped_batches": bad_step - self.step, "rollbacks": self.rollbacks}
        log.warning("%s, running average %s: rolled back to step %d (%s), skipping %d batches", what,
                    self.guard.average, self.step, path.name, bad_step - self.step)
        if self.world.main:
            append_jsonl(self.out / "events.jsonl", event)

    def run(self) -> None:
        """Train until the token budget is spent."""
        from tqdm import tqdm

        batches = self.batches()
        bar = tqdm(total=self.total_steps, initial=self.step, desc="proxy", unit="step",
                   disable=not self.world.main or None)
        tokens_per_step = self.global_batch * self.mix.max_seq_len
        while self.step < self.total_steps:
            start = time.perf_counter()
            loss = self.forward_backward(batches)
            if self.guard.is_spike(loss):
                self.rollback(self.step + 1, loss, cause="loss")
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
                append_jsonl(self.out / "metrics.jsonl", row)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{row['tokens_per_s']:.0f}")
            for callback in self.callbacks:
                callback(self.step, {**row, "model": self.model})
            if self.step % self.cfg.checkpoint_every == 0 or self.step == self.total_steps:
                log.info("step %d/%d: loss %.4f, %.0f tokens/s", self.step, self.total_steps, loss,
                         row["tokens_per_s"])
                if self.save() is None:  # this step left the weights or optimizer state non-finite
                    self.rollback(self.step, loss, cause="non-finite state")
                    bar.n = self.step
        bar.close()


@dataclass(frozen=True)
class Plan:
    """What a run needs to know before anything is built or written: data, device and number of steps."""

    mix: StreamsManifest
    device: torch.device
    attn_backend: str
    total_steps: int


def plan_run(run_dir: Path, cfg: TrainConfig, world: World) -> Plan:
    """Check ``cfg`` against the run directory, the ranks and the machine; raises ProxyUsageError."""
    assert cfg.global_batch is not None and cfg.tokens is not None, "plan_run needs a resolved config"
    try:
        mix = data.load_streams(run_dir)
    except StreamsError as err:
        raise ProxyUsageError(str(err)) from err
    device = pick_device(cfg.device, world)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ProxyUsageError(f"--device {cfg.device}: no CUDA device is available; use --device cpu or auto")
    try:
        backend = choose_backend(device, cfg.attn_backend)
    except ValueError as err:
        raise ProxyUsageError(f"--attn-backend {cfg.attn_backend}: {err}") from err
    if cfg.global_batch % world.size or (cfg.micro_batch and cfg.global_batch % (cfg.micro_batch * world.size)):
        raise ProxyUsageError(f"--global-batch {cfg.global_batch} is not a multiple of --micro-batch x ranks "
                              f"({cfg.micro_batch or '?'} x {world.size}): change one of them")
    total_steps = cfg.tokens // (cfg.global_batch * mix.max_seq_len)
    if total_steps < 1:
        raise ProxyUsageError(f"--tokens {cfg.tokens} is less than one global batch ({cfg.global_batch} x "
                              f"{mix.max_seq_len} tokens): raise --tokens or lower --global-batch")
    return Plan(mix=mix, device=device, attn_backend=backend, total_steps=total_steps)


def _config_changes(saved: dict, cfg: TrainConfig) -> list[str]:
    """``field old -> new`` for each field that matters and differs between a checkpoint's config and ``cfg``."""
    new = json.loads(json.dumps(cfg.to_dict()))
    saved = json.loads(json.dumps(saved))
    return [f"{k} {saved.get(k)!r} -> {new[k]!r}" for k in sorted(new)
            if k not in RESUMABLE_CHANGES and saved.get(k) != new[k]]


def check_output(out: Path, cfg: TrainConfig, resume: bool) -> tuple[Path, dict] | None:
    """Check ``out`` for this run (nothing is written); returns the checkpoint to resume from (path, CPU state).

    Raises ProxyUsageError when ``out`` holds checkpoints and ``resume`` is false, or when they were trained with
    a config that differs from ``cfg`` in a field outside RESUMABLE_CHANGES.
    """
    if out.exists() and not out.is_dir():
        raise ProxyUsageError(f"{out} is a file: pass --out DIR to write the proxy elsewhere")
    if latest_checkpoint(out) is None:
        return None
    if not resume:
        raise ProxyUsageError(f"{out} has checkpoints: pass --resume to continue or --out to start elsewhere")
    path, state = finite_checkpoint(out)
    if path is None or state is None:
        raise ProxyUsageError(f"no checkpoint in {out / 'checkpoints'} is finite: pass --out to start elsewhere")
    changes = _config_changes(state["train_config"], cfg)
    if changes:
        raise ProxyUsageError(f"{out} was trained with another config ({'; '.join(changes)}): resume with the same "
                              f"settings or pass --out to start elsewhere")
    return path, state


def _prepare_output(out: Path, cfg: TrainConfig, resuming: bool, world: World) -> None:
    """Create ``out`` and write config.json (rank 0); a fresh run drops the logs of an earlier one."""
    if world.main:
        out.mkdir(parents=True, exist_ok=True)
        if not resuming:
            for name in ("metrics.jsonl", "events.jsonl"):
                (out / name).unlink(missing_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n")


def _truncate_metrics(out: Path, step: int) -> None:
    """Drop metric rows after ``step`` (logged by a run that died before its next checkpoint) and a torn line."""
    write_jsonl(out / "metrics.jsonl", [r for r in read_jsonl(out / "metrics.jsonl") if r["step"] <= step])


def build_trainer(run_dir: Path, cfg: TrainConfig, out: Path, world: World,
                  callbacks: Sequence[Callable[[int, dict], None]] = (), plan: Plan | None = None) -> Trainer:
    """Model, optimizer, schedule and data for a run (nothing trained yet)."""
    assert cfg.global_batch is not None and cfg.lr is not None, "build_trainer needs a resolved config"
    plan = plan or plan_run(run_dir, cfg, world)
    mix, device, total_steps = plan.mix, plan.device, plan.total_steps
    torch.manual_seed(cfg.seed)
    model_cfg = config_for(cfg.size, mix.vocab_size, mix.max_seq_len, plan.attn_backend)
    model = MPT(model_cfg).to(device)
    ddp = None
    if world.size > 1:
        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    module: torch.nn.Module = ddp or model
    if cfg.compile if cfg.compile is not None else device.type == "cuda":
        module = torch.compile(module)  # type: ignore[assignment]  # a compiled module calls like the module
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
    """Train a proxy on ``run_dir``'s streams; returns the output directory (see the module docstring).

    Mistakes in the request (run directory, options, output directory) raise ProxyUsageError before anything
    is written.
    """
    cfg = cfg.resolved()
    run_dir = Path(run_dir).resolve()
    out = Path(out) if out is not None else run_dir / "proxy" / cfg.size
    world = init_world("cuda" if cfg.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    plan = plan_run(run_dir, cfg, world)
    resume_from = check_output(out, cfg, resume)
    _prepare_output(out, cfg, resume_from is not None, world)  # the first write
    data.clean_shared_memory()  # collective under DDP: every rank calls it
    trainer = build_trainer(run_dir, cfg, out, world, callbacks, plan=plan)
    log.info("proxy %s: %d params, %d steps x %d sequences x %d tokens, backend %s, %d rank(s) on %s",
             cfg.size, trainer.model.num_params(), trainer.total_steps, cfg.global_batch, trainer.mix.max_seq_len,
             trainer.model.cfg.attn_backend, world.size, trainer.device)
    if resume_from is not None:
        path, state = resume_from
        trainer.restore(state, with_loader=True)
        del state, resume_from
        if world.main:
            _truncate_metrics(out, trainer.step)  # rows after the checkpoint, and a torn last line
            write_jsonl(out / "events.jsonl", read_jsonl(out / "events.jsonl"))  # without a torn last line
            append_jsonl(out / "events.jsonl", {"event": "resume", "step": trainer.step, "path": str(path)})
        log.info("resumed from %s (step %d)", path, trainer.step)
    elif trainer.save() is None:  # step 0: the spike guard always has a checkpoint to return to
        raise RuntimeError(f"the initial weights of the {cfg.size} proxy are not finite")
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

"""Handlers of ``mixlab proxy train|eval|export`` (torch and streaming load only when these run)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from proxy_train import set_threads


def train(args: argparse.Namespace) -> int:
    """Train a proxy on a mixture run directory."""
    from proxy_train.train import config_from_args, read_jsonl
    from proxy_train.train import train as run_training

    set_threads(args.threads)
    cfg = config_from_args({**vars(args), "size": args.config})
    out = run_training(args.run_dir, cfg, out=args.out, resume=args.resume)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    rows = read_jsonl(out / "metrics.jsonl")
    if rows:
        print(f"trained {rows[-1]['step']} steps, {rows[-1]['tokens']} tokens, final loss {rows[-1]['loss']:.4f}")
    print(f"output: {out}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """Score a checkpoint: per-domain bits-per-byte and multiple-choice tasks."""
    from proxy_train.evaluate import evaluate as run_eval

    set_threads(args.threads)
    out = run_eval(args.checkpoint, tasks=args.tasks.split(",") if args.tasks else None,
                   evals_dir=Path(args.evals) if args.evals else None, fewshot=args.fewshot,
                   limit=args.limit or None, max_samples=args.max_samples, device=args.device,
                   attn_backend=args.attn_backend, run_dir=Path(args.run_dir) if args.run_dir else None)
    results = json.loads((out / "results.json").read_text())
    for domain, bpb in results["bits_per_byte"].items():
        print(f"bits-per-byte {domain:>14}: {bpb:.4f}")
    for row in results["mc"]:
        norm = f"{row['acc_norm']:.3f}" if row["acc_norm"] is not None else "  -  "
        print(f"{row['task']:>16}: acc {row['acc']:.3f}  acc_norm {norm}  chance {row['chance']:.3f}  "
              f"({row['items']} items)")
    print(f"results: {out}")
    return 0


def export(args: argparse.Namespace) -> int:
    """Write an llm-foundry training YAML for a proxy size on a mixture run directory."""
    from proxy_train.export import foundry_recipe, write_recipe
    from proxy_train.train import config_from_args

    cfg = config_from_args({**vars(args), "size": args.size})
    recipe = foundry_recipe(args.run_dir, cfg, attn_impl=args.attn_impl, num_workers=args.num_workers)
    out = Path(args.out) if args.out else Path(args.run_dir) / f"foundry-{args.size}.yaml"
    write_recipe(recipe, out)
    print(f"llm-foundry recipe: {out} ({recipe['max_duration']}, global batch {recipe['global_train_batch_size']}, "
          f"{recipe['model']['n_layers']} layers x d_model {recipe['model']['d_model']})")
    return 0


def add_parser(sub: argparse._SubParsersAction, handler: Callable[[str], Any]) -> None:
    """Add ``proxy train``, ``proxy eval`` and ``proxy export`` to the mixlab CLI."""
    proxy = sub.add_parser("proxy", help="train and evaluate MPT proxies on a mixture's MDS streams",
                           description="Train a small MPT proxy on a built mixture (RUN_DIR/streams.yaml) and "
                                       "score it. Multi-process: torchrun --nproc_per_node N -m mixlab "
                                       "proxy train RUN_DIR. See docs/proxy.md.")
    commands = proxy.add_subparsers(dest="proxy_command", required=True, metavar="ACTION")

    p = commands.add_parser("train", help="train a proxy on RUN_DIR's streams",
                            description="Train an MPT proxy on RUN_DIR/streams.yaml. Writes RUN_DIR/proxy/<config>/ "
                                        "(checkpoints, metrics.jsonl, events.jsonl, metrics/summary.parquet).")
    p.add_argument("run_dir", help="mixture run directory holding streams.yaml, e.g. runs/mix_v3")
    p.add_argument("--config", default="tiny", choices=["tiny", "125m", "350m"], help="model size (default tiny)")
    p.add_argument("--out", default=None, help="output directory (default RUN_DIR/proxy/<config>)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the output dir")
    p.add_argument("--tokens", type=int, help="token budget (default: the size's, see docs/proxy.md)")
    p.add_argument("--global-batch", type=int, help="sequences per optimizer step over all ranks")
    p.add_argument("--micro-batch", type=int, help="sequences per forward pass per rank (gradient accumulation)")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--seed", type=int, help="model init seed (default 17)")
    p.add_argument("--data-seed", type=int, help="shuffle seed of the streams (default 9176, keep it across mixtures)")
    p.add_argument("--batching", choices=["random", "stratified"], help="how global batches mix the streams")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default 20)")
    p.add_argument("--spike-factor", type=float, help="loss above this x running average is a spike (default 2)")
    p.add_argument("--attn-backend", choices=["auto", "flash", "flex", "sdpa", "reference"], default=None)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model (default: on CUDA only)")
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=handler("mixlab.commands.proxy:train"))

    p = commands.add_parser("eval", help="score a checkpoint: bits-per-byte per domain and MC tasks",
                            description="Score a proxy checkpoint (a step-*.pt file or a proxy output directory, "
                                        "newest checkpoint) on each validation stream's bits-per-byte and on "
                                        "multiple-choice tasks. Writes <proxy dir>/eval/step-NNNNNN/.")
    p.add_argument("checkpoint")
    p.add_argument("--tasks", default=None, help="comma-separated task names (default: every file in --evals)")
    p.add_argument("--evals", default=None, help="directory of *.jsonl.gz tasks (default ../shared/corpora/evals)")
    p.add_argument("--fewshot", type=int, default=0, help="few-shot examples per item (default 0)")
    p.add_argument("--limit", type=int, default=200, help="items per task, 0 = all (default 200)")
    p.add_argument("--max-samples", type=int, default=None, help="validation samples per domain (default all)")
    p.add_argument("--run-dir", default=None, help="mixture run directory (default: the one the checkpoint names)")
    p.add_argument("--device", default="auto")
    p.add_argument("--attn-backend", default="auto", choices=["auto", "flash", "flex", "sdpa", "reference"])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=handler("mixlab.commands.proxy:evaluate"))

    p = commands.add_parser("export", help="write an llm-foundry training YAML for a proxy size on RUN_DIR",
                            description="Write an llm-foundry train.py recipe (TrainConfig YAML) that trains the "
                                        "proxy's MPT (ALiBi, no biases, the size's shape) on RUN_DIR/streams.yaml "
                                        "with the proxy's optimizer, schedule, batch and token budget. Default "
                                        "output: RUN_DIR/foundry-<size>.yaml. See docs/proxy.md.")
    p.add_argument("run_dir", help="mixture run directory holding streams.yaml, e.g. runs/mix_v3")
    p.add_argument("--size", default="125m", choices=["tiny", "125m", "350m"], help="model size (default 125m)")
    p.add_argument("--out", default=None, help="YAML file to write (default RUN_DIR/foundry-<size>.yaml)")
    p.add_argument("--tokens", type=int, help="token budget (default: the size's, as proxy train)")
    p.add_argument("--global-batch", type=int, help="global_train_batch_size (default: the size's)")
    p.add_argument("--micro-batch", type=int, help="device_train_microbatch_size (default min(global batch, 16))")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the size's)")
    p.add_argument("--seed", type=int, help="model init seed (default 17)")
    p.add_argument("--data-seed", type=int, help="shuffle seed of the streams (default 9176)")
    p.add_argument("--batching", choices=["random", "stratified"], help="streaming batching_method")
    p.add_argument("--attn-impl", default="torch", choices=["torch", "flash"],
                   help="llm-foundry attention (flash needs flash-attn; default torch)")
    p.add_argument("--num-workers", type=int, default=8, help="dataloader workers per rank (default 8)")
    p.set_defaults(func=handler("mixlab.commands.proxy:export"))

"""An llm-foundry training recipe for a built mixture: the proxy's shape, data and schedule as ``train.py`` YAML.

``mixlab proxy export RUN --size S`` writes a YAML that llm-foundry's ``scripts/train/train.py`` (``TrainConfig``)
accepts: ``mpt_causal_lm`` with ALiBi and no biases at :func:`proxy_train.model.config_for`'s shape, the run's
tokenizer folder, ``train_loader`` over ``streams.yaml``'s ``streams`` as the manifest writes them (zero-weight
streams left out), one labelled ``eval_loader`` per validation stream, and the optimizer, schedule, batch and
token budget of :class:`proxy_train.train.TrainConfig` (so a proxy and its llm-foundry twin see the same data in
the same order: shuffle seed, ``py1e``, one canonical node, ``epoch_size`` = steps x global batch).

Nothing here imports llm-foundry: the recipe is plain data, checked by ``tests/test_export.py`` against
llm-foundry's ``TrainConfig`` keys and by ``bench/foundry_loader.py --recipe`` inside an llm-foundry venv.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mixtures.layout import RunLayout
from mixtures.streams_manifest import StreamsManifest
from proxy_train import data
from proxy_train.model import config_for
from proxy_train.train import ProxyUsageError, TrainConfig

# llm-foundry's attention implementations that take ALiBi (``flash`` needs flash-attn on a GPU)
ATTN_IMPLS = ("torch", "flash")
DEFAULT_MICRO_BATCH = 16  # llm-foundry's mpt-125m.yaml device_train_microbatch_size


def tokenizer_folder(manifest: StreamsManifest) -> Path:
    """The Hugging Face tokenizer folder of a run: streams.yaml's ``tokenizer``, or the folder of its JSON file."""
    return manifest.tokenizer if manifest.tokenizer.is_dir() else manifest.tokenizer.parent


def _streams(manifest: StreamsManifest) -> dict[str, dict[str, Any]]:
    """streams.yaml's ``streams`` as the manifest writes them, without the sources weighted 0."""
    written = manifest.as_yaml()["streams"]
    return {name: entry for name, entry in written.items() if entry.get("proportion") != 0}


def foundry_recipe(run_dir: str | Path, cfg: TrainConfig, attn_impl: str = "torch",
                   num_workers: int = 8, save_folder: str | Path | None = None) -> dict[str, Any]:
    """The llm-foundry ``train.py`` config (a plain dict) for proxy ``cfg`` on the mixture in ``run_dir``."""
    if attn_impl not in ATTN_IMPLS:
        raise ProxyUsageError(f"--attn-impl must be one of {', '.join(ATTN_IMPLS)}, got {attn_impl!r}")
    manifest = StreamsManifest.read(RunLayout(Path(run_dir).resolve()).streams)
    cfg = cfg.resolved()
    seq, batch = manifest.max_seq_len, int(cfg.global_batch)  # type: ignore[arg-type]
    steps = int(cfg.tokens) // (batch * seq)  # type: ignore[arg-type]
    if steps < 1:
        raise ProxyUsageError(f"--tokens {cfg.tokens} is less than one global batch ({batch} x {seq} tokens): "
                              "raise --tokens or lower --global-batch")
    micro = cfg.micro_batch or min(batch, DEFAULT_MICRO_BATCH)
    if batch % micro:
        raise ProxyUsageError(f"--global-batch {batch} is not a multiple of --micro-batch {micro}")
    warmup = max(1, round(cfg.warmup_fraction * steps))  # as proxy_train.train.build_trainer
    shape = config_for(cfg.size, manifest.vocab_size, seq)
    streams = _streams(manifest)
    absolute = any(key in entry for entry in streams.values() for key in ("choose", "repeat"))
    dataset: dict[str, Any] = {
        "streams": streams, "max_seq_len": seq, "shuffle": True, "shuffle_seed": cfg.data_seed,
        "shuffle_algo": data.SHUFFLE_ALGO, "num_canonical_nodes": data.NUM_CANONICAL_NODES,
        "batching_method": cfg.batching,
    }
    if not absolute:  # proportions: draw exactly the proxy's samples per epoch (choose/repeat fix their own)
        dataset["epoch_size"] = steps * batch
    run = manifest.run_dir
    recipe: dict[str, Any] = {
        "run_name": f"{run.name}-{cfg.size}",
        "seed": cfg.seed,
        "max_seq_len": seq,
        "model": {
            "name": "mpt_causal_lm",
            "init_device": "cpu",
            "d_model": shape.d_model, "n_heads": shape.n_heads, "n_layers": shape.n_layers,
            "expansion_ratio": shape.expansion_ratio, "max_seq_len": seq, "vocab_size": shape.vocab_size,
            "no_bias": True, "learned_pos_emb": False, "tie_word_embeddings": True,
            "norm_type": "low_precision_layernorm", "resid_pdrop": 0.0, "emb_pdrop": 0.0,
            "attn_config": {"attn_type": "multihead_attention", "attn_impl": attn_impl, "alibi": True,
                            "alibi_bias_max": 8, "attn_pdrop": 0.0},
            "ffn_config": {"ffn_type": "mptmlp", "ffn_act_fn": {"name": "gelu", "approximate": "none"}},
            "init_config": {"name": "kaiming_normal_", "fan_mode": "fan_in", "init_nonlinearity": "relu",
                            "init_div_is_residual": True},
            "loss_fn": "torch_crossentropy",  # the fused loss needs flash-attn's CUDA extension
        },
        "tokenizer": {"name": str(tokenizer_folder(manifest)), "kwargs": {"model_max_length": seq}},
        "train_loader": {"name": "text", "dataset": dataset, "drop_last": True, "num_workers": num_workers},
        "eval_loader": [
            {"label": name, "name": "text",
             "dataset": {"streams": {name: {"local": str(local)}}, "max_seq_len": seq, "shuffle": False,
                         "num_canonical_nodes": data.NUM_CANONICAL_NODES},
             "drop_last": False, "num_workers": num_workers}
            for name, local in manifest.validation.items()
        ],
        "optimizer": {"name": "decoupled_adamw", "lr": cfg.lr, "betas": list(cfg.betas), "eps": 1.0e-8,
                      "weight_decay": cfg.weight_decay},
        "scheduler": {"name": "cosine_with_warmup", "t_warmup": f"{warmup}ba", "alpha_f": cfg.min_lr_ratio},
        "algorithms": {"gradient_clipping": {"clipping_type": "norm", "clipping_threshold": cfg.grad_clip}},
        "max_duration": f"{steps * batch * seq}tok",
        "eval_interval": f"{steps}ba",
        "eval_first": False,
        "global_train_batch_size": batch,
        "device_train_microbatch_size": micro,
        "device_eval_batch_size": micro,
        "precision": "amp_bf16",
        "progress_bar": False,
        "log_to_console": True,
        "console_log_interval": "1ba",
        "callbacks": {"speed_monitor": {"window_size": 10}, "lr_monitor": {}, "memory_monitor": {}},
        "save_folder": str(save_folder or RunLayout(run).proxy(f"foundry-{cfg.size}") / "checkpoints"),
        "save_interval": f"{max(1, cfg.checkpoint_every)}ba",
        "save_num_checkpoints_to_keep": cfg.keep_checkpoints,
    }
    if num_workers == 0:  # torch's DataLoader refuses both without worker processes
        for loader in (recipe["train_loader"], *recipe["eval_loader"]):
            loader.update(prefetch_factor=None, persistent_workers=False)
    if not recipe["eval_loader"]:
        del recipe["eval_loader"], recipe["eval_interval"]
    return recipe


def write_recipe(recipe: dict[str, Any], out: Path) -> Path:
    """Write the recipe as YAML (keys in the order built), atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    header = ("# llm-foundry train.py recipe written by `mixlab proxy export` (docs/proxy.md).\n"
              "# Run: composer scripts/train/train.py THIS.yaml   (llm-foundry checkout, its own venv)\n")
    tmp.write_text(header + yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    tmp.replace(out)
    return out

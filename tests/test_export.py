"""``mixlab proxy export``: an llm-foundry train.py recipe with the shape llm-foundry's TrainConfig expects.

llm-foundry is not installed here (it pins its own torch and streaming), so its contract is copied below from
llm-foundry 0.22.0: ``llmfoundry/utils/config_utils.py`` (``TrainConfig``: every key of a train YAML, and which
are mandatory), ``llmfoundry/models/mpt/configuration_mpt.py`` (``MPTConfig.__init__``), the optimizer and
scheduler registries (``llmfoundry/optim/__init__.py``) and ``StreamingTextDataset.__init__``. The streaming
parameters are read from the installed ``streaming``. ``bench/foundry_loader.py --recipe`` checks the same file
with llm-foundry's own code inside its venv.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from mixlab.cli import main
from mixtures.layout import RunLayout
from mixtures.streams_manifest import StreamsManifest
from proxy_train.export import foundry_recipe
from proxy_train.model import MPT, config_for
from proxy_train.train import TrainConfig, lr_factor

# llm-foundry 0.22.0 TrainConfig: field -> accepted YAML types (Optional adds None); MANDATORY have no default.
# n_gpus, device_train_grad_accum and device_train_batch_size are filled in by update_batch_size_info.
ANY_DICT, STR, INT, NUM, BOOL = (dict,), (str,), (int,), (int, float), (bool,)
TRAIN_CONFIG = {
    "model": ANY_DICT, "tokenizer": ANY_DICT, "optimizer": ANY_DICT, "scheduler": ANY_DICT,
    "train_loader": ANY_DICT, "device_train_batch_size": NUM, "device_eval_batch_size": NUM,
    "max_duration": (int, str), "max_seq_len": INT, "seed": INT, "precision": STR, "code_paths": (list,),
    "max_split_size_mb": INT, "expandable_segments": BOOL, "cuda_load_lazy": BOOL, "dist_timeout": NUM,
    "fsdp_config": ANY_DICT, "tp_config": ANY_DICT, "accumulate_train_batch_on_tokens": BOOL,
    "eval_interval": (int, str), "eval_loader": (dict, list), "eval_loaders": (list,), "icl_tasks": (list, str),
    "icl_tasks_str": STR, "eval_gauntlet": (dict, str), "eval_gauntlet_str": STR, "icl_subset_num_batches": INT,
    "icl_seq_len": INT, "loggers": ANY_DICT, "progress_bar": BOOL, "log_to_console": BOOL,
    "python_log_level": STR, "console_log_interval": (int, str), "log_config": BOOL, "callbacks": ANY_DICT,
    "algorithms": ANY_DICT, "save_folder": STR, "save_latest_filename": STR, "save_overwrite": BOOL,
    "save_weights_only": BOOL, "save_filename": STR, "save_interval": (str, int), "save_num_checkpoints_to_keep": INT,
    "load_path": STR, "load_weights_only": BOOL, "load_strict_model_weights": BOOL, "load_ignore_keys": (list,),
    "save_ignore_keys": (list,), "only_hf_checkpoint": BOOL, "only_composer_checkpoint": BOOL,
    "train_subset_num_batches": INT, "device_train_microbatch_size": (str, int, float),
    "global_train_batch_size": INT, "spin_dataloaders": BOOL, "eval_subset_num_batches": INT, "eval_first": BOOL,
    "compile_config": ANY_DICT, "metadata": ANY_DICT, "flatten_metadata": BOOL, "run_name": STR,
    "autoresume": BOOL, "profiler": ANY_DICT, "variables": ANY_DICT, "n_gpus": INT,
    "device_train_grad_accum": (str, int),
}
MANDATORY = {"model", "tokenizer", "optimizer", "scheduler", "train_loader", "device_eval_batch_size",
             "max_duration", "max_seq_len"}
USER_FORBIDDEN = {"eval_loaders", "icl_tasks_str", "eval_gauntlet_str", "n_gpus", "device_train_grad_accum"}
MPT_CONFIG = {"d_model", "n_heads", "n_layers", "head_dim", "expansion_ratio", "max_seq_len", "vocab_size",
              "resid_pdrop", "emb_pdrop", "learned_pos_emb", "attn_config", "ffn_config", "init_device",
              "logit_scale", "no_bias", "attention_bias", "embedding_fraction", "norm_type", "norm_eps",
              "use_cache", "init_config", "fc_type", "tie_word_embeddings", "use_pad_tok_in_ffn",
              "block_overrides", "final_logit_softcapping"}
COMPOSER_MODEL = {"name", "loss_fn", "pretrained", "pretrained_model_name_or_path"}  # ComposerMPTCausalLM's own
ATTN_CONFIG = {"attn_type", "attn_pdrop", "attn_impl", "qk_ln", "qk_gn", "fused_qkv", "clip_qkv", "softmax_scale",
               "attn_uses_sequence_id", "sliding_window_size", "attn_logit_softcapping", "alibi", "alibi_bias_max",
               "rope", "nope", "rope_theta", "rope_impl", "rope_dail_config", "rope_hf_config", "kv_n_heads",
               "kv_dim", "reuse_kv_layer_idx", "flex_attn_config"}
INIT_CONFIG = {"name", "fan_mode", "init_nonlinearity", "init_div_is_residual", "emb_init_std",
               "emb_init_uniform_lim", "init_std", "init_gain"}
OPTIMIZERS = {"adalr_lion", "clip_lion", "decoupled_lionw", "decoupled_adamw", "no_op"}
SCHEDULERS = {"constant_with_warmup", "cosine_with_warmup", "inv_sqrt_with_warmup", "linear_decay_with_warmup"}
TEXT_DATASET_OWN = {"tokenizer", "max_seq_len", "token_encoding_type", "streams"}  # plus StreamingDataset's
TEXT_LOADER = {"name", "dataset", "drop_last", "num_workers", "pin_memory", "prefetch_factor",
               "persistent_workers", "timeout", "label"}


def _streaming_params() -> tuple[set[str], set[str]]:
    from mixtures.streaming_compat import import_streaming

    streaming = import_streaming()
    dataset = set(inspect.signature(streaming.StreamingDataset.__init__).parameters) - {"self", "kwargs"}
    stream = set(inspect.signature(streaming.Stream.__init__).parameters) - {"self", "kwargs"}
    return dataset, stream


def _check_train_config(recipe: dict) -> None:
    assert set(recipe) <= set(TRAIN_CONFIG), f"not TrainConfig keys: {set(recipe) - set(TRAIN_CONFIG)}"
    assert set(recipe) >= MANDATORY and not USER_FORBIDDEN & set(recipe)
    for key, value in recipe.items():
        assert isinstance(value, TRAIN_CONFIG[key]) and not (isinstance(value, bool) and bool not in
                                                             TRAIN_CONFIG[key]), (key, value)


@pytest.fixture(scope="module")
def recipe_file(tiny_mixture: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "tiny.yaml"
    assert main(["proxy", "export", str(tiny_mixture), "--size", "tiny", "--out", str(out)]) == 0
    return out


def test_export_writes_a_train_config_llm_foundry_accepts(recipe_file: Path) -> None:
    recipe = yaml.safe_load(recipe_file.read_text())
    _check_train_config(recipe)
    assert recipe["precision"] == "amp_bf16" and recipe["optimizer"]["name"] in OPTIMIZERS
    assert recipe["scheduler"]["name"] in SCHEDULERS
    model = recipe["model"]
    assert model["name"] == "mpt_causal_lm" and set(model) <= MPT_CONFIG | COMPOSER_MODEL
    assert set(model["attn_config"]) <= ATTN_CONFIG and set(model["init_config"]) <= INIT_CONFIG
    assert model["attn_config"]["alibi"] is True and model["attn_config"]["attn_impl"] in ("torch", "flash")
    assert model["no_bias"] is True and model["learned_pos_emb"] is False


def test_export_data_are_the_runs_streams_verbatim(recipe_file: Path, tiny_mixture: Path) -> None:
    recipe = yaml.safe_load(recipe_file.read_text())
    manifest = StreamsManifest.read(RunLayout(tiny_mixture).streams)
    dataset_params, stream_params = _streaming_params()
    loader = recipe["train_loader"]
    assert loader["name"] == "text" and set(loader) <= TEXT_LOADER
    dataset = loader["dataset"]
    assert set(dataset) <= TEXT_DATASET_OWN | dataset_params
    assert dataset["streams"] == manifest.as_yaml()["streams"]  # every tiny source has a weight
    assert all(set(s) <= stream_params for s in dataset["streams"].values())
    assert dataset["max_seq_len"] == recipe["max_seq_len"] == manifest.max_seq_len and dataset["shuffle"] is True
    folder = manifest.tokenizer if manifest.tokenizer.is_dir() else manifest.tokenizer.parent  # version 2 / 1
    assert recipe["tokenizer"]["name"] == str(folder) and (folder / "tokenizer.json").is_file()
    evals = recipe["eval_loader"]
    assert [e["label"] for e in evals] == list(manifest.validation)
    for e in evals:
        assert set(e) <= TEXT_LOADER and e["dataset"]["shuffle"] is False
        (stream,) = e["dataset"]["streams"].values()
        assert stream["local"] == str(manifest.validation[e["label"]])


def test_export_shape_schedule_and_budget_are_the_proxys(recipe_file: Path, tiny_mixture: Path) -> None:
    recipe = yaml.safe_load(recipe_file.read_text())
    manifest = StreamsManifest.read(RunLayout(tiny_mixture).streams)
    cfg = TrainConfig(size="tiny").resolved()
    shape = config_for("tiny", manifest.vocab_size, manifest.max_seq_len)
    model = recipe["model"]
    for key in ("d_model", "n_heads", "n_layers", "expansion_ratio", "max_seq_len", "vocab_size"):
        assert model[key] == getattr(shape, key), key
    steps = cfg.tokens // (cfg.global_batch * manifest.max_seq_len)
    assert recipe["max_duration"] == f"{steps * cfg.global_batch * manifest.max_seq_len}tok"
    assert recipe["global_train_batch_size"] == cfg.global_batch
    assert recipe["global_train_batch_size"] % recipe["device_train_microbatch_size"] == 0
    dataset = recipe["train_loader"]["dataset"]
    if any("choose" in stream for stream in dataset["streams"].values()):  # exact samples per stream: no epoch_size
        assert "epoch_size" not in dataset
    else:
        assert dataset["epoch_size"] == steps * cfg.global_batch
    opt, sched = recipe["optimizer"], recipe["scheduler"]
    assert opt["lr"] == cfg.lr and opt["betas"] == list(cfg.betas) and opt["weight_decay"] == cfg.weight_decay
    warmup = int(sched["t_warmup"].removesuffix("ba"))
    assert lr_factor(warmup, steps, warmup, cfg.min_lr_ratio) == 1.0 and sched["alpha_f"] == cfg.min_lr_ratio
    assert recipe["algorithms"]["gradient_clipping"]["clipping_threshold"] == cfg.grad_clip
    n_params = sum(p.numel() for p in MPT(shape).parameters())
    # llm-foundry's MPT at this config: tied wte + per block (LN, Wqkv, out_proj, LN, up, down) + final LN, no bias
    d, v, n, e = shape.d_model, shape.vocab_size, shape.n_layers, shape.expansion_ratio
    assert n_params == v * d + n * (2 * d + 4 * d * d + 2 * e * d * d) + d


def test_export_flags_and_mistakes(tiny_mixture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.yaml"
    assert main(["proxy", "export", str(tiny_mixture), "--size", "tiny", "--out", str(out), "--tokens", "65536",
                 "--global-batch", "16", "--micro-batch", "4", "--attn-impl", "flash"]) == 0
    recipe = yaml.safe_load(out.read_text())
    assert recipe["max_duration"] == "65536tok" and recipe["device_train_microbatch_size"] == 4
    assert recipe["model"]["attn_config"]["attn_impl"] == "flash"
    assert "prefetch_factor" not in recipe["train_loader"]
    assert main(["proxy", "export", str(tiny_mixture), "--size", "tiny", "--out", str(out), "--num-workers", "0"]) == 0
    recipe = yaml.safe_load(out.read_text())
    for loader in (recipe["train_loader"], *recipe["eval_loader"]):  # torch's DataLoader refuses them at 0 workers
        assert loader["num_workers"] == 0 and loader["prefetch_factor"] is None and not loader["persistent_workers"]
    capsys.readouterr()
    assert main(["proxy", "export", str(tmp_path), "--size", "tiny"]) == 2  # no streams.yaml
    assert main(["proxy", "export", str(tiny_mixture), "--size", "tiny", "--out", str(out), "--tokens", "10"]) == 2
    assert main(["proxy", "export", str(tiny_mixture), "--size", "tiny", "--out", str(out), "--global-batch", "8",
                 "--micro-batch", "3"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)


def test_export_leaves_zero_weight_streams_out(tiny_mixture: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    StreamsManifest.read(RunLayout(tiny_mixture).streams).with_proportions({"web": 1.0}).write(RunLayout(run).streams)
    recipe = foundry_recipe(run, TrainConfig(size="tiny"))
    assert list(recipe["train_loader"]["dataset"]["streams"]) == ["web"]

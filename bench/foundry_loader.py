"""llm-foundry's own dataloader on a built run, in llm-foundry's own venv: does its data path read our streams?

    python -m bench.foundry_loader --run runs/mix_v3 [--venv /tmp/foundry-venv] [--recipe tiny] [--batch 16]

llm-foundry pins its own torch and streaming, so it never enters Mixlab's lock: this script makes a separate venv
(``--venv``; created when missing, :data:`bench.peers.FOUNDRY_VENV_SETUP`) and runs itself inside it
(``--inside``), where it:

1. loads the run's tokenizer folder (``streams.yaml`` ``tokenizer``) with llm-foundry's ``build_tokenizer``
   (``AutoTokenizer``), and checks its vocabulary and EOS id against ``streams.yaml``;
2. builds llm-foundry's ``build_text_dataloader`` on ``streams.yaml``'s ``streams`` as written there (``choose``,
   ``repeat``, ``proportion``: whatever the file says; zero-weight streams left out), reads one epoch and prints
   samples per stream against ``plan.json`` (and checks every batch: shape, dtype, token ids below the vocabulary);
3. with ``--recipe SIZE``, writes ``mixlab proxy export`` 's recipe, runs it through llm-foundry's own
   ``make_dataclass_and_log_config(TrainConfig, transforms='all')`` and ``validate_config``, builds its model
   (``mpt_causal_lm``) on the CPU and compares the parameter count with the proxy's, and reads one epoch of the
   recipe's own ``train_loader``.

Each step prints what happened; a step that fails prints why and the script exits 1 after the steps it could do.
The outer part uses the standard library (and Mixlab for ``--recipe``); the inner part imports llm-foundry only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from bench import harness, peers

STEP_FAILED = 1


def _say(message: str) -> None:
    print(message, flush=True)


# --- outside: the venv -------------------------------------------------------------------------------------------


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _has_foundry(python: Path) -> bool:
    if not python.is_file():
        return False
    probe = subprocess.run([str(python), "-c", "import llmfoundry, streaming, torch; print(llmfoundry.__version__, "
                            "streaming.__version__, torch.__version__)"], capture_output=True, text=True, check=False)
    if probe.returncode == 0:
        _say(f"venv {python.parent.parent}: llm-foundry, streaming, torch = {probe.stdout.strip()}")
    return probe.returncode == 0


def ensure_venv(venv: Path, base_python: str, log: Path) -> bool:
    """Make ``venv`` with llm-foundry (the commands of peers.FOUNDRY_VENV_STEPS), logging pip to ``log``."""
    python = _venv_python(venv)
    if _has_foundry(python):
        return True
    steps = peers.foundry_venv_steps(str(venv), base_python)
    if python.is_file():
        steps = steps[1:]  # the venv exists but lacks llm-foundry: install into it
    _say(f"making the llm-foundry venv {venv} (a CUDA torch from PyPI: several GB, many minutes); pip log: {log}")
    with log.open("a", encoding="utf-8") as out:
        for command in steps:
            _say(f"  $ {' '.join(command)}")
            with harness.Timer() as t:
                done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
            if done.returncode != 0:
                tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
                _say(f"FAILED (exit {done.returncode}) after {t.wall:.0f} s: {' '.join(command)}\n"
                     + "\n".join(f"    {line}" for line in tail))
                return False
            _say(f"    ok in {t.wall:.0f} s")
    return _has_foundry(python)


def _recipe_file(run: Path, size: str, folder: Path) -> tuple[Path, int]:
    """``mixlab proxy export`` 's recipe for ``size`` on ``run`` and the proxy's parameter count at that shape."""
    from mixtures.layout import RunLayout
    from mixtures.streams_manifest import StreamsManifest
    from proxy_train.export import foundry_recipe, write_recipe
    from proxy_train.model import MPT, config_for
    from proxy_train.train import TrainConfig

    manifest = StreamsManifest.read(RunLayout(run).streams)
    recipe = foundry_recipe(run, TrainConfig(size=size), num_workers=0, save_folder=folder / "checkpoints")
    shape = config_for(size, manifest.vocab_size, manifest.max_seq_len)
    return write_recipe(recipe, folder / f"foundry-{size}.yaml"), sum(p.numel() for p in MPT(shape).parameters())


def outside(args: argparse.Namespace) -> int:
    run = Path(args.run).resolve()
    if not (run / "streams.yaml").is_file():
        _say(f"error: {run}/streams.yaml not found: build the mixture first (mixlab mixture SPEC.yaml)")
        return 2
    venv = Path(args.venv)
    log = Path(args.log or f"{venv}.install.log")
    if not ensure_venv(venv, args.python, log):
        _say(f"llm-foundry venv not ready: the steps above say which command failed; nothing was run on {run}")
        return STEP_FAILED
    command = [str(_venv_python(venv)), "-m", "bench.foundry_loader", "--inside", "--run", str(run),
               "--batch", str(args.batch)]
    with tempfile.TemporaryDirectory(prefix="foundry-recipe-") as tmp:
        if args.recipe:
            path, n_params = _recipe_file(run, args.recipe, Path(tmp))
            _say(f"recipe: {path} (proxy {args.recipe}: {n_params:,} parameters)")
            command += ["--recipe-file", str(path), "--proxy-params", str(n_params)]
        env = {**os.environ, "PYTHONPATH": str(harness.REPO), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        with harness.Timer() as t:
            done = subprocess.run(command, cwd=harness.REPO, env=env, check=False)
    _say(t.summary("llm-foundry checks"))
    return done.returncode


# --- inside the llm-foundry venv ----------------------------------------------------------------------------------


def _streams(run: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """streams.yaml as written, and its ``streams`` with relative ``local`` paths made absolute (weight 0 left out)."""
    import yaml

    manifest = yaml.safe_load((run / "streams.yaml").read_text(encoding="utf-8"))
    streams = {}
    for name, entry in (manifest.get("streams") or {}).items():
        entry = dict(entry or {})
        if entry.get("proportion") == 0:
            continue
        if entry.get("local") and not Path(entry["local"]).is_absolute():
            entry["local"] = str(run / entry["local"])
        streams[name] = entry
    return manifest, streams


def _tokenizer(run: Path, manifest: dict[str, Any]) -> tuple[Any, bool]:
    """llm-foundry's build_tokenizer on the run's tokenizer folder; else a fast tokenizer on tokenizer.json."""
    from llmfoundry.utils.builders import build_tokenizer

    path = Path(manifest["tokenizer"])
    path = path if path.is_absolute() else run / path
    folder = path if path.is_dir() else path.parent
    try:
        tok = build_tokenizer(str(folder), {"model_max_length": manifest["max_seq_len"]})
        ok = True
        _say(f"tokenizer: build_tokenizer({folder}) loads: {type(tok).__name__}, {len(tok)} tokens, "
             f"eos_token_id {tok.eos_token_id}")
    except Exception as err:
        ok = False
        _say(f"tokenizer: build_tokenizer({folder}) FAILS: {type(err).__name__}: {str(err).splitlines()[0][:300]}")
        _say(f"  folder holds: {', '.join(sorted(p.name for p in folder.iterdir()))}")
        from transformers import PreTrainedTokenizerFast

        tok = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"),
                                      model_max_length=manifest["max_seq_len"])
        _say("  (the dataloader below uses PreTrainedTokenizerFast(tokenizer_file=tokenizer.json) instead)")
    if len(tok) != manifest["vocab_size"]:
        ok = False
        _say(f"  vocabulary {len(tok)} != streams.yaml vocab_size {manifest['vocab_size']}")
    if tok.eos_token_id is not None and tok.eos_token_id != manifest["eos_token_id"]:
        ok = False
        _say(f"  eos_token_id {tok.eos_token_id} != streams.yaml eos_token_id {manifest['eos_token_id']}")
    return tok, ok


def _plan_samples(run: Path) -> dict[str, int]:
    path = run / "plan.json"
    if not path.is_file():
        return {}
    return {s["source"]: int(s.get("samples", 0)) for s in json.loads(path.read_text()).get("sources", [])}


def _epoch(loader: Any, dataset: Any, names: list[str], vocab: int, seq: int,
           drop_last_batch: int = 0) -> tuple[dict[str, int], list[str]]:
    """Read one epoch; samples per stream (from the sample ids the dataset served) and any problems found.

    ``drop_last_batch``: the batch size of a loader with ``drop_last`` (it reads the last partial batch from the
    dataset and drops it, so it yields ``served - served % batch`` samples)."""
    import numpy as np

    seen: list[int] = []
    original = type(dataset).__getitem__

    def recording(self: Any, idx: int) -> Any:
        seen.append(int(idx))
        return original(self, idx)

    type(dataset).__getitem__ = recording
    problems: list[str] = []
    samples = 0
    try:
        for batch in loader:
            ids = batch["input_ids"]
            samples += int(ids.shape[0])
            if ids.shape[1] != seq or str(ids.dtype) != "torch.int64":
                problems.append(f"batch of shape {tuple(ids.shape)} dtype {ids.dtype}, expected (*, {seq}) int64")
            if int(ids.max()) >= vocab or int(ids.min()) < 0:
                problems.append(f"token ids outside [0, {vocab}): {int(ids.min())}..{int(ids.max())}")
    finally:
        type(dataset).__getitem__ = original
    offsets = np.asarray(dataset.sample_offset_per_stream)
    stream_of = np.searchsorted(offsets, np.asarray(seen, dtype=np.int64), side="right") - 1
    counts = {name: int((stream_of == i).sum()) for i, name in enumerate(names)}
    expected = len(seen) - len(seen) % drop_last_batch if drop_last_batch else len(seen)
    if samples != expected:
        problems.append(f"the loader yielded {samples} samples but the dataset served {len(seen)}"
                        + (f" (drop_last, batch {drop_last_batch}: expected {expected})" if drop_last_batch else ""))
    return counts, problems[:5]


def _count_table(counts: dict[str, int], plan: dict[str, int], streams: dict[str, dict[str, Any]]) -> tuple[str, bool]:
    rows, ok = [], True
    for name, n in counts.items():
        want = plan.get(name)
        match = "n/a" if want is None else "yes" if n == want else "NO"
        ok &= match != "NO"
        keys = ", ".join(f"{k} {v}" for k, v in streams[name].items() if k not in ("local", "remote") and v is not None)
        rows.append((name, keys, f"{n:,}", "" if want is None else f"{want:,}", match))
    rows.append(("total", "", f"{sum(counts.values()):,}", f"{sum(plan.get(n, 0) for n in counts):,}", ""))
    return harness.table(["stream", "streams.yaml", "samples read", "plan.json samples", "match"], rows,
                         "llrrl"), ok


def _text_loader(tok: Any, dataset_cfg: dict[str, Any], batch: int) -> Any:
    from llmfoundry.data.text_data import build_text_dataloader

    return build_text_dataloader(tok, batch, dataset_cfg, drop_last=False, num_workers=0, pin_memory=False,
                                 prefetch_factor=None, persistent_workers=False)  # type: ignore[arg-type]


def _check_recipe(path: Path, tok: Any, proxy_params: int) -> bool:
    from llmfoundry.command_utils.train import validate_config
    from llmfoundry.utils.builders import build_composer_model, build_dataloader
    from llmfoundry.utils.config_utils import TRAIN_CONFIG_KEYS, TrainConfig, make_dataclass_and_log_config
    from omegaconf import OmegaConf

    ok = True
    try:
        _, cfg = make_dataclass_and_log_config(OmegaConf.load(path), TrainConfig, TRAIN_CONFIG_KEYS,
                                               transforms="all")
        validate_config(cfg)
        _say(f"recipe: llm-foundry's TrainConfig accepts it (device_train_batch_size {cfg.device_train_batch_size}, "
             f"grad accum {cfg.device_train_grad_accum}, max_duration {cfg.max_duration})")
    except Exception as err:
        _say(f"recipe: TrainConfig REJECTS it: {type(err).__name__}: {err}")
        return False
    model_cfg = dict(cfg.model)
    name = model_cfg.pop("name")
    try:
        model = build_composer_model(name=name, cfg=model_cfg, tokenizer=tok)
        n = sum(p.numel() for p in model.parameters())
        same = n == proxy_params
        ok &= same
        _say(f"recipe: llm-foundry builds {name}: {n:,} parameters; proxy: {proxy_params:,} "
             f"({'same' if same else 'DIFFERENT'})")
    except Exception as err:
        ok = False
        _say(f"recipe: build_composer_model fails: {type(err).__name__}: {err}")
    try:
        loader_cfg = json.loads(json.dumps(cfg.train_loader))  # the builder pops keys: give it a copy
        names = list(loader_cfg["dataset"]["streams"])
        spec = build_dataloader(loader_cfg, tok, cfg.device_train_batch_size)  # as train.py: drop_last fits it
        loader = spec.dataloader
        batch = cfg.device_train_batch_size if cfg.train_loader.get("drop_last") else 0
        counts, problems = _epoch(loader, loader.dataset, names, cfg.model["vocab_size"], cfg.max_seq_len, batch)
        dropped = sum(counts.values()) % batch if batch else 0
        _say(f"recipe train_loader, one epoch (epoch_size {cfg.train_loader['dataset'].get('epoch_size')}, "
             f"device batch {cfg.device_train_batch_size}): "
             + ", ".join(f"{k} {v:,}" for k, v in counts.items())
             + (f"; drop_last drops the last partial batch ({dropped} samples)" if dropped else ""))
        for problem in problems:
            ok = False
            _say(f"  problem: {problem}")
    except Exception as err:
        ok = False
        _say(f"recipe: its train_loader fails: {type(err).__name__}: {err}")
        traceback.print_exc()
    return ok


def inside(args: argparse.Namespace) -> int:
    import llmfoundry
    import streaming
    import torch
    from streaming.base.util import clean_stale_shared_memory

    _say(f"inside {sys.prefix}: llm-foundry {llmfoundry.__version__}, streaming {streaming.__version__}, "
         f"torch {torch.__version__}")
    clean_stale_shared_memory()
    run = Path(args.run)
    manifest, streams = _streams(run)
    plan = _plan_samples(run)
    tok, tok_ok = _tokenizer(run, manifest)
    seq, vocab = manifest["max_seq_len"], manifest["vocab_size"]
    dataset_cfg = {"streams": streams, "max_seq_len": seq, "shuffle": True, "shuffle_seed": 9176,
                   "shuffle_algo": "py1e", "num_canonical_nodes": 1}
    ok = tok_ok
    try:
        spec = _text_loader(tok, json.loads(json.dumps(dataset_cfg)), args.batch)
        loader = spec.dataloader
        with harness.Timer() as t:
            counts, problems = _epoch(loader, loader.dataset, list(streams), vocab, seq)
        table, counts_ok = _count_table(counts, plan, streams)
        _say(f"build_text_dataloader on streams.yaml, one epoch ({t.wall:.1f} s, batch {args.batch}):\n{table}")
        for problem in problems:
            _say(f"  problem: {problem}")
        ok &= counts_ok and not problems
    except Exception as err:
        ok = False
        _say(f"build_text_dataloader FAILS on {run}/streams.yaml: {type(err).__name__}: {err}")
        traceback.print_exc()
    if args.recipe_file:
        ok &= _check_recipe(Path(args.recipe_file), tok, args.proxy_params)
    _say("all checks passed" if ok else "some checks FAILED (see above)")
    return 0 if ok else STEP_FAILED


def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__file__, __doc__)
    parser.add_argument("--run", required=True, help="built run directory (streams.yaml, mds/, tokenizer/, plan.json)")
    parser.add_argument("--venv", default=peers.FOUNDRY_VENV, help=f"llm-foundry venv (default {peers.FOUNDRY_VENV})")
    parser.add_argument("--python", default=sys.executable, help="interpreter that makes the venv (default this one)")
    parser.add_argument("--log", default=None, help="pip log when the venv is made (default VENV.install.log)")
    parser.add_argument("--batch", type=int, default=16, help="device batch size of the loaders (default 16)")
    parser.add_argument("--recipe", choices=["tiny", "125m", "350m"], default=None,
                        help="also check `mixlab proxy export`'s recipe of this size with llm-foundry's own code")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--recipe-file", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--proxy-params", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return inside(args) if args.inside else outside(args)


if __name__ == "__main__":
    sys.exit(main())

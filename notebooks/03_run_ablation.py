# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3. Run and read an ablation
#
# Which mixture is better, and how sure are we? An *ablation* trains one small model (a *proxy*) per mixture
# and per seed, all with the same size, training length and data order, and scores each on held-out text of
# every source. The *seed* changes only the model's random starting point, so the spread over seeds shows how
# much of a difference is luck. Small proxies rank mixtures the way large models do more often than not
# (DataDecide: ~80% of pairs at 150M parameters), never always: read the probabilities, not just the means.
#
# This is the same code as `mixlab ablate mix_v1.yaml mix_v2.yaml --seeds 3`. Here it runs on tiny settings.

# %%
import os
from pathlib import Path

import pandas as pd
from IPython.display import SVG, Markdown, display

from mixlab.jobs import resolve_mix
from mixtures import ablation_stats
from mixtures.tiny import parse_source_docs
from proxy_train.ablate import AblationConfig, open_ablation, run_ablation, shared_mean

MIXES = os.environ.get("MIXLAB_NB_MIXES", "mix_v1.yaml,mix_v2.yaml,mix_v3.yaml").split(",")
SEEDS = int(os.environ.get("MIXLAB_NB_SEEDS", "3"))
DOCS = int(os.environ.get("MIXLAB_NB_DOCS", "60"))  # documents per source for CPU; 0 = the full specs
TOKENS = int(os.environ.get("MIXLAB_NB_TOKENS", str(8 * 64 * 20)))  # training tokens per proxy
SOURCE_DOCS = parse_source_docs(os.environ.get("MIXLAB_NB_SOURCE_DOCS", "web=400"))
WORK = Path(os.environ.get("MIXLAB_NB_WORK", "notebook_work"))

# %% [markdown]
# ## Launch
# Missing mixtures are cleaned and built first. Rerunning this cell resumes: finished proxies are read back.

# %%
config = AblationConfig(proxy="tiny", tokens=TOKENS, mc_tasks=("copa",), mc_limit=50)
ablation = open_ablation(WORK / "ablations" / "notebook", config)
ablation.mixes = [resolve_mix(m, ablation.root, DOCS or None, SOURCE_DOCS) for m in MIXES]
report = run_ablation(ablation, SEEDS)

# %% [markdown]
# ## Bits per byte
# How many bits the proxy needs per byte of unseen text from each source: **lower is better**. The fair
# comparison is `bpb_common`: every proxy reads the *same* held-out documents, ones that no mixture trained on
# (each mixture also has its own held-out split, `bpb/`, but its documents differ from mixture to mixture).
# The interval is a 95% bootstrap interval of the mean over seeds; with 3 seeds it is rough, and on tiny
# settings the common set holds only a few documents per source (the report says how many).

# %%
results = pd.read_parquet(ablation.results_path)
results = pd.concat([results, shared_mean(results)], ignore_index=True)
summary = ablation_stats.summarize(results)
common = summary.metric.str.startswith("bpb_common/").any()
LEAD = "bpb_common/mean" if common else "bpb/shared_mean"
display(summary[summary.metric.str.startswith("bpb_common/" if common else "bpb/")].round(4))
display(SVG(filename=str(ablation.root / ("bpb_common.svg" if common else "bpb.svg"))))

# %% [markdown]
# ## Who beats whom, with what probability
# `p_a_beats_b` is the share of bootstrap resamples of the seeds in which A's mean is better: 0.5 is a coin
# flip, above 0.95 is a difference the seeds agree on. `seed_pair_share` is exact: the share of (A proxy,
# B proxy) pairs in which A's did better.

# %%
pairs = ablation_stats.pairwise(results)
display(pairs[(pairs.metric == LEAD) & (pairs.p_a_beats_b >= 0.5)].round(3))

# %% [markdown]
# ## Do the seeds agree on the ranking?
# Kendall tau compares the order of the mixtures under two seeds: 1 means the same order, -1 reversed.

# %%
display(ablation_stats.ranking_stability(results).round(2))

# %% [markdown]
# ## Training curves
# Thin lines are single proxies, thick lines the mean per mixture.

# %%
display(SVG(filename=str(ablation.root / "loss_curves.svg")))

# %% [markdown]
# ## The whole report
# Everything above, as written to `ablations/<name>/report.md`:

# %%
display(Markdown(report.read_text()))

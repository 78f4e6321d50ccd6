# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2. Design a mixture
#
# A mixture says how many training tokens come from each source. Set the weights and a token budget; the plan
# below shows how many times each source would be repeated (its *epochs*). Repeating a small excellent source
# many times is worth less than the same number of fresh tokens: the calculator puts a number on that, with the
# data-constrained scaling law of Muennighoff et al. (2023). When you are happy, the last cell writes a new
# `mix_vN.yaml` that `mixlab mixture` and `mixlab ablate` take.

# %%
import json
import os
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from mixlab.jobs import ensure_built
from mixtures import regmix, scaling
from mixtures.plan import PlanError, make_plan
from mixtures.spec import find_spec, load_spec
from mixtures.tiny import parse_source_docs, shrink_spec

SPEC = os.environ.get("MIXLAB_NB_SPEC", "mix_v3.yaml")
DOCS = int(os.environ.get("MIXLAB_NB_DOCS", "60"))  # documents per source; 0 = all
SOURCE_DOCS = parse_source_docs(os.environ.get("MIXLAB_NB_SOURCE_DOCS", "web=400"))  # C4 keeps ~1 page in 20
WORK = Path(os.environ.get("MIXLAB_NB_WORK", "notebook_work"))
OUT = Path(os.environ.get("MIXLAB_NB_OUT", str(find_spec(SPEC).resolve().parent)))  # where mix_vN.yaml goes

spec = shrink_spec(SPEC, WORK / "specs", docs=DOCS, output_dir=WORK / "runs",
                   source_docs=SOURCE_DOCS) if DOCS else load_spec(SPEC)
run_dir = ensure_built(spec, tiny=bool(DOCS))
plan = json.loads((run_dir / "plan.json").read_text())
available = {s["source"]: (s["available_docs"], s["available_tokens"]) for s in plan["sources"]}
pd.DataFrame([{"source": s, "documents": d, "tokens": t} for s, (d, t) in available.items()])

# %% [markdown]
# ## Your mixture
# Weights are relative (they need not sum to 1). The budget is the number of tokens the model will be trained
# on. The epoch cap says how often a source may repeat; ~4 epochs cost little (Muennighoff et al. 2023).

# %%
WEIGHTS = {s: 1.0 for s in available}  # edit me, e.g. {"web": 0.6, "wiki": 0.2, ...}
BUDGET = int(os.environ.get("MIXLAB_NB_BUDGET", str(sum(t for _, t in available.values()) // 2)))
EPOCH_CAP = 4.0

caps = dict.fromkeys(WEIGHTS, EPOCH_CAP)
try:
    rows = make_plan(WEIGHTS, available, caps, BUDGET, plan["max_seq_len"], redistribute=True)
    table = pd.DataFrame([{**r.as_dict(), "effective_tokens": scaling.effective_data(r.available_tokens, r.epochs)
                           if r.available_tokens else 0} for r in rows])
    table["worth_of_a_token"] = (table["effective_tokens"] / table["target_tokens"]).round(3)
    display(table[["source", "weight", "available_tokens", "target_tokens", "epochs", "effective_tokens",
                   "worth_of_a_token"]])
except PlanError as err:
    display(Markdown(f"**This mixture cannot be built:** {err}"))

# %% [markdown]
# `worth_of_a_token` is the scaling law's value of one trained token of that source relative to a fresh one:
# 1.0 up to one epoch, a little less for a few epochs, and it falls towards zero beyond ~16 repeats.
#
# ## 10B excellent tokens seen 100 times, or 1T mediocre ones?
# For one compute budget (here a 7B-parameter model on 1T tokens, C = 6 N D FLOPs), the calculator finds the
# best model size for each choice and predicts its loss. The penalty is *your* judgement of how much worse the
# mediocre text is, as a loss offset in nats per token. 0.05 below is a placeholder, not a measurement: measure
# the gap between a filtered and an unfiltered mixture with notebook 3 and put it here.

# %%
COMPUTE = 6 * 7e9 * 1e12
PENALTY = 0.05
options, verdict = scaling.compare(COMPUTE, [scaling.Tier("excellent x100", 10e9),
                                             scaling.Tier("mediocre", 1e12, loss_offset=PENALTY)])
display(Markdown(scaling.markdown_table(options)))
display(Markdown(f"**Verdict:** {verdict}"))

# %% [markdown]
# Where does the answer flip? The same question for a range of penalties:

# %%
flip = []
for penalty in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5):
    opts, _ = scaling.compare(COMPUTE, [scaling.Tier("excellent x100", 10e9),
                                        scaling.Tier("mediocre", 1e12, loss_offset=penalty)])
    flip.append({"penalty": penalty, "excellent": round(opts[0].loss, 4), "mediocre": round(opts[1].loss, 4),
                 "better": min(opts, key=lambda o: o.loss).tier})
pd.DataFrame(flip)

# %% [markdown]
# ## Write the mixture
# The new spec copies the base spec's sources and filters with your weights and budget, under the next free
# name `mix_vN.yaml`.

# %%
origin = find_spec(SPEC).resolve()
path = regmix.next_spec_path(OUT)
mixture = spec.mixture.model_dump(mode="json", exclude_defaults=True)
header = [f"Designed in notebooks/02_design_mixture.py from {origin.name}: budget {BUDGET:,} tokens.",
          f"Calculator verdict at {COMPUTE:.3g} FLOPs: {verdict}"]
regmix.write_spec(origin, path, {s: w / sum(WEIGHTS.values()) for s, w in WEIGHTS.items()}, header,
                   f"designed in notebook 2 from {origin.stem}", fallback_mixture=mixture,
                   overrides={"budget_tokens": BUDGET, "epoch_cap": EPOCH_CAP})
print(path.read_text())
print("valid spec:", load_spec(path).name)

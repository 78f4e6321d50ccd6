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
# # 1. Explore the sources
#
# Before choosing how much of each source goes into a training mixture, look at what the sources hold after
# cleaning: how much text per source and language, what each filter removed and why, and what kept and removed
# documents actually look like. You need no machine-learning background for this notebook: if you can tell a
# good page from boilerplate, you can judge whether the filters did the right thing.
#
# Settings come from environment variables so the same notebook runs on a laptop in a minute (the default: the
# first 60 documents of each source) or on the full corpora (`MIXLAB_NB_DOCS=0`).

# %%
import os
from pathlib import Path

import pandas as pd
from IPython.display import SVG, Markdown, display

from mixlab.jobs import ensure_built
from mixtures import catalogue, explore
from mixtures.spec import load_spec
from mixtures.tiny import parse_source_docs, shrink_spec

SPEC = os.environ.get("MIXLAB_NB_SPEC", "mix_v3.yaml")  # a shipped spec or a path
DOCS = int(os.environ.get("MIXLAB_NB_DOCS", "60"))  # documents per source; 0 = all (slow)
SOURCE_DOCS = parse_source_docs(os.environ.get("MIXLAB_NB_SOURCE_DOCS", "web=400"))  # C4 keeps ~1 page in 20
WORK = Path(os.environ.get("MIXLAB_NB_WORK", "notebook_work"))
pd.set_option("display.max_colwidth", 120)

# %% [markdown]
# ## Clean the sources
# This runs the spec's filter chains (the same code as `mixlab mixture`) and packs the kept text into training
# streams. A run that already exists is reused.

# %%
spec = shrink_spec(SPEC, WORK / "specs", docs=DOCS, output_dir=WORK / "runs",
                   source_docs=SOURCE_DOCS) if DOCS else load_spec(SPEC)
run_dir = ensure_built(spec, tiny=bool(DOCS))
print("run directory:", run_dir)

# %% [markdown]
# ## How much text is there?
# Tokens are the units a model reads (roughly a word piece). The catalogue counts them per source and language,
# for kept and removed documents. `words` below are whitespace-separated words, for intuition.

# %%
tokens = catalogue.query(run_dir, "SELECT * FROM tokens_by_source").to_pandas()
display(tokens)
display(explore.counts(run_dir))

# %% [markdown]
# ## The filter funnel
# Each row is one filter step: how many documents came in and how many it removed. A step that removes almost
# everything deserves a look at its examples below.

# %%
display(explore.funnel(run_dir))
display(SVG(filename=str(run_dir / "funnel.svg")))
reasons = explore.removal_reasons(run_dir)
display(reasons)

# %% [markdown]
# ## Why did a filter drop this page?
# A seeded random sample of removed documents with the rule that removed them (change `seed` for others), then
# kept documents for comparison. C4's rules, for example, drop pages with fewer than three sentences, lines
# without terminal punctuation, or words from a bad-words list (docs/c4.md).

# %%
display(explore.examples(run_dir, "removed", n=5, seed=0))
display(explore.examples(run_dir, "docs", n=5, seed=0))

# %% [markdown]
# To see one rule's removals only, pass its reason (the first one found above):

# %%
if not reasons.empty:
    display(explore.examples(run_dir, "removed", n=3, seed=1, reason=reasons.iloc[0]["reason"]))

# %% [markdown]
# ## Quality scores
# Specs with a `quality:` section score each kept document with a classifier (higher = more like the reference
# "good" text). The histogram shows whether a threshold would cut a lot or a little.

# %%
scores = explore.quality_scores(run_dir)
if scores.empty:
    display(Markdown("_No quality scores in this run: its spec has no quality classifier._"))
else:
    ax = scores.pivot(columns="source", values="quality_score").plot.hist(bins=30, alpha=0.6)
    ax.set_xlabel("quality score")
    display(scores.groupby("source")["quality_score"].describe())

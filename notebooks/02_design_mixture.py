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
# # 2. Design a mixture
#
# A mixture says how many training tokens come from each source. Set the weights and a token budget; the plan
# below shows how many times each source would be repeated (its *epochs*). Repeating a small excellent source
# many times is worth less than the same number of fresh tokens: the calculator puts a number on that, with the
# data-constrained scaling law of Muennighoff et al. (2023). When you are happy, the button in the last cell writes
# a new `mix_vN.yaml` that `mixlab mixture` and `mixlab ablate` take.

# %%
import json
import os
from pathlib import Path

import ipywidgets as widgets
import pandas as pd
from IPython.display import HTML, Markdown, display

from mixlab.jobs import ensure_built
from mixtures import regmix, scaling
from mixtures.plan import PlanError, make_plan
from mixtures.report import svg
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
# Move the sliders: the plan below them is redrawn as they move. Weights are relative (they need not sum to 1);
# they start at the base spec's. The budget is the number of tokens the model will be trained on. The epoch cap
# says how often a source may repeat; ~4 epochs cost little (Muennighoff et al. 2023). A run without a browser
# (tests, `jupyter nbconvert`) uses the starting values; the cell after the sliders records their plan as a table.

# %%
EPOCH_CAP = 4.0
START_WEIGHTS = {s["source"]: float(s["weight"]) for s in plan["sources"]}  # the base spec's weights
TOTAL_AVAILABLE = sum(t for _, t in available.values())
BUDGET = int(os.environ.get("MIXLAB_NB_BUDGET", str(TOTAL_AVAILABLE // 2)))
BUDGET -= BUDGET % plan["max_seq_len"]  # whole sequences, the slider's step (the plan rounds down the same way)
view: dict = {}  # the last plan drawn: {"weights", "budget", "table", "estimate", "error"}


def plan_for(weights: dict, budget: int, epoch_cap: float = EPOCH_CAP) -> pd.DataFrame:
    """Per source: target tokens, epochs, and what the scaling law says those tokens are worth (PlanError if none)."""
    rows = make_plan(weights, available, dict.fromkeys(weights, epoch_cap), budget, plan["max_seq_len"],
                     redistribute=True)
    table = pd.DataFrame([{**r.as_dict(), "effective_tokens": scaling.effective_data(r.available_tokens, r.epochs)
                           if r.available_tokens else 0.0} for r in rows])
    table["worth_of_a_token"] = (table["effective_tokens"] / table["target_tokens"].where(table["target_tokens"] > 0)
                                 ).fillna(0.0).round(3)
    return table[["source", "weight", "available_tokens", "target_tokens", "epochs", "effective_tokens",
                  "worth_of_a_token"]]


def estimate(table: pd.DataFrame) -> str:
    """The calculator's verdict on a plan: how many fresh tokens its training tokens are worth."""
    trained, effective = int(table.target_tokens.sum()), float(table.effective_tokens.sum())
    top = table.sort_values("epochs", ascending=False).iloc[0]
    return (f"{trained:,} training tokens are worth {effective:,.0f} fresh ones ({effective / max(trained, 1):.1%}); "
            f"most repeated: {top.source} at {top.epochs:.2f} epochs.")


def epochs_chart(table: pd.DataFrame, epoch_cap: float = EPOCH_CAP) -> str:
    """Epochs per source against one epoch and the cap (an inline SVG)."""
    rows = [svg.Row(r.source, [[svg.Seg(r.epochs, svg.PALETTE[2] if r.epochs <= 1 else svg.REMOVED,
                                        f"{r.source}: {r.epochs:.3f} epochs")]], note=f"{r.epochs:.2f}")
            for r in table.itertuples()]
    return svg.hbars(rows, "Epochs per source", width=560, marks=[(1.0, "1 epoch"), (epoch_cap, "epoch cap")])


def current() -> tuple[dict, int]:
    """The sliders' weights and budget."""
    return {s: float(w.value) for s, w in sliders.items()}, int(budget_slider.value)


def redraw(_change: object = None) -> dict:
    """Slider callback (a plain function: call it directly too): replan and redraw table, epochs and estimate."""
    weights, budget = current()
    view.clear()
    view.update(weights=weights, budget=budget, table=None, estimate=None, error=None)
    try:
        view["table"] = plan_for(weights, budget)
        view["estimate"] = estimate(view["table"])
    except PlanError as err:
        view["error"] = str(err)
    panel.clear_output(wait=True)
    with panel:
        if view["error"]:
            display(Markdown(f"**This mixture cannot be built:** {view['error']}"))
        else:
            display(view["table"], HTML(epochs_chart(view["table"])), Markdown(f"**Estimate:** {view['estimate']}"))
    return view


sliders = {s: widgets.FloatSlider(value=w, min=0.0, max=1.0, step=0.01, description=s,
                                  style={"description_width": "initial"}) for s, w in START_WEIGHTS.items()}
budget_slider = widgets.IntSlider(value=BUDGET, min=plan["max_seq_len"], step=plan["max_seq_len"],
                                  max=max(int(EPOCH_CAP * TOTAL_AVAILABLE), BUDGET), description="budget (tokens)",
                                  style={"description_width": "initial"}, layout={"width": "520px"})
panel = widgets.Output()
for control in (*sliders.values(), budget_slider):
    control.observe(redraw, names="value")
display(widgets.VBox([*sliders.values(), budget_slider, panel]))
_ = redraw()

# %% [markdown]
# The plan of the sliders' current values as a plain table (rerun the cell after moving them):

# %%
if view["error"]:
    display(Markdown(f"**This mixture cannot be built:** {view['error']}"))
else:
    display(Markdown(f"**Estimate:** {view['estimate']}"))
    display(view["table"])

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
# The button writes a new spec with the sliders' weights and budget: the base spec's sources and filters, under
# the next free name `mix_vN.yaml`, ready for `mixlab mixture` and `mixlab ablate`.

# %%
origin = find_spec(SPEC).resolve()
mixture = spec.mixture.model_dump(mode="json", exclude_defaults=True)


def write_mix(_button: object = None) -> Path | None:
    """Button callback (a plain function: call it directly too): write the sliders' mixture as the next mix_vN.yaml."""
    weights, budget = current()
    total = sum(weights.values())
    if total <= 0:
        with written:
            print("every weight is 0: move at least one slider up (nothing written)")
        return None
    path = regmix.next_spec_path(OUT)
    header = [f"Designed in notebooks/02_design_mixture.py from {origin.name}: budget {budget:,} tokens.",
              f"Calculator verdict at {COMPUTE:.3g} FLOPs: {verdict}"]
    regmix.write_spec(origin, path, {s: w / total for s, w in weights.items()}, header,
                      f"designed in notebook 2 from {origin.stem}", fallback_mixture=mixture,
                      overrides={"budget_tokens": budget, "epoch_cap": EPOCH_CAP})
    with written:
        print(f"wrote {path}: valid spec {load_spec(path).name}")
    return path


button = widgets.Button(description="Write the next mix_vN.yaml", icon="save", button_style="primary",
                        layout={"width": "260px"})
button.on_click(write_mix)
written = widgets.Output()
display(widgets.VBox([button, written]))

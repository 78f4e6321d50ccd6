"""Shared test setup: the shared corpora by path, single-threaded math, offline hubs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MIXLAB_SHARED", REPO.parent / "shared")).resolve()
CORPORA = SHARED / "corpora"

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("NLTK_DATA", str(SHARED / "nltk_data"))


@pytest.fixture(scope="session")
def corpora() -> Path:
    """The shared corpora directory (tests read it by path, never copy it)."""
    if not CORPORA.is_dir():
        pytest.fail(f"shared corpora not found at {CORPORA}; set MIXLAB_SHARED")
    return CORPORA


@pytest.fixture(scope="session")
def tiny_mixture(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> Path:
    """A tiny web + wiki mixture run directory (tokenizer, MDS streams, streams.yaml) for proxy tests."""
    from proxy_train.testing import build_corpus_mixture

    return build_corpus_mixture(tmp_path_factory.mktemp("tiny_mixture"), corpora)

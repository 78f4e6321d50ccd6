"""datatrove's filters as the peer for bench.filters and the agreement tests (bench extra only).

Scripts reach it through bench/peers.py (which checks datatrove is installed first); tests load this file by
path. Standard library only at import time.

datatrove 0.10.1 declares ``huggingface-hub>=1.6`` while this lock pins 0.36.2 (transformers<5, see
docs/filters.md), so it is installed with ``--no-deps``. Its ``pipeline.writers`` package eagerly imports the
Hugging Face bucket writer, whose hub functions (``batch_bucket_files``...) do not exist in hub 0.36; the
filters never touch that writer, so :func:`load` registers a stand-in module for it that refuses to be used.
Everything else is datatrove's own code, run unchanged.
"""

from __future__ import annotations

import sys
import types
from typing import Any

TFDS_C4 = {"min_num_sentences": 3, "min_words_per_line": 5}  # TFDS c4_utils constants (curation.md 1.1)


def _unavailable(name: str) -> type:
    """A class that explains why the Hugging Face writer cannot be built with this hub version."""

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise ImportError(f"{name} needs huggingface-hub>=1.6; Mixlab pins 0.36.2")

    return type(name, (), {"__init__": refuse})


def _register_writer_stand_in() -> None:
    import huggingface_hub

    if hasattr(huggingface_hub, "batch_bucket_files"):
        return
    module = types.ModuleType("datatrove.pipeline.writers.huggingface")
    module.HuggingFaceDatasetWriter = _unavailable("HuggingFaceDatasetWriter")
    module.HuggingFaceBucketWriter = _unavailable("HuggingFaceBucketWriter")
    sys.modules[module.__name__] = module


def load() -> dict[str, Any]:
    """datatrove's C4 (TFDS constants, punkt sentences), Gopher repetition, Gopher quality and FineWeb filters."""
    _register_writer_stand_in()
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )
    from datatrove.utils.word_tokenizers import NLTKTokenizer

    return {
        "c4": C4QualityFilter(language=NLTKTokenizer("english"), **TFDS_C4),
        "gopher_repetition": GopherRepetitionFilter(),
        "gopher_quality": GopherQualityFilter(),
        "fineweb": FineWebQualityFilter(),
    }


def decide(flt: Any, text: str) -> tuple[bool, str | None, str]:
    """Run one datatrove filter on ``text``: (keep, datatrove's reason or None, text after the filter)."""
    from datatrove.data import Document

    doc = Document(text=text, id="0")
    result = flt.filter(doc)
    if result is True or result == (True,):
        return True, None, doc.text
    if result is False:
        return False, "", doc.text
    return bool(result[0]), result[1], doc.text


def words(text: str) -> list[str]:
    """datatrove's English word split (spaCy's blank ``en`` tokenizer, stripped, empties removed)."""
    _register_writer_stand_in()
    from datatrove.utils.text import split_into_words

    return split_into_words(text)

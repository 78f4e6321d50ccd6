"""The ``dedup:`` section of a mixture spec: cross-source dedup stages run after every source's own chain.

```yaml
dedup:
  lines: false                 # C4 line-level dedup (c4_line_dedup) over all sources first
  exact: true                  # exact dedup on normalised text
  normalise: {lowercase: true, whitespace: true, punctuation: false, digits: false, unicode: true}
  minhash: {threshold: 0.72}   # null turns near-dedup off; bands/rows default to 14 x 8 (datatrove)
  cross_source: true           # false: documents are only compared within their own source
  source_priority: [wiki, papers, web]   # the survivor of a cluster comes from the first listed source
```

The settings are the dedup stages' own parameter models (:mod:`filters.dedup`): ``normalise``,
``cross_source`` and ``source_priority`` are :class:`~filters.dedup.DedupParams`, shared by both stages, and
``minhash`` is :class:`~filters.dedup.MinHashConfig`, the one MinHash config (also behind the ``minhash_dedup``
step and ``mixlab dedup``).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from filters.dedup import DedupParams, MinHashConfig

# The names this section's settings had before they moved to filters.dedup (same classes).


class DedupSpec(DedupParams):
    """Cross-source dedup: which stages run and how the survivor of a cluster is chosen."""

    lines: bool = Field(False, description="C4 line-level dedup (c4_line_dedup) over all sources first")
    exact: bool = Field(True, description="exact dedup on normalised text")
    minhash: MinHashConfig | None = Field(default_factory=MinHashConfig, description="null turns near-dedup off")

    def steps(self, sources: list[str]) -> list[tuple[str, dict[str, Any]]]:
        """The global stages as ``(registered name, params)``; unknown source names are an error."""
        unknown = sorted({*self.source_priority, *(self.minhash.char_sources if self.minhash else [])}
                         - set(sources))
        if unknown:
            raise ValueError(f"dedup: unknown source(s) {', '.join(unknown)}; sources: {', '.join(sources)}")
        common = self.model_dump(include=set(DedupParams.model_fields))
        out: list[tuple[str, dict[str, Any]]] = [("c4_line_dedup", {})] if self.lines else []
        if self.exact:
            out.append(("exact_dedup", common))
        if self.minhash is not None:
            out.append(("minhash_dedup", {**self.minhash.model_dump(), **common}))
        return out

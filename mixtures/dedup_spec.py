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
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NormaliseSpec(_Strict):
    """Which differences dedup ignores (see :class:`filters.dedup.TextNorm`)."""

    lowercase: bool = True
    whitespace: bool = True
    punctuation: bool = False
    digits: bool = False
    unicode: bool = True
    diacritics: bool = False


class MinHashSpec(_Strict):
    """MinHash LSH settings; bands/rows come from datasketch's optimal split of num_perm when not given."""

    threshold: float = Field(0.72, gt=0.0, lt=1.0)
    bands: int | None = Field(None, ge=1)
    rows: int | None = Field(None, ge=1)
    num_perm: int = Field(112, ge=2, le=1024)
    ngram: int = Field(5, ge=1, le=64)
    unit: Literal["word", "char", "auto"] = "auto"
    char_ngram: int = Field(10, ge=1, le=64)
    char_sources: list[str] = Field(default_factory=list, description="sources shingled by characters (code)")
    seed: int = 1
    verify: bool = False
    components: Literal["auto", "single", "distributed"] = "auto"
    fast_path_max_edges: int = Field(2_000_000, ge=0)
    max_iterations: int = Field(20, ge=1, le=200)

    @model_validator(mode="after")
    def _bands_rows(self) -> MinHashSpec:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give both bands and rows, or neither (then the threshold picks them)")
        return self


class DedupSpec(_Strict):
    """Cross-source dedup: which stages run and how the survivor of a cluster is chosen."""

    lines: bool = False
    exact: bool = True
    normalise: NormaliseSpec = Field(default_factory=NormaliseSpec)
    minhash: MinHashSpec | None = Field(default_factory=MinHashSpec)
    cross_source: bool = True
    source_priority: list[str] = Field(default_factory=list)

    def steps(self, sources: list[str]) -> list[tuple[str, dict[str, Any]]]:
        """The global stages as ``(registered name, params)``; unknown source names are an error."""
        unknown = sorted({*self.source_priority, *(self.minhash.char_sources if self.minhash else [])}
                         - set(sources))
        if unknown:
            raise ValueError(f"dedup: unknown source(s) {', '.join(unknown)}; sources: {', '.join(sources)}")
        common = {"normalise": self.normalise.model_dump(), "cross_source": self.cross_source,
                  "source_priority": list(self.source_priority)}
        out: list[tuple[str, dict[str, Any]]] = [("c4_line_dedup", {})] if self.lines else []
        if self.exact:
            out.append(("exact_dedup", common))
        if self.minhash is not None:
            out.append(("minhash_dedup", {**self.minhash.model_dump(), **common}))
        return out

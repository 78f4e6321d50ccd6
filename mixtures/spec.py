"""The mixture spec: a YAML file naming sources, their readers and filter chains, and the run directory.

Loading validates everything before any work starts: unknown keys, wrong types, unknown filters, missing
files and nonsensical values raise :class:`SpecError`, whose message names the file and the key.
Later stages (dedup, classifiers, weights, MDS) add their own sections to :class:`Spec`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from filters import registry
from filters.errors import UserError
from mixtures.dedup_spec import DedupSpec
from mixtures.mixture_spec import MixtureSpec
from mixtures.quality_spec import QualityField

DATA_ROOT_ENV = "MIXLAB_DATA_ROOT"
MIXTURES_DIR = Path(__file__).resolve().parent


class SpecError(UserError):
    """A problem in a mixture spec, with the file and key it concerns."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Step(_Strict):
    """One entry of a filter chain: a registered name and its parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and len(value) == 1 and "name" not in value:
            (name, params), = value.items()
            if params is not None and not isinstance(params, dict):
                raise ValueError(f"parameters of {name!r} must be a mapping, got {type(params).__name__}")
            return {"name": name, "params": params or {}}
        return value

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in registry.known_steps():
            raise ValueError(f"unknown filter {name!r}; known: {', '.join(registry.known_steps())}")
        return name


class SourceSpec(_Strict):
    """Where a source's documents come from and which filter chain cleans them."""

    paths: list[str] = Field(min_length=1)
    reader: Literal["jsonl", "parquet", "warc", "hf"] | None = None
    text_field: str = "text"
    id_field: str = "id"
    url_field: str = "url"
    max_doc_chars: int = Field(5_000_000, gt=0)
    limit: int | None = Field(None, gt=0, description="read at most this many documents (quick runs)")
    hf_split: str = "train"
    hf_data_files: list[str] = Field(default_factory=list)
    filters: list[Step] = Field(default_factory=list)


class PipelineSpec(_Strict):
    """How Beam runs: runner name, extra pipeline options, output shards per source."""

    runner: str = "FnApiRunner"
    direct_num_workers: int = Field(1, ge=1)
    direct_running_mode: Literal["in_memory", "multi_threading", "multi_processing"] = "in_memory"
    shards_per_source: int = Field(1, ge=1)
    options: list[str] = Field(default_factory=list, description="extra Beam pipeline flags, passed through")


class Spec(_Strict):
    """A whole mixture spec."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    data_root: str = "."
    output_dir: str = "runs"
    seed: int = 0
    sources: dict[str, SourceSpec] = Field(min_length=1)
    pipeline: PipelineSpec = Field(default_factory=PipelineSpec)
    dedup: DedupSpec | None = None  # cross-source dedup stages (mixtures/dedup_spec.py)
    mixture: MixtureSpec | None = None
    quality: QualityField = None

    # Filled in by load_spec, not by the YAML.
    spec_path: str = Field("", exclude=True)

    @field_validator("sources")
    @classmethod
    def _source_names(cls, sources: dict[str, SourceSpec]) -> dict[str, SourceSpec]:
        for name in sources:
            if not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"source name {name!r} must be letters, digits, '_' or '-'")
        return sources

    @model_validator(mode="after")
    def _mixture_sources(self) -> Spec:
        if self.mixture is not None and set(self.mixture.sources) != set(self.sources):
            mixed, named = set(self.mixture.sources), set(self.sources)
            raise ValueError(f"mixture.sources must list every source (weight 0 to leave one out); "
                             f"missing: {sorted(named - mixed)}, not a source: {sorted(mixed - named)}")
        return self

    @property
    def root(self) -> Path:
        """The data root: $MIXLAB_DATA_ROOT if set, else ``data_root`` relative to the spec file."""
        if os.environ.get(DATA_ROOT_ENV):
            return Path(os.environ[DATA_ROOT_ENV]).resolve()
        base = Path(self.spec_path).parent if self.spec_path else Path.cwd()
        return (base / self.data_root).resolve()

    @property
    def run_dir(self) -> Path:
        """``<output_dir>/<name>``; a relative output_dir is relative to the current directory."""
        return Path(self.output_dir).resolve() / self.name

    def resolve_paths(self, source: str) -> list[str]:
        """The files (or ``hf://`` URIs) a source reads, globs expanded and sorted."""
        out: list[str] = []
        for pattern in self.sources[source].paths:
            if pattern.startswith("hf://"):
                out.append(pattern)
                continue
            full = pattern if Path(pattern).is_absolute() else str(self.root / pattern)
            out.extend(sorted(glob.glob(full)) if glob.has_magic(full) else [full])
        return out

    def fingerprint(self) -> str:
        """Hash of the spec's content and its input files' sizes and mtimes: unchanged means rerun is a no-op."""
        parts: list[Any] = [self.model_dump(mode="json", exclude={"mixture"})]  # mixing never re-cleans
        for source in sorted(self.sources):
            for path in self.resolve_paths(source):
                p = Path(path)
                parts.append([path, p.stat().st_size, p.stat().st_mtime_ns] if p.exists() else [path])
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _format_errors(path: str, err: ValidationError) -> str:
    lines = [f"{path}: invalid mixture spec"]
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<top level>"
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {path}: {key}: {msg}")
    return "\n".join(lines)


def find_spec(name: str | Path) -> Path:
    """Resolve ``mix_v3.yaml`` (or a path) to a spec file: as given, else under ``mixtures/``."""
    candidate = Path(name)
    if candidate.exists():
        return candidate
    shipped = MIXTURES_DIR / candidate.name
    if shipped.exists():
        return shipped
    raise SpecError(f"{name}: no such mixture spec (looked here and in {MIXTURES_DIR})")


def load_spec(name: str | Path, check_files: bool = True) -> Spec:
    """Read, validate and return a spec; raise SpecError naming file and key on any problem."""
    path = find_spec(name)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a mixture spec is a mapping at the top level, got {type(data).__name__}")
    data.setdefault("name", path.stem)
    try:
        spec = Spec.model_validate({**data, "spec_path": str(path.resolve())})
    except ValidationError as err:
        raise SpecError(_format_errors(str(path), err)) from None
    if check_files:
        _check_files(spec, str(path))
    return spec


def _check_files(spec: Spec, path: str) -> None:
    problems = []
    for source, src in spec.sources.items():
        for i, pattern in enumerate(src.paths):
            if pattern.startswith("hf://"):
                continue
            full = pattern if Path(pattern).is_absolute() else str(spec.root / pattern)
            if not (glob.glob(full) if glob.has_magic(full) else Path(full).is_file()):
                problems.append(f"  {path}: sources.{source}.paths.{i}: no file matches {full}")
    if problems:
        raise SpecError(f"{path}: input files missing (data root {spec.root}; set ${DATA_ROOT_ENV} to move it)\n"
                        + "\n".join(problems))

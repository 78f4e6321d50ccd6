"""The mixture spec: a YAML file naming sources, their readers and filter chains, and the run directory.

Loading validates everything before any work starts: a file that is not UTF-8, duplicate keys in any mapping,
unknown keys, wrong types (numbers are never read from strings), non-finite numbers, unknown filters, unknown or
mistyped step parameters, missing files and nonsensical values raise :class:`SpecError`, whose message names the
file and the key. Loading writes nothing. Later stages (dedup, classifiers, weights, MDS) add their own sections
to :class:`Spec`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from filters import registry
from filters.errors import UserError
from filters.params import StrictModel
from mixtures.dedup_spec import DedupSpec
from mixtures.layout import RunDirError, name_problem, run_root
from mixtures.mixture_spec import MixtureSpec
from mixtures.quality_spec import QualityField

DATA_ROOT_ENV = "MIXLAB_DATA_ROOT"
MIXTURES_DIR = Path(__file__).resolve().parent
FROM_FILE = "mixlab.spec_file"  # validation context key: the data comes from a spec file written by a person


class SpecError(UserError):
    """A problem in a mixture spec, with the file and key it concerns."""


class Step(StrictModel):
    """One entry of a filter chain: a registered name and its parameters.

    ``params`` stay as written. A spec file's step is checked against the step's parameter model at load time
    (unknown, mistyped or run-internal keys are errors, located at ``filters.<i>.<name>.<key>``); a step built
    in Python (the run adds internal parameters) is checked when it is built, before any work starts.
    """

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

    @model_validator(mode="after")
    def _params(self, info: ValidationInfo) -> Step:
        if (info.context or {}).get(FROM_FILE):
            found = registry.step_problems(self.name, self.params, user=True)
            if found:
                raise ValidationError.from_exception_data("Step", found)
        return self


class SourceSpec(StrictModel):
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


class PipelineSpec(StrictModel):
    """How Beam runs: runner name, extra pipeline options, how the outputs and the work are split by size."""

    runner: str = "FnApiRunner"
    direct_num_workers: int = Field(1, ge=1)
    direct_running_mode: Literal["in_memory", "multi_threading", "multi_processing"] = "in_memory"
    shards_per_source: int | None = Field(None, ge=1, description=(
        "Parquet files per source and output (docs, removed, quarantine); default one per `shard_mb`"))
    shard_mb: float = Field(128, gt=0, description="estimated MB of input text per output shard")
    partition_mb: float = Field(64, ge=0, description=(
        "estimated MB of input text one pipeline holds at a time; 0: every corpus stage runs over the whole "
        "corpus in one pipeline (cluster runners, which shuffle on disk)"))
    options: list[str] = Field(default_factory=list, description="extra Beam pipeline flags, passed through")


class Spec(StrictModel):
    """A whole mixture spec."""

    name: str  # one plain folder name (mixtures.layout.name_problem): the run is <output_dir>/<name>/
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

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        problem = name_problem(name)
        if problem:
            raise ValueError(f"{problem}: the run directory is <output_dir>/<name>")
        return name

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
        """``<output_dir>/<name>``; a relative output_dir is relative to the current directory.

        Raises SpecError (naming the file and ``name``) when it would lie outside output_dir, e.g. through a symlink.
        """
        try:
            return run_root(self.output_dir, self.name)
        except RunDirError as err:
            raise SpecError(f"{self.spec_path or '<spec>'}: name: {err}") from None

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


def _message(item: Any) -> str:
    msg = item["msg"].removeprefix("Value error, ")
    if item["type"] == "extra_forbidden":
        return "unknown key"
    if item["type"] in ("int_type", "float_type") and isinstance(item.get("input"), str):
        return f"{msg}, not the string {item['input']!r} (write numbers without quotes)"
    return msg


def _format_errors(path: str, err: ValidationError) -> str:
    lines = [f"{path}: invalid mixture spec"]
    for item in err.errors(include_url=False):
        key = ".".join(str(part) for part in item["loc"]) or "<top level>"
        lines.append(f"  {path}: {key}: {_message(item)}")
    return "\n".join(lines)


class _SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error naming both lines."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` may be overridden by later keys: that is what merging is for
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: the base class reports it
            if first is None:
                seen[key] = key_node.start_mark.line
            else:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"duplicate key {key!r} (first given on line {first + 1})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> Any:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not UTF-8 text: byte 0x{raw[err.start]:02x} at offset {err.start} "
                        f"({err.reason}); save the spec as UTF-8") from None
    try:
        return yaml.load(text, Loader=_SpecLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        if err.problem and err.problem.startswith("duplicate key") and err.problem_mark is not None:
            raise SpecError(f"{path}:{err.problem_mark.line + 1}: {err.problem}") from None
        raise SpecError(f"{path}: not valid YAML: {err}") from None
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from None


def _non_finite(data: Any, loc: tuple[Any, ...] = ()) -> list[str]:
    """Keys (dotted) whose value is ``.inf``, ``-.inf`` or ``.nan``, anywhere in the parsed YAML."""
    if isinstance(data, float) and not math.isfinite(data):
        return [".".join(map(str, loc)) or "<top level>"]
    if isinstance(data, dict):
        return [k for key, value in data.items() for k in _non_finite(value, (*loc, key))]
    if isinstance(data, list):
        return [k for i, value in enumerate(data) for k in _non_finite(value, (*loc, i))]
    return []


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
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a mixture spec is a mapping at the top level, got {type(data).__name__}")
    bad = _non_finite(data)
    if bad:
        raise SpecError(f"{path}: invalid mixture spec\n"
                        + "\n".join(f"  {path}: {key}: not a finite number (.inf and .nan are not allowed)"
                                    for key in bad))
    data.setdefault("name", path.stem)
    try:
        spec = Spec.model_validate({**data, "spec_path": str(path.resolve())}, context={FROM_FILE: True})
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

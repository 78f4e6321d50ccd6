"""``streams.yaml``: the versioned contract between a built mixture and whatever trains on it.

Its ``streams:`` mapping is llm-foundry's ``train_loader.dataset.streams`` verbatim (``local``, ``remote`` and
``choose``: samples per epoch, so one epoch reads each stream's planned samples exactly; a manifest re-weighted
with :meth:`StreamsManifest.with_proportions` carries ``proportion`` instead, and streaming accepts one of the two
per stream, never both, nor a mix across streams); the other keys say how to read the samples (sequence length,
vocabulary, EOS id, the tokenizer folder) and where the held-out streams are. Like streaming's ``index.json`` it
carries a ``version``; :meth:`StreamsManifest.read` checks it and every key, naming the file and the key. The
mixture writer, the proposer's per-proxy manifests, the test fixtures and the proxy trainer all go through
:meth:`write` and :meth:`read`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from filters.errors import UserError

VERSION = 2  # 2: ``choose`` per stream; ``tokenizer`` names a Hugging Face folder. Version 1 is still read.
READS = (1, 2)


class StreamsError(UserError):
    """A problem in a run's streams.yaml, naming the file and key."""


@dataclass(frozen=True)
class TrainStream:
    """One training stream: its MDS folder, its share of the samples, and (as built) its samples per epoch."""

    local: Path
    proportion: float
    remote: str | None = None
    choose: int | None = None  # written as streaming's ``choose``; ``proportion`` is then choose / sum of choose

    @classmethod
    def chosen(cls, local: Path, choose: int, total: int) -> TrainStream:
        """A stream read as exactly ``choose`` samples per epoch, of ``total`` over all streams."""
        return cls(local, choose / total if total else 0.0, None, int(choose))


@dataclass(frozen=True)
class StreamsManifest:
    """What streams.yaml says about a built mixture (paths absolute once read)."""

    max_seq_len: int
    vocab_size: int
    eos_token_id: int
    tokenizer: Path
    streams: dict[str, TrainStream]
    validation: dict[str, Path] = field(default_factory=dict)
    version: int = VERSION
    run_dir: Path = Path()  # the folder the manifest was read from (not written)

    @property
    def tokenizer_file(self) -> Path:
        """The ``tokenizers`` JSON of the tokenizer folder (a version-1 manifest names the file itself)."""
        return self.tokenizer / "tokenizer.json" if self.tokenizer.is_dir() else self.tokenizer

    @property
    def train(self) -> dict[str, tuple[Path, float]]:
        """Streams with a positive proportion: source -> (MDS folder, proportion)."""
        return {s: (t.local, t.proportion) for s, t in self.streams.items() if t.proportion > 0}

    def with_proportions(self, proportions: dict[str, float]) -> StreamsManifest:
        """The same streams read at other proportions (sources not named get 0); ``choose`` is dropped."""
        return replace(self, streams={s: replace(t, proportion=round(float(proportions.get(s, 0.0)), 12),
                                                 choose=None) for s, t in self.streams.items()})

    def as_yaml(self) -> dict[str, Any]:
        """The YAML mapping written to disk (absolute paths, so the file works from any directory)."""
        return {
            "version": self.version, "max_seq_len": self.max_seq_len, "vocab_size": self.vocab_size,
            "eos_token_id": self.eos_token_id, "tokenizer": str(self.tokenizer),
            "streams": {s: {"local": str(t.local), "remote": t.remote,
                            **({"proportion": t.proportion} if t.choose is None else {"choose": t.choose})}
                        for s, t in self.streams.items()},
            "validation": {s: {"local": str(p)} for s, p in self.validation.items()},
        }

    def write(self, path: Path) -> Path:
        """Write the manifest to ``path`` (atomically: a reader never sees half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(yaml.safe_dump(self.as_yaml(), sort_keys=False), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, path: Path) -> StreamsManifest:
        """Read and check a manifest; relative paths are relative to its folder."""
        if not path.is_file():
            raise StreamsError(f"{path} not found: build the mixture first (mixlab mixture SPEC.yaml)")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise StreamsError(f"{path}: not a readable YAML file: {err}") from None
        return _parse(raw, path)


def _parse(raw: Any, file: Path) -> StreamsManifest:
    if not isinstance(raw, dict):
        raise StreamsError(f"{file}: expected a mapping at the top level")
    version = raw.get("version", VERSION)
    if version not in READS:
        raise StreamsError(f"{file}: version: this Mixlab reads streams.yaml versions "
                           f"{', '.join(map(str, READS))}, got {version!r}")
    for key in ("max_seq_len", "vocab_size", "eos_token_id", "tokenizer", "streams"):
        if key not in raw:
            raise StreamsError(f"{file}: missing key {key!r}")
    base = file.parent.resolve()
    streams = {}
    raw_streams = {name: entry or {} for name, entry in (raw["streams"] or {}).items()}
    chosen = [name for name, entry in raw_streams.items() if "choose" in entry]
    if chosen and len(chosen) < len(raw_streams):
        raise StreamsError(f"{file}: streams: give every stream `choose` or every stream `proportion` (streaming "
                           f"cannot mix them); {', '.join(chosen)} have choose")
    total = 0
    for name in chosen:
        entry = raw_streams[name]
        if "proportion" in entry:
            raise StreamsError(f"{file}: streams.{name}: give choose or proportion, not both")
        if not isinstance(entry["choose"], int) or isinstance(entry["choose"], bool) or entry["choose"] < 0:
            raise StreamsError(f"{file}: streams.{name}.choose must be an integer >= 0, got {entry['choose']!r}")
        total += entry["choose"]
    for name, entry in raw_streams.items():
        local = _stream_dir(base, entry.get("local"), f"streams.{name}.local", file)
        if chosen:
            streams[name] = replace(TrainStream.chosen(local, entry["choose"], total), remote=entry.get("remote"))
            continue
        proportion = entry.get("proportion")
        if not isinstance(proportion, int | float) or isinstance(proportion, bool) or proportion < 0:
            raise StreamsError(f"{file}: streams.{name}.proportion must be a number >= 0, got {proportion!r}")
        streams[name] = TrainStream(local, float(proportion), entry.get("remote"))
    if not any(t.proportion > 0 for t in streams.values()):
        raise StreamsError(f"{file}: streams has no source with a proportion > 0")
    validation = {name: _stream_dir(base, (entry or {}).get("local"), f"validation.{name}.local", file)
                  for name, entry in (raw.get("validation") or {}).items()}
    tokenizer = _path(base, raw["tokenizer"], "tokenizer", file)
    if not tokenizer.exists():
        raise StreamsError(f"{file}: tokenizer = {raw['tokenizer']!r} not found (looked in {tokenizer})")
    ints = {}
    for key in ("max_seq_len", "vocab_size", "eos_token_id"):
        if not isinstance(raw[key], int) or isinstance(raw[key], bool) or raw[key] < 0:
            raise StreamsError(f"{file}: {key} must be a non-negative integer, got {raw[key]!r}")
        ints[key] = raw[key]
    return StreamsManifest(tokenizer=tokenizer, streams=streams, validation=validation, version=version, run_dir=base,
                           **ints)


def _path(base: Path, value: Any, where: str, file: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise StreamsError(f"{file}: {where} must be a path string, got {value!r}")
    return Path(value) if Path(value).is_absolute() else base / value


def _stream_dir(base: Path, value: Any, where: str, file: Path) -> Path:
    path = _path(base, value, where, file)
    if not (path / "index.json").is_file():
        raise StreamsError(f"{file}: {where} = {value!r} has no index.json (looked in {path})")
    return path

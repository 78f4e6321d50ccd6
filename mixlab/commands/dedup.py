"""``mixlab dedup IN... OUT_DIR``: the mixture pipeline's dedup stages on plain files."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from filters.dedup import MinHashConfig, NormaliseParams
from filters.params import check
from mixtures.dedup_spec import DedupSpec
from mixtures.spec import SourceSpec, Spec, SpecError

# mixlab dedup's flags named after the MinHashConfig fields they set (a flag left at None keeps the default)
MINHASH_FLAGS = ("threshold", "bands", "rows", "ngram", "unit", "verify", "components")


def _bool(value: str, key: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise SpecError(f"--normalise: {key}={value!r} is not true or false")


def normalise_options(text: str) -> dict[str, bool]:
    """Parse ``punctuation=true,digits=true`` into normalisation overrides."""
    out: dict[str, bool] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in NormaliseParams.model_fields:
            raise SpecError(f"--normalise: expected OPT=BOOL with OPT in {', '.join(NormaliseParams.model_fields)}, "
                            f"got {item!r}")
        out[key] = _bool(value, key)
    return out


def source_names(paths: list[str]) -> list[str]:
    """One source name per input file: its stem, made unique with a numeric suffix."""
    names: list[str] = []
    for path in paths:
        stem = Path(path).name.split(".")[0].replace(".", "_") or "input"
        stem = "".join(c if c.isalnum() or c in "_-" else "_" for c in stem)
        name, i = stem, 2
        while name in names:
            name, i = f"{stem}_{i}", i + 1
        names.append(name)
    return names


def minhash_config(args: argparse.Namespace) -> MinHashConfig:
    """The MinHash config the flags describe (the same model as a spec's ``dedup.minhash``)."""
    return check(MinHashConfig, {flag: getattr(args, flag) for flag in MINHASH_FLAGS
                                 if getattr(args, flag, None) is not None}, "minhash")


def build_spec(args: argparse.Namespace, inputs: list[str], tmp: str) -> Spec:
    """A one-off spec: each input a source, the dedup section from the flags."""
    missing = [p for p in inputs if not Path(p).is_file()]
    if missing:
        raise SpecError(f"mixlab dedup: no such input file(s): {', '.join(missing)}")
    names = source_names(inputs)
    sources = {n: SourceSpec(paths=[str(Path(p).resolve())], text_field=args.text_field, id_field=args.id_field)
               for n, p in zip(names, inputs, strict=True)}
    priority = [s.strip() for s in args.priority.split(",") if s.strip()]
    try:
        dedup = DedupSpec(
            exact=not args.no_exact, normalise=NormaliseParams(**normalise_options(args.normalise)),
            minhash=minhash_config(args), cross_source=not args.per_source, source_priority=priority)
        dedup.steps(names)
    except ValueError as err:
        raise SpecError(f"mixlab dedup: {err}") from None
    return Spec(name="dedup", output_dir=tmp, spec_path=str(Path.cwd() / "cli"), sources=sources, dedup=dedup)


def dedup_files(args: argparse.Namespace) -> int:
    """Run exact + MinHash dedup over the inputs; write kept/removed/quarantined JSON Lines and clusters.parquet."""
    import pyarrow.parquet as pq

    from mixlab import jobs
    from mixlab.commands.data import export_jsonl, export_quarantine

    if len(args.paths) < 2:
        raise SpecError("mixlab dedup: give at least one input file and the output directory")
    *inputs, out = args.paths
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        spec = build_spec(args, inputs, tmp)
        layout = jobs.clean(spec, runner=args.runner, extra=args.beam_option, force=True)
        kept, removed = export_jsonl(layout, out_dir)
        quarantined = export_quarantine(layout, out_dir)
        (out_dir / "clusters.parquet").unlink(missing_ok=True)
        if layout.dedup_clusters.exists():
            shutil.copyfile(layout.dedup_clusters, out_dir / "clusters.parquet")
        else:
            from mixtures.report.dedup import CLUSTER_SCHEMA

            pq.write_table(CLUSTER_SCHEMA.empty_table(), out_dir / "clusters.parquet")
        for path in (layout.stats, layout.report):
            path.replace(out_dir / path.name)
    print(f"kept {kept}, removed {removed}, quarantined {quarantined} -> {out_dir}")
    return 0

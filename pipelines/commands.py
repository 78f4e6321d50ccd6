"""Handlers of the ``mixlab`` subcommands that drive pipelines (imported only when such a command runs)."""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from filters import registry
from mixtures.spec import SourceSpec, Spec, Step, load_spec

if TYPE_CHECKING:
    from pipelines.run import RunLayout


def mixture(args: argparse.Namespace) -> int:
    """Run a spec end to end."""
    from pipelines.run import run_clean

    spec = load_spec(args.spec)
    layout = run_clean(spec, runner=args.runner, extra=args.beam_option, force=args.force)
    if spec.mixture is not None:
        from mixtures.build import build_mixture

        build_mixture(spec, layout.root)
        print(f"streams:       {layout.root / 'streams.yaml'} (plan.json, catalogue/: mixlab tokens)")
    print(f"run directory: {layout.root}")
    print(f"report:        {layout.root / 'report.md'}")
    return 0


def validate(args: argparse.Namespace) -> int:
    """Validate a spec and list its sources, files and expanded chains."""
    spec = load_spec(args.spec)
    print(f"{spec.spec_path}: valid; data root {spec.root}; run directory {spec.run_dir}")
    for name in spec.sources:
        chain = [step for step, _ in registry.expand([(s.name, s.params) for s in spec.sources[name].filters])]
        print(f"  {name}: {len(spec.resolve_paths(name))} path(s); chain: {' -> '.join(chain) or '(none)'}")
    if spec.dedup is not None:
        from pipelines.run import global_steps

        print(f"  then across sources: {' -> '.join(n for n, _ in global_steps(spec)) or '(none)'}")
    return 0


def list_filters(args: argparse.Namespace) -> int:
    """Print document filters, corpus stages and named chains."""
    print("document filters: " + ", ".join(sorted(registry.DOC_FILTERS)))
    print("corpus stages:    " + ", ".join(sorted(registry.CORPUS_STAGES)))
    for name, members in sorted(registry.CHAINS.items()):
        print(f"chain {name}: {' -> '.join(members)}")
    return 0


def _write_jsonl_gz(path: Path, rows: list[dict]) -> None:
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


def export_jsonl(layout: RunLayout, out_dir: Path) -> tuple[int, int]:
    """Write a run's kept and removed documents (every source) as OUT_DIR/{kept,removed}.jsonl.gz; return counts."""
    import pyarrow.parquet as pq

    counts = []
    for name, folder in (("kept", layout.docs), ("removed", layout.removed)):
        rows = [_plain(r) for p in sorted(folder.glob("*/*.parquet")) for r in pq.read_table(p).to_pylist()]
        _write_jsonl_gz(out_dir / f"{name}.jsonl.gz", rows)
        counts.append(len(rows))
    return counts[0], counts[1]


def filter_file(args: argparse.Namespace) -> int:
    """Run a chain on one file with the mixture pipeline; write kept/removed JSON Lines."""
    from pipelines.run import run_clean

    source = args.source or Path(args.input).name.split(".")[0] or "input"
    steps = [Step(name=name.strip()) for name in args.chain.split(",") if name.strip()]
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        spec = Spec(name="filter", output_dir=tmp, spec_path=str(Path.cwd() / "cli"),
                    sources={source: SourceSpec(paths=[str(Path(args.input).resolve())], filters=steps)})
        layout = run_clean(spec, runner=args.runner, extra=args.beam_option, force=True)
        kept, removed = export_jsonl(layout, out_dir)
        for name in ("stats.json", "report.md", "funnel.svg"):
            (layout.root / name).replace(out_dir / name)
    print(f"kept {kept}, removed {removed} -> {out_dir}")
    return 0


def _plain(row: dict) -> dict:
    """A Parquet row as the JSON Lines record users expect: meta back to an object, nulls dropped."""
    meta = json.loads(row.pop("meta") or "{}")
    out = {k: v for k, v in row.items() if v is not None}
    out["meta"] = meta
    return out

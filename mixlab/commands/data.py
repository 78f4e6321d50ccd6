"""Handlers of the data commands: mixture, validate, filter, filters, tokens, quality train (imported on use)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from filters import registry
from filters.jsonl import write_jsonl
from mixtures.chains import global_steps, source_steps
from mixtures.layout import RunLayout
from mixtures.spec import SourceSpec, Spec, Step, load_spec


def mixture(args: argparse.Namespace) -> int:
    """Run a spec end to end."""
    from mixlab import jobs

    spec = load_spec(args.spec)
    layout = jobs.mixture(spec, runner=args.runner, extra=args.beam_option, force=args.force)
    if spec.mixture is not None:
        print(f"streams:       {layout.streams} (plan.json, catalogue/: mixlab tokens)")
    print(f"run directory: {layout.root}")
    print(f"report:        {layout.report}")
    return 0


def validate(args: argparse.Namespace) -> int:
    """Validate a spec and list its sources, files and expanded chains."""
    spec = load_spec(args.spec)
    print(f"{spec.spec_path}: valid; data root {spec.root}; run directory {spec.run_dir}")
    for name in spec.sources:
        chain = [step for step, _ in source_steps(spec, name)]
        print(f"  {name}: {len(spec.resolve_paths(name))} path(s); chain: {' -> '.join(chain) or '(none)'}")
    if spec.dedup is not None:
        print(f"  then across sources: {' -> '.join(n for n, _ in global_steps(spec)) or '(none)'}")
    return 0


def list_filters(args: argparse.Namespace) -> int:
    """Print document filters, corpus stages and named chains."""
    print("document filters: " + ", ".join(sorted(registry.DOC_FILTERS)))
    print("corpus stages:    " + ", ".join(sorted(registry.CORPUS_STAGES)))
    for name, members in sorted(registry.CHAINS.items()):
        print(f"chain {name}: {' -> '.join(members)}")
    return 0


def export_jsonl(layout: RunLayout, out_dir: Path) -> tuple[int, int]:
    """Write a run's kept and removed documents (every source) as OUT_DIR/{kept,removed}.jsonl.gz; return counts."""
    import pyarrow.parquet as pq

    counts = []
    for name, folder in (("kept", layout.docs), ("removed", layout.removed)):
        rows = [_plain(r) for p in sorted(folder.glob("*/*.parquet")) for r in pq.read_table(p).to_pylist()]
        write_jsonl(out_dir / f"{name}.jsonl.gz", rows)
        counts.append(len(rows))
    return counts[0], counts[1]


def export_quarantine(layout: RunLayout, out_dir: Path) -> int:
    """Write a run's quarantined records (every source) as OUT_DIR/quarantine.jsonl.gz; return their count.

    Each row: ``source``, ``reason`` (``malformed_json:...``, ``truncated:...``, ``duplicate_id``, ...), ``location``
    (``file:line``, ``file:row N``, ``file:record N`` or ``file:byte N``) and ``raw`` (the record's bytes as text).
    """
    import pyarrow.parquet as pq

    rows = [{"source": r["source"], "reason": r["reason"], "location": r["id"], "raw": r["raw"]}
            for p in sorted(layout.quarantine.glob("*/*.parquet")) for r in pq.read_table(p).to_pylist()]
    write_jsonl(out_dir / "quarantine.jsonl.gz", rows)
    return len(rows)


def filter_file(args: argparse.Namespace) -> int:
    """Run a chain on one file with the mixture pipeline; write kept/removed/quarantined JSON Lines."""
    from mixlab import jobs

    source = args.source or Path(args.input).name.split(".")[0] or "input"
    steps = [Step(name=name.strip()) for name in args.chain.split(",") if name.strip()]
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        spec = Spec(name="filter", output_dir=tmp, spec_path=str(Path.cwd() / "cli"),
                    sources={source: SourceSpec(paths=[str(Path(args.input).resolve())], filters=steps)})
        layout = jobs.clean(spec, runner=args.runner, extra=args.beam_option, force=True)
        kept, removed = export_jsonl(layout, out_dir)
        quarantined = export_quarantine(layout, out_dir)
        for path in (layout.stats, layout.report, layout.funnel_chart):
            path.replace(out_dir / path.name)
    print(f"kept {kept}, removed {removed}, quarantined {quarantined} -> {out_dir}")
    return 0


def _plain(row: dict) -> dict:
    """A Parquet row as the JSON Lines record users expect: meta back to an object, nulls dropped."""
    meta = json.loads(row.pop("meta") or "{}")
    out = {k: v for k, v in row.items() if v is not None}
    out["meta"] = meta
    return out


def tokens(args: argparse.Namespace) -> int:
    """``mixlab tokens RUN_DIR|SPEC [SQL]``: print a DuckDB query over the run's catalogue."""
    import duckdb

    from mixtures.catalogue import format_table, query

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        from mixtures.spec import load_spec

        run_dir = load_spec(args.run_dir, check_files=False).run_dir
    try:
        table = query(run_dir, args.sql)
    except (FileNotFoundError, duckdb.Error) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_table(table, args.max_rows))
    return 0


def quality_train(args: argparse.Namespace) -> int:
    """``mixlab quality train SPEC``: train (or reuse) the spec's classifier and print where its files are."""
    from filters.quality import fold_model_paths
    from mixlab import jobs

    spec = load_spec(args.spec)
    path = jobs.train_quality(spec, force=args.force, runner=args.runner)
    evaluation = json.loads((path.parent / "eval.json").read_text())
    print(f"model:    {path}")
    print(f"eval:     {path.parent / 'eval.json'} (ROC AUC {evaluation['roc_auc']}, precision "
          f"{evaluation['precision']}, recall {evaluation['recall']})")
    mean = evaluation.get("cross_fit", {}).get("mean", {})
    print(f"folds:    {', '.join(map(str, fold_model_paths(path)))} (out-of-fold mean ROC AUC "
          f"{mean.get('roc_auc')}, precision {mean.get('precision')}, recall {mean.get('recall')})")
    print(f"plot:     {path.parent / 'scores.png'}")
    return 0

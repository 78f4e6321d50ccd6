"""``mixlab``: the command line. Heavy libraries (Beam, torch, streaming) load inside the command that needs them.

Each subcommand's handler is named as ``"module:function"`` and imported only when that subcommand runs, so
``mixlab --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable

EPILOG = """examples:
  mixlab mixture mix_v3.yaml                  clean, filter and build the mixture of a shipped spec
  mixlab validate mixtures/mix_v3.yaml         check a spec without running anything
  mixlab filter --chain c4 in.jsonl.gz out/    run one filter chain on a file
  mixlab filters                               list filters and named chains
"""


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
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("mixture", help="run a mixture spec end to end into runs/<name>/",
                       description="Read every source of the spec, clean and filter it with Beam, and write "
                                   "Parquet per source, stats.json and report.md into runs/<name>/. A run whose "
                                   "spec and inputs did not change is reused unless --force.")
    p.add_argument("spec", help="spec file, or the name of a shipped one (mix_v3.yaml)")
    p.add_argument("--force", action="store_true", help="rebuild even if the run is up to date")
    _add_runner_flags(p)
    p.set_defaults(func=_handler("pipelines.commands:mixture"))

    p = sub.add_parser("validate", help="check a spec and print what it would read",
                       description="Validate a mixture spec (keys, types, filters, files) without running it.")
    p.add_argument("spec")
    p.set_defaults(func=_handler("pipelines.commands:validate"))

    p = sub.add_parser("filter", help="run a filter chain on one file",
                       description="Run a filter chain over one JSONL/Parquet/WARC file through the same Beam "
                                   "pipeline as a mixture, writing OUT_DIR/kept.jsonl.gz (cleaned text, same ids) "
                                   "and OUT_DIR/removed.jsonl.gz (each with its reason).")
    p.add_argument("input")
    p.add_argument("out_dir")
    p.add_argument("--chain", required=True, help="comma-separated filters or chains, e.g. c4 or gopher,fineweb")
    p.add_argument("--source", default=None, help="source name for the documents (default: file stem)")
    _add_runner_flags(p)
    p.set_defaults(func=_handler("pipelines.commands:filter_file"))

    p = sub.add_parser("filters", help="list the filters and named chains a spec may use")
    p.set_defaults(func=_handler("pipelines.commands:list_filters"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from mixtures.spec import SpecError

    try:
        return int(args.func(args) or 0)
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

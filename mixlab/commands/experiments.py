"""``mixlab ablate`` and ``mixlab propose``: parsers (argparse only) and handlers (torch loads inside them)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from proxy_train import set_threads

TINY_TOKENS = 8 * 64 * 60  # default tiny proxy budget with --tiny-docs: 60 steps of 8 x 64-token sequences
PROXY_SIZES = ("tiny", "small", "125m", "350m")


def proxy_sizes(text: str) -> list[str]:
    """``"tiny,small"`` -> ``["tiny", "small"]``, each a known size, none twice."""
    from filters.errors import UserError

    sizes = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in PROXY_SIZES]
    if not sizes or unknown or len(set(sizes)) < len(sizes):
        raise UserError(f"--proxy {text!r}: give one or more of {', '.join(PROXY_SIZES)}, separated by commas")
    return sizes


def tiny_settings(tiny_docs: str | None, source_docs: str | None) -> tuple[int | None, dict[str, int], int | None]:
    """(documents per source, per-source counts, mixture budget) of the tiny copies; (None, {}, None) for full specs.

    ``auto``: :data:`mixtures.tiny.TINY_SOURCE_DOCS` (a common evaluation set of >= 200 KB per source) and the
    budget :data:`mixtures.tiny.TINY_BUDGET_TOKENS`; a number N: the first N documents (web 400 unless given)
    and the old 40,000-token budget.
    """
    from filters.errors import UserError
    from mixtures.tiny import TINY_BUDGET_TOKENS, TINY_DOCS, TINY_SOURCE_DOCS, parse_source_docs

    if tiny_docs is None:
        return None, {}, None
    try:
        overrides = parse_source_docs(source_docs or "")
    except ValueError as err:
        raise UserError(f"--tiny-source-docs: {err}") from None
    if tiny_docs == "auto":
        return TINY_DOCS, {**TINY_SOURCE_DOCS, **overrides}, TINY_BUDGET_TOKENS
    if not tiny_docs.isdigit() or int(tiny_docs) < 1:
        raise UserError(f"--tiny-docs {tiny_docs!r}: give a number of documents or auto")
    return int(tiny_docs), overrides if source_docs is not None else {"web": 400}, None


def _command(args: argparse.Namespace) -> str:
    """The ``mixlab ablate`` command line that gives these settings (for the reports)."""
    flags = [("--leave-one-out", "leave_one_out"), ("--source", "source"), ("--rules", "rules"), ("--sweep", "sweep"),
             ("--seeds", "seeds"), ("--proxy", "proxy"), ("--name", "name"), ("--out", "out"), ("--tokens", "tokens"),
             ("--global-batch", "global_batch"), ("--mc-tasks", "mc_tasks"), ("--tiny-docs", "tiny_docs"),
             ("--tiny-source-docs", "tiny_source_docs"), ("--threads", "threads")]
    parts = ["mixlab", "ablate", *args.mixes]
    for flag, attr in flags:
        value = getattr(args, attr, None)
        if value not in (None, "", 0):
            parts += [flag, str(value)]
    return " ".join(parts)


def ablate(args: argparse.Namespace) -> int:
    """Train and compare one proxy per mixture and seed; with --leave-one-out or --sweep, over spec variants."""
    from filters.errors import UserError
    from mixlab import experiments
    from mixlab.jobs import resolve_spec
    from mixtures.variants import leave_one_out, parse_sweep, sweep
    from proxy_train.ablate import AblationConfig

    set_threads(args.threads)
    sizes = proxy_sizes(args.proxy)
    tiny_docs, source_docs, budget = tiny_settings(args.tiny_docs, args.tiny_source_docs)
    stem = Path(args.leave_one_out or (args.mixes[0] if args.mixes else "x").rstrip("/")).name.removesuffix(".yaml")
    variants = []
    if args.leave_one_out:
        if args.mixes or args.sweep or not args.source:
            raise UserError("--leave-one-out SPEC takes --source NAME and no other mixtures or --sweep")
        rules = [r.strip() for r in args.rules.split(",") if r.strip()] if args.rules else None
        variants = leave_one_out(args.leave_one_out, args.source, rules)
        name = args.name or f"{stem}-loo-{args.source}"
    elif args.sweep:
        if len(args.mixes) != 1:
            raise UserError("--sweep PATH=v1,v2,... takes exactly one spec")
        try:
            path, values = parse_sweep(args.sweep)
        except ValueError as err:
            raise UserError(str(err)) from None
        variants = sweep(args.mixes[0], path, values)
        name = args.name or f"{stem}-sweep-{path.split('.')[-1] if not path.split('.')[-1].isdigit() else 'step'}"
    elif not args.mixes:
        raise UserError("give the mixtures to compare, or --leave-one-out SPEC --source NAME, or --sweep ... SPEC")
    else:
        name = args.name or "-".join(Path(m.rstrip("/")).name.removesuffix(".yaml") for m in args.mixes)
    root = Path(args.out) / name
    configs = {size: AblationConfig(
        proxy=size, tokens=args.tokens or (TINY_TOKENS if tiny_docs and size == "tiny" else None),
        global_batch=args.global_batch, data_seed=args.data_seed, valid_samples=args.valid_samples or None,
        mc_tasks=tuple(t for t in args.mc_tasks.split(",") if t), mc_limit=args.mc_limit or None) for size in sizes}
    if variants:
        origin = args.leave_one_out or args.mixes[0]
        mixes = experiments.prepare_variants(variants, root, origin, tiny_docs, source_docs, budget)
    else:
        mixes = [resolve_spec(m, root, tiny_docs, source_docs, budget) for m in args.mixes]
    kind = "leave-one-out" if args.leave_one_out else "sweep" if args.sweep else "ablate"
    experiment = experiments.Experiment(root, mixes, configs, variants, kind=kind, command=_command(args),
                                        metric=args.metric)
    reports = experiments.run(experiment, args.seeds)
    for label, report in reports.items():
        print(f"{label + ':':<20} {report}")
    return 0


def propose(args: argparse.Namespace) -> int:
    """Sample mixtures around a spec, train tiny proxies, regress, and write the predicted-best spec."""
    from mixlab.propose import ProposeConfig, run
    from mixtures.spec import find_spec, load_spec
    from mixtures.tiny import parse_source_docs, shrink_spec

    set_threads(args.threads)
    origin = find_spec(args.spec).resolve()
    work = Path(args.work) if args.work else Path("proposals") / origin.stem
    spec = shrink_spec(origin, work / "specs", docs=args.tiny_docs, output_dir=work / "runs",
                       source_docs=parse_source_docs(args.tiny_source_docs)) if args.tiny_docs else load_spec(origin)
    cfg = ProposeConfig(proxies=args.proxies, proxy=args.proxy, tokens=args.tokens, target=args.target,
                        regressor=args.regressor, seed=args.seed, n_search=args.search, top_k=args.top_k)
    out_dir = Path(args.out_dir) if args.out_dir else origin.parent
    path = run(spec, cfg, work, out_dir, origin=origin if args.tiny_docs else None)
    print(path.read_text(encoding="utf-8").split("\nname:")[0])
    print(f"proposal: {path}")
    return 0


def add_parsers(sub: argparse._SubParsersAction, handler: Callable[[str], Any]) -> None:
    """Add ``ablate`` and ``propose`` to the mixlab CLI."""
    p = sub.add_parser(
        "ablate", help="compare mixtures: one proxy per mixture and seed, with uncertainty",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train one proxy per mixture and seed with the same model, token budget and data-order seed "
                    "(only the init seed differs between seeds), score each on bits-per-byte per domain and MC "
                    "tasks, and write ablations/NAME/results.parquet and report.md: means with seed spread and "
                    "bootstrap intervals, 'A beats B with probability p', Kendall tau across seeds, loss curves. "
                    "Missing mixture runs are built first. Rerunning resumes: finished proxies are not retrained. "
                    "--leave-one-out and --sweep write spec variants (ablations/NAME/variants/) and report each "
                    "variant's effect against the baseline with intervals (attribution.md, sweep.md); several "
                    "--proxy sizes check that the ranking holds across sizes (cross_size.md).",
        epilog="examples:\n  mixlab ablate mix_v1.yaml mix_v2.yaml mix_v3.yaml --tiny-docs auto --proxy small\n"
               "  mixlab ablate mix_v1.yaml mix_v2.yaml mix_v3.yaml --tiny-docs auto --proxy tiny,small\n"
               "  mixlab ablate --leave-one-out mix_v1.yaml --source web --tiny-docs auto\n"
               "  mixlab ablate --sweep sources.web.filters.2.quality.top_percent=100,50,25,10 mix_v3.yaml "
               "--tiny-docs auto\n"
               "  mixlab ablate runs/mix_v1 runs/mix_v2 --seeds 5 --proxy tiny --mc-tasks copa,piqa")
    p.add_argument("mixes", nargs="*", help="specs (mix_v1.yaml) or built run directories (holding streams.yaml)")
    p.add_argument("--seeds", type=int, default=3, help="proxies per mixture (init seeds 17, 18, ...; default 3)")
    p.add_argument("--proxy", default="tiny",
                   help=f"proxy size, or sizes separated by commas to check the ranking across sizes "
                        f"({', '.join(PROXY_SIZES)}; default tiny; small is the CPU preset that separates mixtures)")
    p.add_argument("--leave-one-out", metavar="SPEC", default=None,
                   help="rule attribution: one variant of SPEC per rule of --source's chain switched off")
    p.add_argument("--source", default=None, help="with --leave-one-out: the source whose chain is varied")
    p.add_argument("--rules", default=None,
                   help="with --leave-one-out: only these rules, e.g. javascript,curly_bracket,c4_langdetect")
    p.add_argument("--sweep", metavar="PATH=V1,V2,...", default=None,
                   help="one variant of the spec per value of a spec key, e.g. "
                        "sources.web.filters.2.quality.top_percent=100,50,25 (the first value is the baseline)")
    p.add_argument("--metric", default="bpb_common/mean", help="with --sweep: the metric of the curve")
    p.add_argument("--name", default=None, help="ablation name (default: the mixture names joined by '-')")
    p.add_argument("--out", default="ablations", help="parent directory of the ablation (default ablations/)")
    p.add_argument("--tokens", type=int, default=None,
                   help=f"token budget per proxy (default: the size's; {TINY_TOKENS} for tiny with --tiny-docs)")
    p.add_argument("--global-batch", type=int, default=None, help="sequences per step (default: the size's)")
    p.add_argument("--data-seed", type=int, default=9176, help="data-order seed shared by every proxy")
    p.add_argument("--mc-tasks", default="", help="comma-separated MC tasks from corpora/evals, e.g. copa,piqa")
    p.add_argument("--mc-limit", type=int, default=200, help="items per MC task, 0 = all (default 200)")
    p.add_argument("--valid-samples", type=int, default=512,
                   help="own-split bpb/* on the first N samples of each validation stream, 0 = all (default 512; "
                        "the common set bpb_common/* is always scored whole)")
    p.add_argument("--tiny-docs", default=None, metavar="N|auto",
                   help="shrink each spec for CPU (BPE 512, 64-token sequences): auto = per source enough documents "
                        "for a >= 200 KB common evaluation set (mixtures/tiny.py), or the first N per source")
    p.add_argument("--tiny-source-docs", default=None,
                   help="with --tiny-docs: other counts per source, e.g. web=1000 (with a number N, web=400 "
                        "unless given: C4 keeps ~1 page in 20)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=handler("mixlab.commands.experiments:ablate"))

    p = sub.add_parser(
        "propose", help="propose a mixture: proxies on sampled weights, regression, predicted best",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="RegMix-style: draw mixtures around SPEC's weights (Dirichlet, within each source's epoch "
                    "cap), train a small proxy on each, fit a regression from weights to --target, check it on "
                    "held-out proxies (Spearman/Kendall), search many more draws for the best prediction and "
                    "write it as the next mixtures/mix_vN.yaml with the prediction and its bootstrap interval.",
        epilog="example:\n  mixlab propose mix_v3.yaml --proxies 32 --target bpb/mean --tiny-docs 60")
    p.add_argument("spec", help="the spec whose weights are the prior (needs a mixture: section unless --tiny-docs)")
    p.add_argument("--proxies", type=int, default=24, help="proxies to train (default 24; RegMix used 512)")
    p.add_argument("--proxy", default="tiny", choices=PROXY_SIZES, help="proxy size (default tiny)")
    p.add_argument("--tokens", type=int, default=8 * 64 * 20, help="token budget per proxy (default 10240)")
    p.add_argument("--target", default="bpb/mean", help="bpb/mean (default), bpb/<domain> or mc/<task>")
    p.add_argument("--regressor", default="lightgbm", choices=["lightgbm", "linear"],
                   help="weights -> target model (default lightgbm, as RegMix)")
    p.add_argument("--search", type=int, default=20000, help="draws scored by the regression (default 20000)")
    p.add_argument("--top-k", type=int, default=32, help="best predicted draws averaged into the proposal")
    p.add_argument("--seed", type=int, default=0, help="sampling, split and bootstrap seed")
    p.add_argument("--work", default=None, help="work directory (default proposals/<spec name>)")
    p.add_argument("--out-dir", default=None, help="where mix_vN.yaml goes (default: next to SPEC)")
    p.add_argument("--tiny-docs", type=int, default=None, help="shrink the spec for CPU: first N docs per source")
    p.add_argument("--tiny-source-docs", default="web=400", help="with --tiny-docs: other counts per source")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=handler("mixlab.commands.experiments:propose"))

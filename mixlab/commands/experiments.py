"""``mixlab ablate`` and ``mixlab propose``: parsers (argparse only) and handlers (torch loads inside them)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from proxy_train import set_threads

TINY_TOKENS = 8 * 64 * 60  # default proxy budget with --tiny-docs: 60 steps of 8 x 64-token sequences


def ablate(args: argparse.Namespace) -> int:
    """Train and compare one proxy per mixture and seed; write results.parquet and report.md."""
    from mixlab.jobs import resolve_mix
    from mixtures.tiny import parse_source_docs
    from proxy_train.ablate import AblationConfig, open_ablation, run_ablation

    set_threads(args.threads)
    name = args.name or "-".join(Path(m.rstrip("/")).name.removesuffix(".yaml") for m in args.mixes)
    tokens = args.tokens or (TINY_TOKENS if args.tiny_docs else None)
    cfg = AblationConfig(proxy=args.proxy, tokens=tokens, global_batch=args.global_batch,
                         data_seed=args.data_seed, mc_tasks=tuple(t for t in args.mc_tasks.split(",") if t),
                         mc_limit=args.mc_limit or None)
    ablation = open_ablation(Path(args.out) / name, cfg)
    source_docs = parse_source_docs(args.tiny_source_docs)
    ablation.mixes = [resolve_mix(m, ablation.root, args.tiny_docs, source_docs) for m in args.mixes]
    report = run_ablation(ablation, args.seeds)
    print(f"results: {ablation.results_path}")
    print(f"report:  {report}")
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
                    "Missing mixture runs are built first. Rerunning resumes: finished proxies are not retrained.",
        epilog="examples:\n  mixlab ablate mix_v1.yaml mix_v2.yaml mix_v3.yaml --seeds 3 --tiny-docs 60\n"
               "  mixlab ablate runs/mix_v1 runs/mix_v2 --seeds 5 --proxy tiny --mc-tasks copa,piqa")
    p.add_argument("mixes", nargs="+", help="specs (mix_v1.yaml) or built run directories (holding streams.yaml)")
    p.add_argument("--seeds", type=int, default=3, help="proxies per mixture (init seeds 17, 18, ...; default 3)")
    p.add_argument("--proxy", default="tiny", choices=["tiny", "125m", "350m"], help="proxy size (default tiny)")
    p.add_argument("--name", default=None, help="ablation name (default: the mixture names joined by '-')")
    p.add_argument("--out", default="ablations", help="parent directory of the ablation (default ablations/)")
    p.add_argument("--tokens", type=int, default=None,
                   help=f"token budget per proxy (default: the size's; {TINY_TOKENS} with --tiny-docs)")
    p.add_argument("--global-batch", type=int, default=None, help="sequences per step (default: the size's)")
    p.add_argument("--data-seed", type=int, default=9176, help="data-order seed shared by every proxy")
    p.add_argument("--mc-tasks", default="", help="comma-separated MC tasks from corpora/evals, e.g. copa,piqa")
    p.add_argument("--mc-limit", type=int, default=200, help="items per MC task, 0 = all (default 200)")
    p.add_argument("--tiny-docs", type=int, default=None,
                   help="shrink each spec for CPU: first N documents per source, BPE 512, 64-token sequences")
    p.add_argument("--tiny-source-docs", default="web=400",
                   help="with --tiny-docs: other counts per source (default web=400: C4 keeps ~1 page in 20)")
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
    p.add_argument("--proxy", default="tiny", choices=["tiny", "125m", "350m"], help="proxy size (default tiny)")
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

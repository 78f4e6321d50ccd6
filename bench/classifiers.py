"""Language-ID backends and the quality classifier on the shared corpora, single core.

Prints markdown tables:
1. per backend (fastText lid.176.ftz, pycld2, py3langid, langdetect as C4 uses it): documents/s, MB/s and
   accuracy on ``multilingual.jsonl.gz`` (gold language in ``meta.lang``), all on the same documents;
2. accuracy per language (ISO 639-1 gold codes with enough documents);
3. the quality classifier: positives wiki+papers+instruct vs raw web, trained as ``mixlab quality train`` does
   (balanced, seeded, single thread), held-out ROC AUC / precision / recall, training time, and scoring
   documents/s batched and one document at a time.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.classifiers [--per-lang 40] [--quality-docs 2000]
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bench import harness

if TYPE_CHECKING:
    from filters.base import Document

ISO1 = re.compile(r"^[a-z]{2}$")
TERMINAL = (".", "!", "?", '"', "'")


def read(name: str, limit: int | None = None) -> list[dict]:
    return harness.read_corpus(name, limit)


def lid_eval_set(per_lang: int, min_docs: int) -> list[dict]:
    """Up to ``per_lang`` documents of every ISO 639-1 gold language with at least ``min_docs`` documents."""
    rows = [r for r in read("multilingual") if ISO1.match(r["meta"].get("lang", ""))]
    counts = Counter(r["meta"]["lang"] for r in rows)
    taken: Counter[str] = Counter()
    out = []
    for r in rows:
        lang = r["meta"]["lang"]
        if counts[lang] >= min_docs and taken[lang] < per_lang:
            taken[lang] += 1
            out.append(r)
    return out


def langdetect_backend() -> Callable[[list[str]], list[str]]:
    from langdetect import DetectorFactory, detect_langs
    from langdetect.lang_detect_exception import LangDetectException

    def one(text: str) -> str:
        DetectorFactory.seed = 0
        try:
            return detect_langs(text)[0].lang.split("-")[0]
        except LangDetectException:
            return "und"

    return lambda texts: [one(t) for t in texts]


def py3langid_backend() -> Callable[[list[str]], list[str]]:
    import py3langid

    return lambda texts: [py3langid.classify(t)[0] for t in texts]


def backends() -> dict[str, Callable[[list[str]], list[str]]]:
    from filters.langid import Cld2LID, FastTextLID

    fast, cld2 = FastTextLID(), Cld2LID()
    return {
        "fastText lid.176.ftz (batch)": lambda texts: [lang for lang, _ in fast.predict(texts)],
        "fastText lid.176.ftz (1 doc/call)": lambda texts: [fast.predict([t])[0][0] for t in texts],
        "fastText lid.176.ftz (first 1000 chars)": lambda texts: [lang for lang, _ in fast.predict(
            [t[:1000] for t in texts])],
        "pycld2": lambda texts: [lang for lang, _ in cld2.predict(texts)],
        "pycld2 (first 1000 chars)": lambda texts: [lang for lang, _ in cld2.predict([t[:1000] for t in texts])],
        "py3langid": py3langid_backend(),
        "langdetect (C4, seed 0)": langdetect_backend(),
    }


def bench_lid(per_lang: int, min_docs: int) -> None:
    rows = lid_eval_set(per_lang, min_docs)
    texts, gold = [r["text"] for r in rows], [r["meta"]["lang"] for r in rows]
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    langs = sorted(set(gold))
    print(f"\n### Language ID on multilingual.jsonl.gz: {len(rows)} documents ({mb:.1f} MB), {len(langs)} languages "
          f"(<= {per_lang} docs each, ISO 639-1 gold codes with >= {min_docs} docs)\n")
    speed = harness.Table(["backend", "docs/s", "MB/s", "docs per CPU-s", "accuracy", "wall s"], align="lrrrrr")
    print(speed.header())
    per_lang_acc: dict[str, dict[str, float]] = defaultdict(dict)
    for name, predict in backends().items():
        pred, t = harness.timed(predict, texts)
        seconds, cpu = t.wall, t.cpu
        right = [p == g for p, g in zip(pred, gold, strict=True)]
        print(speed.row(name, f"{len(texts) / seconds:,.0f}", f"{mb / seconds:.2f}", f"{len(texts) / cpu:,.0f}",
                        f"{sum(right) / len(right):.3f}", f"{seconds:.2f}"), flush=True)
        for lang in langs:
            hits = [ok for ok, g in zip(right, gold, strict=True) if g == lang]
            per_lang_acc[lang][name] = sum(hits) / len(hits)
    names = [n for n in backends() if "(" not in n or "batch" in n or "seed" in n]
    print("\n### Accuracy per language\n")
    n_docs = Counter(gold)
    print(harness.table(["lang", "docs", *names],
                        [(lang, n_docs[lang], *(f"{per_lang_acc[lang][n]:.2f}" for n in names)) for lang in langs],
                        align="lr" + "r" * len(names)))


def docs_of(name: str, limit: int) -> list[Document]:
    from filters.base import Document

    return [Document(id=r["id"], text=r["text"], source=name) for r in read(name, limit)]


def line_punct(text: str) -> float:
    """FineWeb's ``line_punct`` statistic: the share of non-empty lines ending in terminal punctuation."""
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    return sum(line.endswith(TERMINAL) for line in lines) / max(len(lines), 1)


def heuristic_auc(holdout: dict[str, list[tuple[Document, str]]]) -> float:
    """ROC AUC of the crude line-punctuation score on the classifier's held-out documents."""
    from filters.quality import POSITIVE
    from mixtures.classifier import roc_auc

    items = [(doc, label == POSITIVE) for label, pool in holdout.items() for doc, _ in pool]
    return roc_auc([line_punct(doc.text) for doc, _ in items], [int(y) for _, y in items])


def bench_quality(max_docs: int, seed: int) -> None:
    from filters.quality import QualityModel
    from mixtures.classifier import _write_train_file, evaluate, split_classes, train_model
    from mixtures.quality_spec import QualitySpec

    per_source = max_docs
    docs = {name: docs_of(name, per_source) for name in ("wiki", "papers", "instruct", "web")}
    q = QualitySpec(positive=["wiki", "papers", "instruct"], negative=["web"], max_docs=max_docs, seed=seed)
    split = split_classes(docs, q)
    params = q.model_dump(include={"seed", "epoch", "lr", "word_ngrams", "dim", "bucket", "min_count"})
    with tempfile.TemporaryDirectory() as tmp:
        train_file, model_file = Path(tmp) / "train.txt", Path(tmp) / "model.bin"
        _write_train_file(train_file, split["train"], q.seed)
        train_s = harness.timed(train_model, train_file, model_file, **params)[1].wall
        model = QualityModel(model_file, q.max_chars)
        ev = evaluate(model, split["holdout"])
        web = [d.text for d in docs["web"]]
        mb = sum(len(t.encode("utf-8")) for t in web) / 1e6
        batch = harness.timed(model.score, web)[1]
        with harness.Timer() as single:
            for t in web:
                model.score([t])
        size_mb = model_file.stat().st_size / 1e6
    n_train = sum(map(len, split["train"].values()))
    print(f"\n### Quality classifier: wiki+papers+instruct (hq) vs raw web (lq), {n_train} training and "
          f"{ev['holdout_docs']} held-out documents, seed {seed}\n")
    hp = ", ".join(f"{k}={v}" for k, v in params.items())
    print(harness.table(
        ["scorer", "train s", "model MB", "ROC AUC", "precision@0.5", "recall@0.5", "accuracy"],
        [(f"fastText: {hp}, max_chars={q.max_chars}", f"{train_s:.1f}", f"{size_mb:.1f}", f"{ev['roc_auc']:.3f}",
          f"{ev['precision']:.3f}", f"{ev['recall']:.3f}", f"{ev['accuracy']:.3f}"),
         ("peer, no training: share of lines ending in terminal punctuation (FineWeb's line_punct)", "-", "-",
          f"{heuristic_auc(split['holdout']):.3f}", "-", "-", "-")], align="lrrrrrr"))
    print()
    print(harness.table(["held-out source", "docs", "mean quality_score"],
                        [(source, st["docs"], f"{st['mean_score']:.3f}") for source, st in ev["by_source"].items()],
                        align="lrr"))
    print()
    print(harness.table(
        [f"quality scoring on web.jsonl.gz ({len(web)} docs, {mb:.1f} MB)", "docs/s", "MB/s", "docs per CPU-s"],
        [(label, f"{len(web) / t.wall:,.0f}", f"{mb / t.wall:.2f}", f"{len(web) / t.cpu:,.0f}")
         for label, t in (("batched (one predict call)", batch), ("one document per call", single))],
        align="lrrr"))


def main() -> None:
    parser = harness.parser(__file__, __doc__)
    parser.add_argument("--per-lang", type=int, default=40, help="documents per language for language ID")
    parser.add_argument("--min-docs", type=int, default=20, help="languages with fewer gold documents are skipped")
    parser.add_argument("--quality-docs", type=int, default=2000, help="documents per class for the classifier")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    harness.setdefault_env()
    with harness.Timer() as run:
        bench_lid(args.per_lang, args.min_docs)
        bench_quality(args.quality_docs, args.seed)
    print(run.summary("bench.classifiers"), file=sys.stderr)


if __name__ == "__main__":
    main()

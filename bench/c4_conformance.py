"""Mixlab's C4/mC4 rules against the TFDS reference functions (``tensorflow_datasets.text.c4_utils``).

Prints one markdown table: per check, the documents compared, keep/drop agreement and, among pages both
keep, identical cleaned text. The TFDS functions run unmodified; TFDS reaches TensorFlow only through
``tf.compat.as_text`` (a ``str`` pass-through here), which is replaced by that pass-through so the
600 MB TensorFlow wheel is not needed (bench/peers.py). Needs the ``bench`` (or ``dev``) extra; without
it only Mixlab's side runs and the TFDS columns show n/a.

    NLTK_DATA=../shared/nltk_data python -m bench.c4_conformance [--limit N] [--skip-langdetect]
"""

from __future__ import annotations

import collections
import pickle
import sys
import tempfile
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import harness, peers
from filters.badwords import ALLOWLIST, TFDS_LIST_NAMES, BadWordsFilter, default_wordlist_dir, list_files
from filters.base import Document, run_chain
from filters.c4 import C4Cleaner, C4EnglishLangdetect, C4Length
from filters.mc4 import MC4_LANGUAGES, Cld3LanguageId, ParagraphFilter

if TYPE_CHECKING:
    import apache_beam as beam


@dataclass
class Figures:
    """Agreement counts of one check, with examples of each disagreement class."""

    check: str
    docs: int = 0
    keep_agree: int = 0
    kept_both: int = 0
    text_agree: int = 0
    seconds_ours: float = 0.0
    seconds_ref: float = 0.0
    classes: collections.Counter = field(default_factory=collections.Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    reference: bool = True  # False: TFDS not installed, only Mixlab's side ran (agreement unknown)

    def add(self, doc_id: str, ours: str | None, ref: str | None, why: str = "") -> None:
        """Record one document: ``None`` = dropped, else its final text."""
        self.docs += 1
        if (ours is None) == (ref is None):
            self.keep_agree += 1
        else:
            self.note(f"keep/drop: ours {'drop' if ours is None else 'keep'}{why}", doc_id)
        if ours is not None and ref is not None:
            self.kept_both += 1
            if ours == ref:
                self.text_agree += 1
            else:
                self.note("cleaned text differs", doc_id)

    def note(self, cls: str, doc_id: str) -> None:
        self.classes[cls] += 1
        self.examples.setdefault(cls, [])
        if len(self.examples[cls]) < 3:
            self.examples[cls].append(doc_id)

    @property
    def keep_rate(self) -> float:
        return self.keep_agree / self.docs if self.docs else 1.0

    @property
    def text_rate(self) -> float:
        return self.text_agree / self.kept_both if self.kept_both else 1.0


def tfds_c4_utils() -> types.ModuleType:
    """TFDS ``c4_utils`` with its lazy ``tf`` replaced by a pass-through (:func:`bench.peers.tfds_c4_utils`)."""
    return peers.tfds_c4_utils()


def _reference() -> types.ModuleType | None:
    """TFDS ``c4_utils``, or ``None`` when tensorflow-datasets is not installed (main() has said so)."""
    try:
        return tfds_c4_utils()
    except peers.PeerMissing:
        return None


def load_docs(path: Path, limit: int | None = None, source: str = "web") -> list[Document]:
    """The first ``limit`` records of a shared corpus file as Documents (URL from ``meta.url``)."""
    docs: list[Document] = []
    for obj in harness.read_corpus(path, limit):
        meta = dict(obj.get("meta") or {})
        docs.append(Document(str(obj["id"]), obj["text"], source, meta.get("url"), meta))
    return docs


def page(c4_utils: Any, doc: Document) -> Any:
    """The TFDS ``PageFeatures`` of a document (timestamp = ``meta.warc_date``).

    Without a URL the normalized URL is the id, as in Mixlab; ``content_length`` (unused by every rule)
    carries the id so results can be matched back.
    """
    url = doc.url or ""
    return c4_utils.PageFeatures(url=url, normalized_url=c4_utils.normalize_url(url) if url else doc.id,
                                 text=doc.text, timestamp=str(doc.meta.get("warc_date") or ""),
                                 content_length=doc.id)


def _ours(doc: Document, chain: list[Any]) -> str | None:
    outcome = run_chain(Document(doc.id, doc.text, doc.source, doc.url, dict(doc.meta)), chain)
    return None if outcome.doc is None else outcome.doc.text


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Result and CPU seconds of this process (Beam runs in-process; robust to other load on the box)."""
    out, timer = harness.timed(fn)
    return out, timer.cpu


def _ours_only(check: str, docs: list[Any], seconds: float) -> Figures:
    """A check without the TFDS reference: Mixlab's side was timed, agreement is unknown."""
    return Figures(check, docs=len(docs), seconds_ours=seconds, reference=False)


def tfds_badwords(c4_utils: Any, langs: Iterable[str], fraction: float) -> Any:
    """TFDS's bad-words filter built the way ``c4.py`` builds it, from the shared LDNOOBW copies."""
    directory = default_wordlist_dir()
    words: dict[str, set[str]] = collections.defaultdict(set)
    for lang in langs:
        for path in list_files(lang, directory):
            with open(path, encoding="utf-8") as f:
                words[lang].update(line.strip() for line in f)
    for lang, allow in ALLOWLIST.items():
        if lang in words:
            words[lang] -= allow
    return c4_utils.get_badwords_filter_fn(words, filter_fraction=fraction)


def check_clean(docs: list[Document]) -> Figures:
    """``C4Cleaner`` vs ``c4_utils.clean_page`` on every document."""
    ours, t_ours = _timed(lambda: [_ours(d, [C4Cleaner()]) for d in docs])
    if (c4_utils := _reference()) is None:
        return _ours_only("clean_page", docs, t_ours)
    regex = c4_utils.get_clean_page_fn().keywords["citation_regex"]
    silent = lambda *a: None  # noqa: E731

    def ref_one(d: Document) -> str | None:
        out = list(c4_utils.clean_page(page(c4_utils, d), regex, counter_inc_fn=silent))
        return out[0].text if out else None

    ref, t_ref = _timed(lambda: [ref_one(d) for d in docs])
    fig = Figures("clean_page", seconds_ours=t_ours, seconds_ref=t_ref)
    for d, o, r in zip(docs, ours, ref, strict=True):
        fig.add(d.id, o, r)
    return fig


def check_doc_chain(docs: list[Document]) -> Figures:
    """C4's document rules in TFDS order: length, clean_page, langdetect English, bad words (en)."""
    check = "length+clean+langdetect+badwords(en)"
    chain = [C4Length(), C4Cleaner(), C4EnglishLangdetect(), BadWordsFilter()]
    ours, t_ours = _timed(lambda: [_ours(d, chain) for d in docs])
    if (c4_utils := _reference()) is None:
        return _ours_only(check, docs, t_ours)
    regex = c4_utils.get_clean_page_fn().keywords["citation_regex"]
    badwords = tfds_badwords(c4_utils, ["en"], 1.0)
    silent = lambda *a: None  # noqa: E731

    def ref_one(d: Document) -> str | None:
        p = page(c4_utils, d)
        if not c4_utils.is_valid_length(p):
            return None
        for stage in (lambda x: c4_utils.clean_page(x, regex, counter_inc_fn=silent), c4_utils.detect_english):
            out = list(stage(p))
            if not out:
                return None
            p = out[0]
        return p.text if badwords(p) else None

    ref, t_ref = _timed(lambda: [ref_one(d) for d in docs])
    fig = Figures(check, seconds_ours=t_ours, seconds_ref=t_ref)
    for d, o, r in zip(docs, ours, ref, strict=True):
        fig.add(d.id, o, r)
    return fig


def check_mc4_doc_rules(docs: list[Document]) -> Figures:
    """mC4's document rules: paragraph filter, cld3 (TFDS's DoFn in Beam), bad words all langs at 0.999."""
    import apache_beam as beam

    check = "mC4 paragraph+cld3+badwords(0.999)"
    chain = [ParagraphFilter(), Cld3LanguageId(), BadWordsFilter(langs="all", fraction=0.999)]
    ours, t_ours = _timed(lambda: [_ours(d, chain) for d in docs])
    if (c4_utils := _reference()) is None:
        return _ours_only(check, docs, t_ours)
    langs = sorted({n.split("-")[0] for n in TFDS_LIST_NAMES})
    badwords = tfds_badwords(c4_utils, langs, 0.999)

    def ref_run() -> dict[str, str]:
        pages = [pg for pg in (page(c4_utils, d) for d in docs) if c4_utils.paragraph_filter(pg)]
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "ref.pkl"
            with beam.Pipeline(runner="FnApiRunner") as p:
                pcoll = p | beam.Create(pages)
                (c4_utils.detect_languages(pcoll, valid_languages=MC4_LANGUAGES)
                 | beam.Filter(badwords)
                 | beam.Map(lambda pg: (pg.content_length, pg.text))
                 | beam.combiners.ToList()
                 | beam.Map(lambda rows: out.write_bytes(pickle.dumps(rows))))
            return dict(pickle.loads(out.read_bytes()))

    ref, t_ref = _timed(ref_run)
    fig = Figures(check, seconds_ours=t_ours, seconds_ref=t_ref)
    for d, o in zip(docs, ours, strict=True):
        fig.add(d.id, o, ref.get(d.id))
    return fig


def check_dedup(docs: list[Document], min_num_sentences: int = 3) -> Figures:
    """URL dedup + clean_page + line dedup: TFDS's Beam functions vs Mixlab's stages, per distinct URL."""
    import apache_beam as beam

    from pipelines.c4_stages import C4LineDedup, C4UrlDedup
    from pipelines.stages import FilterChain

    docs = [d for d in docs if d.url]
    first_id = {}
    for d in docs:
        first_id.setdefault(d.url, d.id)

    def collect(build: Callable[[beam.Pipeline], beam.PCollection]) -> list[tuple[str, str]]:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "rows.pkl"
            with beam.Pipeline(runner="FnApiRunner") as p:
                (build(p) | beam.combiners.ToList()
                 | beam.Map(lambda rows: out.write_bytes(pickle.dumps(rows))))
            return pickle.loads(out.read_bytes())

    c4_utils = _reference()

    def ref_build(p: beam.Pipeline) -> beam.PCollection:
        pages = (p | beam.Create([page(c4_utils, d) for d in docs])
                 | beam.Map(lambda pg: (pg.normalized_url, pg))
                 | beam.CombinePerKey(c4_utils.select_newest_page) | beam.Values()
                 | beam.FlatMap(c4_utils.get_clean_page_fn()))
        return (c4_utils.remove_duplicate_text(pages, min_num_sentences=min_num_sentences)
                | beam.Map(lambda pg: (pg.url, pg.text)))

    def ours_build(p: beam.Pipeline) -> beam.PCollection:
        pcoll = p | beam.Create(docs)
        pcoll = (pcoll | "url" >> C4UrlDedup(0))["kept"]
        pcoll = (pcoll | "clean" >> FilterChain([("c4_clean", {})], 1))["kept"]
        pcoll = (pcoll | "lines" >> C4LineDedup(2, min_num_sentences=min_num_sentences))["kept"]
        return pcoll | beam.Map(lambda d: (d.url, d.text))

    ours, t_ours = _timed(lambda: dict(collect(ours_build)))
    if c4_utils is None:
        return _ours_only("url dedup+clean+line dedup", list(first_id), t_ours)
    ref, t_ref = _timed(lambda: dict(collect(ref_build)))
    fig = Figures("url dedup+clean+line dedup", seconds_ours=t_ours, seconds_ref=t_ref)
    for url, doc_id in first_id.items():
        fig.add(doc_id, ours.get(url), ref.get(url))
    return fig


COLUMNS = ["check", "docs", "keep/drop agree", "kept by both", "same cleaned text", "ours CPU s", "TFDS CPU s"]


def table(figures: list[Figures]) -> str:
    """The markdown table of every check (n/a where TFDS was not installed)."""
    rows = []
    for f in figures:
        if f.reference:
            rows.append((f.check, f.docs, f"{f.keep_agree} ({100 * f.keep_rate:.2f} %)", f.kept_both,
                         f"{f.text_agree} ({100 * f.text_rate:.2f} %)", f"{f.seconds_ours:.1f}",
                         f"{f.seconds_ref:.1f}"))
        else:
            rows.append((f.check, f.docs, "n/a", "n/a", "n/a", f"{f.seconds_ours:.1f}", "n/a"))
    lines = [harness.table(COLUMNS, rows)]
    for f in figures:
        for cls, n in f.classes.most_common():
            lines.append(f"\n- {f.check}: {cls}: {n} (e.g. {', '.join(f.examples[cls])})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run every check on the shared web (and multilingual) corpus and print the table."""
    ap = harness.parser(__file__, __doc__)
    ap.add_argument("--limit", type=int, default=None, help="first N documents of each corpus (default: all)")
    ap.add_argument("--skip-langdetect", action="store_true", help="skip the langdetect chain (slowest)")
    args = ap.parse_args(argv)
    harness.setdefault_env()
    try:
        peers.require("tensorflow-datasets")
    except peers.PeerMissing as err:
        peers.skipped(err)
    with harness.Timer() as run:
        web = load_docs(harness.corpus_path("web"), args.limit)
        multi = load_docs(harness.corpus_path("multilingual"), args.limit, source="multilingual")
        figures = [check_clean(web)]
        if not args.skip_langdetect:
            figures.append(check_doc_chain(web))
        figures += [check_dedup(web), check_mc4_doc_rules(multi)]
    print(table(figures))
    print(run.summary("bench.c4_conformance"), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

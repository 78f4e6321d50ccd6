"""C4's two page tests that cost most, against their references, one core, same pages, one run.

Rows: ``c4_langdetect`` (filters/langdetect_fast.py) against langdetect 1.0.9's own ``detect_langs`` (seed 0,
as TFDS calls it); ``c4_badwords`` (filters/badwords.py ``BadWordsMatcher``) against TFDS's alternation regex over
the lower-cased page. Prints CPU seconds of this process per side, MB of page text per CPU second, the speed-up
and how many pages both sides decide the same way (langdetect: the same probabilities, bit for bit).

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.c4_language --docs 1000
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench import harness
from filters.badwords import BadWordsMatcher, compile_badwords, load_badwords


def _langdetect_pair() -> tuple[Callable[[str], Any], Callable[[str], Any]]:
    from langdetect import DetectorFactory, detector_factory
    from langdetect.lang_detect_exception import LangDetectException

    from filters.langdetect_fast import _fast_class

    detector_factory.init_factory()
    factory = detector_factory._factory
    DetectorFactory.seed = 0

    def run(make: Callable[[], Any]) -> Callable[[str], Any]:
        def probabilities(text: str) -> Any:
            detector = make()
            detector.append(text)
            try:
                detector._detect_block()
            except LangDetectException:
                return None
            return tuple(detector.langprob)
        return probabilities

    return run(factory.create), run(lambda: _fast_class()(factory))


def _badwords_pair() -> tuple[Callable[[str], Any], Callable[[str], Any]]:
    words = load_badwords(["en"])["en"]
    regex, matcher = compile_badwords("en", words), BadWordsMatcher("en", words)
    return (lambda text: regex.search(text.lower()) is not None), (lambda text: matcher.search(text.lower()))


def _measure(fn: Callable[[str], Any], texts: list[str]) -> tuple[list[Any], float]:
    fn(texts[0])  # warm-up: profiles, caches
    with harness.Timer() as t:
        out = [fn(x) for x in texts]
    return out, t.cpu_self


def main() -> None:
    ap = harness.parser("c4_language", __doc__)
    ap.add_argument("--docs", type=int, default=1000, help="web pages measured (default 1000)")
    args = ap.parse_args()
    harness.setdefault_env()
    texts = harness.read_texts("web", args.docs)
    mb = sum(len(x.encode("utf-8")) for x in texts) / 1e6
    print(harness.machine())
    print(f"{len(texts)} web pages, {mb:.1f} MB; load average at start {harness.load_averages()}\n")
    rows = []
    for label, (peer, ours), peer_name in (("c4_langdetect", _langdetect_pair(), "langdetect 1.0.9"),
                                            ("c4_badwords (en)", _badwords_pair(), "TFDS regex")):
        ref, peer_cpu = _measure(peer, texts)
        got, our_cpu = _measure(ours, texts)
        same = sum(a == b for a, b in zip(ref, got, strict=True))
        rows.append([label, peer_name, f"{peer_cpu:.2f}", f"{our_cpu:.2f}", f"{mb / peer_cpu:.2f}",
                     f"{mb / our_cpu:.2f}", f"{peer_cpu / our_cpu:.2f}x", f"{same}/{len(texts)}"])
    print(harness.table(["step", "peer", "peer CPU s", "Mixlab CPU s", "peer MB/CPU s", "Mixlab MB/CPU s",
                         "speed-up", "same answer"], rows))
    print(f"\nload average at end {harness.load_averages()}")


if __name__ == "__main__":
    main()

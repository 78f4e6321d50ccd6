"""The HTML reports: what a run's and an ablation's report.html show, escaping, the same bytes on every rerun, and
a real headless Chromium that must draw every chart (screenshots for people to look at in bench/out/)."""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from filters.decontam import read_items
from filters.quality import NEGATIVE, POSITIVE, normalize
from mixlab import jobs
from mixtures import ablation_stats
from mixtures.classifier import train_model
from mixtures.layout import RunLayout
from mixtures.report import html as H
from mixtures.report import svg
from mixtures.report.run_html import line_examples
from mixtures.spec import load_spec
from mixtures.tiny import tiny_mixture

REPO = Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO / "bench" / "out"  # git-ignored: the last screenshots, for people to look at
SCRIPT_TEXT = '<script>alert("x")</script> <img src=x onerror=alert(1)> & a wiki stub'


def _head(path: Path, n: int, skip: int = 0) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in itertools.islice(f, skip, skip + n)]


def _write_jsonl(path: Path, rows: list[dict], tail: bytes = b"") -> None:
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in rows) + tail)


def _quality_model(root: Path, corpora: Path) -> Path:
    """A small fastText quality model (wiki = positive, web = negative) on documents the run does not read."""
    good = _head(corpora / "wiki.jsonl.gz", 80, skip=60)
    bad = _head(corpora / "web.jsonl.gz", 120, skip=300)
    lines = [f"{POSITIVE} {normalize(d['text'], 2000)}\n" for d in good]
    lines += [f"{NEGATIVE} {normalize(d['text'], 2000)}\n" for d in bad]
    train = root / "quality_train.txt"
    train.write_text("".join(sorted(lines)), encoding="utf-8")
    model = root / "quality.bin"
    train_model(train, model, seed=0, epoch=10, lr=0.5, word_ngrams=1, dim=16, bucket=20000, min_count=1)
    return model


def _spec(root: Path, corpora: Path) -> Path:
    """web (C4 line rules, language tags, decontam, PII, quality cut) and wiki, cross-source dedup, a mixture."""
    wiki = _head(corpora / "wiki.jsonl.gz", 40)
    web = _head(corpora / "web.jsonl.gz", 150)
    _, (boolq,) = next((i, t) for i, t in read_items(corpora / "evals" / "boolq.jsonl.gz") if i == "boolq/171")
    web += [{"id": "copy-of-wiki", "text": wiki[0]["text"], "url": "http://example.org/copy"},
            {"id": "contaminated", "text": "This page quotes a reading test word for word.\n" + boolq.replace(
                "Passage: ", "") + "\nThat is all there is to say about it here."}]
    wiki.append({"id": "script-stub", "text": SCRIPT_TEXT})
    data = root / "data"
    data.mkdir()
    _write_jsonl(data / "web.jsonl", web, b'{"id": "broken", "text": \n')
    _write_jsonl(data / "wiki.jsonl", wiki)
    model = _quality_model(root, corpora)
    tasks = [str(corpora / "evals" / f"{t}.jsonl.gz") for t in ("boolq", "copa")]
    spec = {
        "name": "mix_report", "data_root": str(data), "output_dir": str(root / "runs"), "seed": 7,
        "sources": {
            "web": {"paths": ["web.jsonl"], "filters": [
                "c4_clean", {"langid": {"tag_only": True, "max_chars": 2000}},
                {"decontam": {"policy": "drop", "tasks": tasks}},
                "pii", {"quality": {"model": str(model), "mode": "threshold", "threshold": 0.3}}]},
            "wiki": {"paths": ["wiki.jsonl"], "filters": [
                {"length": {"min_chars": 200}}, {"langid": {"tag_only": True, "max_chars": 2000}},
                {"quality": {"model": str(model), "mode": "tag"}}]},
        },
        "dedup": {"source_priority": ["wiki", "web"]},
        "mixture": tiny_mixture(["web", "wiki"], {"web": 0.6, "wiki": 0.4}, 20_000, 64, 512),
    }
    path = root / "mix_report.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def _compared(root: Path) -> dict[str, bytes]:
    """The outputs two runs of a spec must agree on byte for byte: the reports and every SVG."""
    names = ["report.md", "report.html", "stats.json"]
    out = {n: (root / n).read_bytes() for n in names if (root / n).exists()}
    out.update({str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.svg"))})
    return out


@pytest.fixture(scope="module")
def report_run(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> dict:
    """The spec cleaned and built twice with --force; the outputs after each clean and each build."""
    root = tmp_path_factory.mktemp("report")
    spec = load_spec(_spec(root, corpora))
    snapshots = []
    for _ in range(2):
        layout = jobs.clean(spec, force=True)
        cleaned = _compared(layout.root)
        jobs.build(spec)
        snapshots.append((cleaned, _compared(layout.root)))
    return {"spec": spec, "layout": RunLayout(spec.run_dir), "snapshots": snapshots}


def test_cleaning_and_mixture_reports_are_byte_identical_across_forced_reruns(report_run: dict) -> None:
    (clean_a, built_a), (clean_b, built_b) = report_run["snapshots"]
    assert {"report.md", "report.html", "funnel.svg", "quality_scores.svg"} <= set(clean_a)
    for name in clean_a.keys() | clean_b.keys():
        assert clean_a.get(name) == clean_b.get(name), f"{name} differs between two cleanings of the same spec"
    for name in built_a.keys() | built_b.keys():
        assert built_a.get(name) == built_b.get(name), f"{name} differs between two builds of the same spec"
    layout: RunLayout = report_run["layout"]
    assert "wall time" not in layout.report.read_text()
    assert json.loads(layout.clean_timings.read_text())["pipeline_seconds"] > 0  # timings live in _work/
    assert 'id="mixture"' not in clean_a["report.html"].decode() and 'id="mixture"' in built_a["report.html"].decode()


def test_run_report_shows_every_section_with_examples(report_run: dict) -> None:
    page = report_run["layout"].report_html.read_text(encoding="utf-8")
    for anchor in ("overview", "funnel", "removals", "lines", "quarantine", "language-quality", "dedup",
                   "contamination", "mixture", "files"):
        assert f'<section id="{anchor}">' in page, anchor
    assert "c4.too_few_sentences" in page and "length.too_short" in page  # removal reasons with examples
    assert "example removed lines" in page and "c4.no_endmark" in page  # real lines, re-derived
    assert "malformed_json" in page  # quarantine reason
    assert "web/copy-of-wiki" in page and "wiki/" in page  # the cross-source duplicate and its survivor
    assert "boolq" in page and "contaminated" in page  # the contaminated document, per task
    assert "threshold 0.3" in page  # the quality cut drawn on the histogram
    assert "Tokens per source: available vs target" in page and "epochs" in page


def test_document_text_is_escaped_and_the_page_is_self_contained(report_run: dict) -> None:
    page = report_run["layout"].report_html.read_text(encoding="utf-8")
    assert H.esc(SCRIPT_TEXT[:40]) in page  # the stub removed for length is shown, escaped
    assert "<script" not in page and "<img" not in page and "<link" not in page and "@import" not in page
    refs = re.findall(r'\b(?:src|href)="([^"]*)"', page) + re.findall(r"url\(([^)]*)\)", page)
    assert all(r.startswith("#") for r in refs), [r for r in refs if not r.startswith("#")]


def test_line_examples_reproduce_the_rules_own_counts(report_run: dict) -> None:
    """Every example line, fed to the rule on its own, is removed for the reason shown."""
    from filters.c4 import C4Cleaner

    examples = line_examples(report_run["spec"], report_run["layout"], "web", 7)
    assert examples and all(len(v) <= 3 for v in examples.values())
    rule = C4Cleaner()
    for reason, found in examples.items():
        for e in found:
            kept, _, edits = rule.clean_lines([e["line"]])
            assert set(edits) == {reason} and bool(kept) == e["kept"]


def _ablation_inputs() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    rows = []
    for mix, base in (("mix_a", 1.30), ("mix_b", 1.25), ("mix_c", 1.22)):
        for seed in range(3):
            for metric, offset in (("bpb_common/mean", 0.0), ("bpb_common/wiki", 0.05), ("bpb/wiki", 0.02)):
                rows.append({"mix": mix, "seed": seed, "metric": metric, "value": base + offset + rng.normal(0, .01),
                             "higher_is_better": False})
            rows.append({"mix": mix, "seed": seed, "metric": "mc/arc_easy", "value": 1.6 - base + rng.normal(0, .01),
                         "higher_is_better": True})
    curves = pd.DataFrame([{"mix": m, "seed": s, "step": 10 * k, "loss": 6 * np.exp(-k / 12) + b + rng.normal(0, .03)}
                           for m, b in (("mix_a", 1.3), ("mix_b", 1.25), ("mix_c", 1.22)) for s in range(3)
                           for k in range(30)])
    return pd.DataFrame(rows), curves


def _write_ablation(out: Path) -> Path:
    results, curves = _ablation_inputs()
    ablation_stats.write_report(results, curves, out, "demo <ablation>", {"proxy": "tiny, `2` layers"}, seed=3,
                                lead="bpb_common/mean", sections={"Common evaluation set": [
                                    "Held out by `every` mix.", "", "| source | common set |", "|---|---|",
                                    "| wiki | 12 docs |"]})
    return out / "report.html"


def test_ablation_report_html_ranks_with_intervals_and_is_reproducible(tmp_path: Path) -> None:
    first, second = _write_ablation(tmp_path / "a"), _write_ablation(tmp_path / "b")
    for name in ("report.md", "report.html", "bpb.svg", "bpb_common.svg", "mc.svg", "loss_curves.svg"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    page = first.read_text(encoding="utf-8")
    assert page == second.read_text(encoding="utf-8")
    assert "Ranking by bpb_common/mean" in page and "1. mix_c" in page  # lowest bpb first
    assert "P(row beats column)" in page and "Training loss per step" in page
    assert "demo &lt;ablation&gt;" in page and "<code>2</code>" in page and "<td>12 docs</td>" in page


def test_svg_charts_escape_labels_and_have_a_size() -> None:
    chart = svg.hbars([svg.Row("<b>&", [[svg.Seg(3)]])], "t <1>")
    assert "&lt;b&gt;&amp;" in chart and "<b>" not in chart and "t &lt;1&gt;" in chart
    assert re.match(r'<svg [^>]*width="\d+(\.\d)?" height="\d+(\.\d)?"', chart)
    assert chart == svg.hbars([svg.Row("<b>&", [[svg.Seg(3)]])], "t <1>")
    assert svg.nice_ticks(0, 0.98) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


# ---- the real browser -----------------------------------------------------------------------------------------

APT_INSTALL = ("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
               "--no-install-recommends chromium chromium-driver")


def _find_chromium() -> tuple[str, str] | None:
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists()
                                              else None)
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    """Headless Chromium through chromedriver (Debian packages; installed here as root if .ci/run did not)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium missing: install the dev extra")
    from selenium.webdriver.chrome.service import Service

    found = _find_chromium()
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(APT_INSTALL, shell=True, capture_output=True, timeout=900, check=False)
        found = _find_chromium()
    if found is None:
        pytest.skip("no headless Chromium: `apt-get install chromium chromium-driver` (.ci/run does) to run the "
                    "browser checks of report.html")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                "--window-size=1300,900", "--no-first-run", "--disable-extensions",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


CHECK_JS = """
document.querySelectorAll('details').forEach(d => { d.open = true; });
const out = {charts: 0, images: 0, problems: []};
for (const el of document.querySelectorAll('svg, img')) {
  if (el.tagName.toLowerCase() === 'svg' && el.parentElement.closest('svg')) continue;
  const r = el.getBoundingClientRect();
  const name = el.getAttribute('aria-label') || el.getAttribute('src') || el.tagName;
  if (el.tagName.toLowerCase() === 'img') {
    out.images += 1;
    if (!(el.complete && el.naturalWidth > 0)) out.problems.push('broken image: ' + name);
  } else { out.charts += 1; }
  if (!(r.width > 0 && r.height > 0)) out.problems.push('zero size: ' + name);
}
return out;
"""


def _inspect(driver, page: Path) -> dict:
    """Open ``page``; every chart and image drawn at a non-zero size, no broken image, the console's errors."""
    driver.get_log("browser")  # drop what an earlier page logged
    driver.get(page.resolve().as_uri())
    found = driver.execute_script(CHECK_JS)
    found["errors"] = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return found


def _screenshot(driver, path: Path) -> Path:
    """The whole page, not only the window (Chrome DevTools: capture beyond the viewport)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1300, min(int(height), 12000))
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    path.write_bytes(base64.b64decode(shot["data"]))
    driver.set_window_size(1300, 900)
    return path


def _keep_copy(path: Path) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, SCREENSHOTS / path.name)


def test_run_report_renders_in_chromium(report_run: dict, browser, tmp_path: Path) -> None:
    found = _inspect(browser, report_run["layout"].report_html)
    assert found["charts"] >= 12 and not found["problems"] and not found["errors"], found
    shot = _screenshot(browser, tmp_path / "report_run.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    _keep_copy(shot)


def test_ablation_report_renders_in_chromium(browser, tmp_path: Path) -> None:
    found = _inspect(browser, _write_ablation(tmp_path / "ablation"))
    assert found["charts"] >= 6 and not found["problems"] and not found["errors"], found
    _keep_copy(_screenshot(browser, tmp_path / "report_ablation.png"))


def test_the_browser_check_sees_broken_images_and_console_errors(browser, tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><img src="missing.png" alt="x">'
                    '<script>console.error("boom")</script></body></html>')
    found = _inspect(browser, page)
    assert any(p.startswith("broken image") for p in found["problems"])
    assert any("boom" in e for e in found["errors"])

"""``runs/<mix>/report.html``: the run report as charts, with examples of what each rule removed.

Written at the end of cleaning (from ``stats.json`` and the run's Parquet files) and again after the mixture
build, which adds the plan. One self-contained file: inline CSS and SVG, no script, no network, no timestamp.
Examples are chosen by a seeded hash of the document id (:func:`filters.hashing.keyed_hash`), so a rerun shows
the same ones.

Line-level rules are recorded as characters per reason (``line_edits`` in ``stats.json``), not as lines. For a
rule that judges lines one at a time (it has a ``clean_lines`` method, as ``c4_clean`` does), the report shows
real removed lines by re-applying the registered rule to documents whose stored text is exactly what the rule
saw: the rule opens a fused pass of document filters and the page was removed somewhere in that pass
(``removed/`` stores a page as it entered the pass). A line is shown only when the per-line re-application
reproduces the rule's own character counts for that page. Kept pages are stored after editing, and corpus-level
line rules (line dedup) need the whole corpus, so for those the report says that only character counts are
recorded.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from filters import registry
from filters.hashing import keyed_hash
from mixtures.chains import GLOBAL_STAGE_BASE, source_steps
from mixtures.layout import RunLayout
from mixtures.report import html as H
from mixtures.report import svg
from mixtures.report.dedup import SIZE_BINS, _bin_label
from mixtures.spec import Spec

EXAMPLES = 3  # example documents per removal reason
LINE_EXAMPLES = 3  # example lines per line-level reason
LINE_SCAN_DOCS = 200  # documents searched for example lines per rule
QUALITY_BINS = 20
TOP_LANGS = 6


# ---- reading the run ------------------------------------------------------------------------------------------

def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def _rows(folder: Path, columns: list[str], filters: Any = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in _parts(folder):
        names = set(pq.read_schema(path).names)
        table = pq.read_table(path, columns=[c for c in columns if c in names], filters=filters)
        rows.extend(table.to_pylist())
    return rows


def _with_texts(folder: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with their ``text`` (and ``url``), read for just these ids."""
    if not rows:
        return []
    found = {r["id"]: r for r in _rows(folder, ["id", "text", "url"], filters=[("id", "in", [r["id"] for r in rows])])}
    return [{**r, "text": found.get(r["id"], {}).get("text"), "url": found.get(r["id"], {}).get("url")}
            for r in rows]


def _pick(rows: Iterable[dict[str, Any]], seed: int, label: str, n: int, key: str = "id") -> list[dict[str, Any]]:
    """``n`` rows chosen by a seeded hash of their id: the same choice every run, spread over the source."""
    return sorted(rows, key=lambda r: (keyed_hash(seed, label, str(r[key])), str(r[key])))[:n]


# ---- sections -------------------------------------------------------------------------------------------------

def _overview(stats: dict[str, Any]) -> H.Section:
    sources = stats["sources"]
    doc_rows, char_rows, table = [], [], []
    for name, st in sources.items():
        inp, kept, quar = st["input"]["docs"], st["kept"]["docs"], st["quarantined"]["docs"]
        removed = inp - kept
        doc_rows.append(svg.Row(name, [[svg.Seg(kept, svg.KEPT, f"{name}: {kept:,} kept"),
                                        svg.Seg(removed, svg.REMOVED, f"{name}: {removed:,} removed"),
                                        svg.Seg(quar, svg.QUARANTINED, f"{name}: {quar:,} quarantined")]],
                                note=f"{kept:,} of {inp:,} kept"))
        ic, kc = st["input"]["chars"], st["kept"]["chars"]
        char_rows.append(svg.Row(name, [[svg.Seg(kc, svg.KEPT, f"{name}: {kc:,} chars kept"),
                                         svg.Seg(max(ic - kc, 0), svg.REMOVED, f"{name}: {ic - kc:,} chars gone")]],
                                 note=f"{_pct(kc, ic)} kept"))
        table.append([name, inp, quar, removed, kept, H.text(_pct(kept, inp)), ic, kc, H.text(_pct(kc, ic))])
    body = [
        H.para("Every source from input to kept documents. Removed counts documents dropped by a rule; quarantined "
               "records could not be read (bad JSON, bad encoding, duplicate ids) and never entered the chain. "
               "Characters gone are input minus kept: whole documents removed plus lines cut from kept ones."),
        H.charts(svg.hbars(doc_rows, "Documents per source", width=600,
                           legend=[("kept", svg.KEPT), ("removed", svg.REMOVED), ("quarantined", svg.QUARANTINED)]),
                 svg.hbars(char_rows, "Characters per source", width=600,
                           legend=[("kept", svg.KEPT), ("gone", svg.REMOVED)])),
        H.table(["source", "input docs", "quarantined", "removed", "kept docs", "kept %", "input chars",
                 "kept chars", "kept chars %"], table),
    ]
    return H.Section("overview", "Overview", body)


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _funnel(stats: dict[str, Any]) -> H.Section:
    figures = []
    for name, st in stats["sources"].items():
        rows = [svg.Row("input", [[svg.Seg(st["input"]["docs"], svg.PALETTE[0], f"input: {st['input']['docs']:,}")]])]
        for f in st["funnel"]:
            label = f"{f['stage']}: {f['step']}"
            rows.append(svg.Row(label, [[svg.Seg(f["docs_out"], svg.PALETTE[0], f"{label}: {f['docs_out']:,} left"),
                                         svg.Seg(f["removed"], svg.REMOVED, f"{label}: {f['removed']:,} removed")]],
                                note=f"{f['docs_out']:,}" + (f"  (−{f['removed']:,})" if f["removed"] else "")))
        figures.append(svg.hbars(rows, f"{name}: documents left after each step", width=520,
                                 legend=[("left", svg.PALETTE[0]), ("removed at this step", svg.REMOVED)]))
    return H.Section("funnel", "Funnel", [
        H.para("Documents remaining after each step of each source's chain, in the order the run applied them "
               f"(stages from {GLOBAL_STAGE_BASE} are the cross-source dedup stages)."),
        H.charts(*figures)])


def _removals(stats: dict[str, Any], layout: RunLayout, seed: int) -> H.Section:
    body: list[str] = [H.para(
        f"Documents and characters removed per rule, and {EXAMPLES} removed documents per rule (their first "
        f"{H.SNIPPET_CHARS} characters as stored in removed/, chosen by a seeded hash of the id). A document "
        "removed by a later step is stored as it entered that step's pass of filters.")]
    for name, st in stats["sources"].items():
        if not st["removed"]:
            continue
        reasons = list(st["removed"].items())
        docs = [svg.Row(r, [[svg.Seg(v["docs"], svg.REMOVED, f"{r}: {v['docs']:,} documents")]]) for r, v in reasons]
        chars = [svg.Row(r, [[svg.Seg(v["chars"], svg.PALETTE[4], f"{r}: {v['chars']:,} characters")]])
                 for r, v in reasons]
        body += [H.heading(3, name, f"removed-{name}"),
                 H.charts(svg.hbars(docs, f"{name}: documents removed per rule", width=520),
                          svg.hbars(chars, f"{name}: characters removed per rule", width=520))]
        removed = _rows(layout.removed_of(name), ["id", "reason", "stage", "n_chars"])
        examples = []
        for reason, _ in reasons:
            chosen = _pick((r for r in removed if r["reason"] == reason), seed, f"report/{name}/{reason}", EXAMPLES)
            for r in _with_texts(layout.removed_of(name), chosen):
                examples.append([H.code(reason), H.code(r["id"]), r["n_chars"], H.snippet(r["text"])])
        if examples:
            body.append(H.details(f"{name}: example removed documents ({len(examples)})",
                                  [H.table(["rule", "id", "chars", f"first {H.SNIPPET_CHARS} characters"], examples)],
                                  open_=True))
    if len(body) == 1:
        body.append(H.para("No rule removed a document."))
    return H.Section("removals", "Removed per rule", body)


def _fused_runs(steps: list[tuple[str, dict[str, Any]]]) -> list[tuple[int, int]]:
    """[start, end) of each run of consecutive document filters: the passes the pipeline fuses into one ParDo."""
    runs, i = [], 0
    while i < len(steps):
        if steps[i][0] in registry.DOC_FILTERS:
            j = i
            while j < len(steps) and steps[j][0] in registry.DOC_FILTERS:
                j += 1
            runs.append((i, j))
            i = j
        else:
            i += 1
    return runs


def _build(name: str, params: dict[str, Any]) -> Any:
    try:
        return registry.build_filter(name, params)
    except Exception:  # a step that needs run resources (model, index) cannot be rebuilt here: no examples
        return None


def _lines_of_page(rule: Any, text: str) -> list[tuple[str, str, bool]] | None:
    """(reason, line, line kept) per line the rule edits, judging lines one at a time as ``clean_lines`` does.

    None when the per-line results do not add up to the rule's own character counts for the whole page.
    """
    whole = rule.clean_lines(text.splitlines())[2]
    found: list[tuple[str, str, bool]] = []
    total: Counter[str] = Counter()
    for raw in text.splitlines():
        kept, page_reason, edits = rule.clean_lines([raw])
        total.update(edits)
        if len(edits) == 1:  # a line two reasons cut (citation markers, then too short) is no clean example
            found.append((next(iter(edits)), raw.strip(), bool(kept)))
        if page_reason is not None:
            break
    return found if dict(total) == dict(whole) else None


def line_examples(spec: Spec, layout: RunLayout, source: str, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Example removed lines per line-level reason of ``source`` (see the module docstring for when and how).

    Only a line rule that opens a fused pass of document filters qualifies: the pages removed anywhere in that
    pass are stored as they entered it, which is exactly the text the rule judged.
    """
    if source not in spec.sources:
        return {}
    steps = source_steps(spec, source)
    out: dict[str, list[dict[str, Any]]] = {}
    removed: list[dict[str, Any]] | None = None
    for start, end in _fused_runs(steps):
        if not hasattr(registry.load_factory(registry.DOC_FILTERS[steps[start][0]]), "clean_lines"):
            continue  # the pass does not open with a rule that judges lines one at a time
        rule = _build(*steps[start])
        if rule is None:
            continue
        if removed is None:
            removed = _rows(layout.removed_of(source), ["id", "stage"])
        pool = _pick((r for r in removed if start <= r["stage"] < end), seed, f"report/lines/{source}/{start}",
                     LINE_SCAN_DOCS)
        for row in _with_texts(layout.removed_of(source), pool):
            seen: set[str] = set()
            for reason, line, kept in _lines_of_page(rule, row["text"] or "") or []:
                if reason in seen or len(out.get(reason, [])) >= LINE_EXAMPLES or not line:
                    continue
                seen.add(reason)
                out.setdefault(reason, []).append({"id": row["id"], "line": line, "kept": kept,
                                                   "step": steps[start][0]})
    return out


def _line_edits(stats: dict[str, Any], spec: Spec, layout: RunLayout, seed: int) -> H.Section | None:
    body: list[str] = [H.para(
        "Characters cut from documents by line-level rules, whether the page was kept or removed later "
        "(stats.json records characters per reason, not the lines themselves). Example lines come from re-applying "
        "a registered line rule to pages whose stored text is exactly what the rule saw (pages removed in the pass "
        "of filters the rule opens), and only where that re-application reproduces the rule's own counts.")]
    for name, st in stats["sources"].items():
        if not st["line_edits"]:
            continue
        edits = sorted(st["line_edits"].items(), key=lambda kv: (-kv[1], kv[0]))
        rows = [svg.Row(r, [[svg.Seg(c, svg.PALETTE[4], f"{r}: {c:,} characters")]]) for r, c in edits]
        body += [H.heading(3, name, f"lines-{name}"),
                 H.charts(svg.hbars(rows, f"{name}: characters removed per line-level reason", width=640))]
        examples = line_examples(spec, layout, name, seed)
        table = [[H.code(reason), H.code(e["id"]),
                  H.Markup(("<span class='pill'>markers cut, line kept</span> " if e["kept"] else "")
                           + str(H.snippet(e["line"])))]
                 for reason, _ in edits for e in examples.get(reason, [])]
        if table:
            body.append(H.details(f"{name}: example removed lines ({len(table)})",
                                  [H.table(["reason", "page id", "line"], table)], open_=True))
        missing = [r for r, _ in edits if r not in examples]
        if missing:
            body.append(H.para(f"{name}: only character counts are recorded for {', '.join(missing)} (edits inside "
                               "kept pages, masking, or corpus-level line rules such as line dedup)."))
    return H.Section("lines", "Line-level edits", body) if len(body) > 1 else None


def _quarantine(stats: dict[str, Any], layout: RunLayout, seed: int) -> H.Section | None:
    rows, examples = [], []
    for name, st in stats["sources"].items():
        for reason, n in sorted(st["quarantined"]["by_reason"].items()):
            rows.append(svg.Row(f"{name}: {reason}", [[svg.Seg(n, svg.QUARANTINED, f"{name} {reason}: {n:,}")]]))
        if st["quarantined"]["docs"]:
            found = _rows(layout.quarantine_of(name), ["id", "reason", "raw"])
            for reason in sorted({r["reason"].split(":")[0] for r in found}):
                chosen = _pick((r for r in found if r["reason"].split(":")[0] == reason), seed,
                               f"report/quarantine/{name}/{reason}", 2)
                examples += [[name, H.code(r["reason"]), H.code(r["id"]), H.snippet(r["raw"])] for r in chosen]
    if not rows:
        return None
    return H.Section("quarantine", "Quarantine", [
        H.para("Records that could not be read as documents, per source and reason (with file and line in "
               "quarantine/<source>/)."),
        H.charts(svg.hbars(rows, "Quarantined records per reason", width=640)),
        H.details(f"Example records ({len(examples)})", [H.table(["source", "reason", "where", "raw"], examples)],
                  open_=True)])


def _quality_step(spec: Spec, source: str) -> tuple[int, dict[str, Any]] | None:
    if source not in spec.sources:
        return None
    for i, (name, params) in enumerate(source_steps(spec, source)):
        if name == "quality":
            return i, params
    return None


def _language_quality(stats: dict[str, Any], spec: Spec, layout: RunLayout) -> H.Section | None:
    langs: dict[str, Counter[str]] = {}
    panels, notes = [], []
    for name in stats["sources"]:
        kept = _rows(layout.docs_of(name), ["lang", "quality_score"])
        removed = _rows(layout.removed_of(name), ["reason", "stage", "lang", "quality_score"])
        if any(r.get("lang") for r in kept):
            langs[name] = Counter(r.get("lang") or "(none)" for r in kept)
        step = _quality_step(spec, name)
        qstage = step[0] if step else None
        by_quality = [r["quality_score"] for r in removed if (r.get("reason") or "").startswith("quality.")
                      and r.get("quality_score") is not None]
        passed = [r["quality_score"] for r in kept if r.get("quality_score") is not None]
        passed += [r["quality_score"] for r in removed if r.get("quality_score") is not None
                   and not (r.get("reason") or "").startswith("quality.")
                   and (qstage is None or r["stage"] > qstage)]
        if not passed and not by_quality:
            continue
        cuts: list[tuple[float, str]] = []
        params = step[1] if step else {}
        mode = params.get("mode", "threshold") if step else None
        if mode == "threshold":
            cuts.append((float(params.get("threshold", 0.5)), "threshold"))
        elif by_quality and passed and mode != "pareto":
            cuts.append((min(passed), "cut (lowest kept score)"))
        if mode == "pareto":
            notes.append(f"{name}: pareto mode keeps a seeded random share by score; there is no single cut.")
        elif mode == "tag":
            notes.append(f"{name}: scored only (mode tag), nothing removed by quality.")
        panels.append((name, passed, by_quality, cuts))
    edges = _score_edges([v for _, passed, removed, cuts in panels for v in passed + removed + [c for c, _ in cuts]])
    figures = []
    for name, passed, by_quality, cuts in panels:
        series = [svg.Series(f"passed quality ({len(passed):,})", _bin(passed, edges), color=svg.PALETTE[0])]
        if by_quality:
            series.append(svg.Series(f"removed by quality ({len(by_quality):,})", _bin(by_quality, edges),
                                     color=svg.REMOVED))
        figures.append(svg.histogram(series, edges, f"{name}: quality_score",
                                     "quality_score (1 = like the positive sources)", cuts=cuts))
    body: list[str] = []
    if langs:
        ranking: Counter[str] = Counter()
        for c in langs.values():
            ranking.update(c)
        top = [lang for lang, _ in ranking.most_common() if lang != "(none)"][:TOP_LANGS]
        colors = {lang: svg.PALETTE[i % len(svg.PALETTE)] for i, lang in enumerate(top)}
        rows = []
        for name, counts in sorted(langs.items()):
            total = sum(counts.values())
            segs = [svg.Seg(counts[lang], colors[lang], f"{name}: {lang} {counts[lang]:,} "
                            f"({_pct(counts[lang], total)})") for lang in top if counts[lang]]
            other = total - sum(s.value for s in segs)
            if other:
                segs.append(svg.Seg(other, svg.MUTED, f"{name}: other or untagged {other:,}"))
            main = counts.most_common(1)[0]
            rows.append(svg.Row(name, [segs], note=f"{total:,} docs, {_pct(main[1], total)} {main[0]}"))
        legend = [(lang, colors[lang]) for lang in top] + [("other / untagged", svg.MUTED)]
        body += [H.heading(3, "Languages of kept documents", "languages"),
                 H.charts(svg.hbars(rows, "Kept documents by language (fastText lid.176 or the chain's detector)",
                                    width=720, legend=legend))]
    if figures:
        zoom = "" if (edges[0], edges[-1]) == (0.0, 1.0) else (
            f" The axis shows [{edges[0]:.2f}, {edges[-1]:.2f}], the range the scores fall in.")
        body += [H.heading(3, "Quality scores", "quality-scores"),
                 H.para("Distribution of the quality classifier's score per source: documents that passed the "
                        "quality step and those it removed, with the cut the step applied." + zoom),
                 H.charts(*figures)]
        body += [H.para(n) for n in notes]
    return H.Section("language-quality", "Languages and quality", body) if body else None


def _score_edges(values: list[float]) -> list[float]:
    """Bin edges shared by every source's panel: [0, 1], or the 0.05-aligned range the scores occupy if narrow."""
    lo, hi = 0.0, 1.0
    if values:
        lo, hi = math.floor(min(values) * 20) / 20, math.ceil(max(values) * 20) / 20
        if hi - lo > 0.5:
            lo, hi = 0.0, 1.0
        elif hi - lo < 0.2:
            mid = (lo + hi) / 2
            lo, hi = max(0.0, round(mid - 0.1, 2)), min(1.0, round(mid + 0.1, 2))
    return [round(lo + (hi - lo) * i / QUALITY_BINS, 6) for i in range(QUALITY_BINS + 1)]


def _bin(values: list[float], edges: list[float]) -> list[float]:
    n, lo, hi = len(edges) - 1, edges[0], edges[-1]
    counts = [0.0] * n
    for v in values:
        counts[min(max(int((v - lo) / (hi - lo) * n), 0), n - 1)] += 1
    return counts


def _dedup(layout: RunLayout, top: int = 5) -> H.Section | None:
    if not layout.dedup_clusters.exists():
        return None
    rows = pq.read_table(layout.dedup_clusters).to_pylist()
    clusters: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        clusters.setdefault(r["cluster_id"], []).append(r)
    per_method = []
    for method in sorted({r["method"] for r in rows}):
        members = [r for r in rows if r["method"] == method]
        per_method.append([method, len({r["cluster_id"] for r in members}), len(members),
                           sum(r["status"] != "kept" for r in members)])
    sizes = [max(m["cluster_size"] for m in members) for members in clusters.values()]
    bins = []
    for lo, hi in SIZE_BINS:
        n = sum(1 for s in sizes if s >= lo and (hi is None or s <= hi))
        if n:
            label = _bin_label(lo, hi)
            bins.append(svg.Row(label, [[svg.Seg(n, svg.PALETTE[0], f"size {label}: {n:,} clusters")]]))
    largest = sorted(clusters.items(), key=lambda kv: (-max(r["cluster_size"] for r in kv[1]), kv[0]))[:top]
    body: list[str] = [
        H.para("Exact and near-duplicate clusters across sources; each cluster keeps one survivor (the first "
               "source in dedup.source_priority) and removes the rest. Every member: dedup/clusters.parquet."),
        H.charts(svg.hbars(bins, "Clusters by size (documents per cluster)", width=520)),
        H.table(["method", "clusters", "documents in clusters", "removed"], per_method),
        H.heading(3, f"The {len(largest)} largest clusters", "largest-clusters")]
    for cid, members in largest:
        table = [[H.Markup(f"<span class='{'kept' if m['status'] == 'kept' else 'removed'}'>{H.esc(m['status'])}"
                           "</span>"), H.code(f"{m['source']}/{m['doc_id']}"), m["n_chars"], H.snippet(m["snippet"])]
                 for m in members[:8]]
        more = f", first 8 of {len(members)}" if len(members) > 8 else ""
        body.append(H.details(f"{cid}: {max(m['cluster_size'] for m in members)} documents, survivor "
                              f"{members[0]['survivor_id']}{more}", [H.table(["status", "document", "chars", "text"],
                                                                             table)], open_=cid == largest[0][0]))
    return H.Section("dedup", "Dedup", body)


def _contamination(layout: RunLayout) -> H.Section | None:
    if not layout.decontam_hits.exists():
        return None
    from mixtures.contamination import load_indexes

    hits = pq.read_table(layout.decontam_hits).to_pylist()
    items: dict[str, set[str]] = {}
    for index in load_indexes(layout.root):
        for task, ids in index.items_of_task().items():
            items.setdefault(task, set()).update(ids)
    tasks = sorted(set(items) | {h["task"] for h in hits})
    item_rows, doc_rows, table = [], [], []
    for task in tasks:
        mine = [h for h in hits if h["task"] == task]
        hit_items = {h["item_id"] for h in mine}
        docs = {(h["source"], h["doc_id"]) for h in mine}
        total = len(items.get(task, ()))
        note = f"{len(hit_items):,} of {total:,} ({_pct(len(hit_items), total)})"
        item_rows.append(svg.Row(task, [[svg.Seg(len(hit_items), svg.QUARANTINED,
                                                 f"{task}: {len(hit_items):,} items hit")]], note=note))
        doc_rows.append(svg.Row(task, [[svg.Seg(len(docs), svg.REMOVED, f"{task}: {len(docs):,} documents")]]))
        by_source = Counter(s for s, _ in docs)
        table.append([task, total, len(hit_items), total - len(hit_items), len(docs),
                      ", ".join(f"{s} {n}" for s, n in sorted(by_source.items())) or "-"])
    examples = [[h["task"], H.code(h["item_id"]), H.code(f"{h['source']}/{h['doc_id']}"), h["ngrams"], h["action"],
                 H.Markup("<span class='kept'>yes</span>" if h["kept"] else "<span class='removed'>no</span>")]
                for h in hits[:20]]
    body: list[str] = [
        H.para("Eval items that share a normalised n-gram with a document of the run, per task, and the documents "
               "hit. Every hit: decontam/hits.parquet; the clean items of a task are its items never hit."),
        H.charts(svg.hbars(item_rows, "Eval items hit per task", width=560),
                 svg.hbars(doc_rows, "Documents that overlap each task", width=480)) if hits else
        H.para(f"No document of the run shares an n-gram with any of the {sum(len(v) for v in items.values()):,} "
               f"items of {len(tasks)} eval tasks.", "note"),
        H.table(["task", "items", "items hit", "clean items", "documents hit", "sources"], table)]
    if examples:
        body.append(H.details(f"Hits ({min(len(hits), 20)} of {len(hits)})",
                              [H.table(["task", "item", "document", "n-grams", "action", "still trained on"],
                                       examples)], open_=True))
    return H.Section("contamination", "Contamination", body)


def _mixture(layout: RunLayout) -> H.Section | None:
    if not layout.plan.is_file():
        return None
    plan = json.loads(layout.plan.read_text(encoding="utf-8"))
    total = plan["total_tokens"] or 1
    tok_rows, epoch_rows, table = [], [], []
    for s in plan["sources"]:
        name = s["source"]
        tok_rows.append(svg.Row(name, [[svg.Seg(s["available_tokens"], svg.MUTED, f"{name}: {s['available_tokens']:,} "
                                                "available")],
                                       [svg.Seg(s["target_tokens"], svg.PALETTE[0], f"{name}: {s['target_tokens']:,} "
                                                "target")]],
                                note=f"{svg.fmt(s['target_tokens'])} of {svg.fmt(s['available_tokens'])}"))
        epoch_rows.append(svg.Row(name, [[svg.Seg(s["epochs"], svg.PALETTE[2] if s["epochs"] <= 1 else svg.REMOVED,
                                                  f"{name}: {s['epochs']:.3f} epochs")]], note=f"{s['epochs']:.2f}"))
        table.append([name, float(s["weight"]), s["available_tokens"], s["target_tokens"],
                      H.text(f"{s['target_tokens'] / total:.1%}"), float(s["epochs"]), float(s["epoch_cap"]),
                      s["docs_used"], s["valid_docs"], s["valid_tokens"]])
    caps = sorted({float(s["epoch_cap"]) for s in plan["sources"]})
    most = max((float(s["epochs"]) for s in plan["sources"]), default=0.0)
    near_cap = len(caps) == 1 and 1 < caps[0] <= max(3 * most, 2)  # a far-off cap would squash the bars
    marks = [(1.0, "1 epoch")] + ([(caps[0], f"epoch cap {caps[0]:g}")] if near_cap else [])
    body = [
        H.para(f"{plan['total_tokens']:,} training tokens (budget {plan['budget_tokens']:,}) in sequences of "
               f"{plan['max_seq_len']}, tokenizer {plan['tokenizer']} (vocab {plan['vocab_size']:,}), seed "
               f"{plan['seed']}, shortfall: {plan['on_shortfall']}. From plan.json; streams in streams.yaml."),
        H.charts(svg.hbars(tok_rows, "Tokens per source: available vs target", width=560,
                           legend=[("available", svg.MUTED), ("target", svg.PALETTE[0])]),
                 svg.hbars(epoch_rows, "Epochs per source (target / available)", width=480, marks=marks)),
        H.table(["source", "weight", "available tokens", "target tokens", "share", "epochs", "epoch cap",
                 "docs used", "valid docs", "valid tokens"], table)]
    return H.Section("mixture", "Mixture plan", body)


def _files(layout: RunLayout, mixture: bool) -> H.Section:
    rows = [(layout.stats, "counts behind every chart of the cleaning sections"),
            (layout.report, "the same report as Markdown tables"),
            (layout.removed, "every removed document with its reason and stage, per source"),
            (layout.quarantine, "unreadable records with file and line, per source"),
            (layout.dedup_clusters, "every member of every duplicate cluster"),
            (layout.decontam_hits, "every (document, eval item) overlap"),
            (layout.work, "events and timings: not part of the compared outputs")]
    if mixture:
        rows += [(layout.plan, "the mixture plan"), (layout.streams, "the MDS streams for training"),
                 (layout.catalogue, "per-document table: mixlab tokens RUN")]
    table = [[H.code(str(p.relative_to(layout.root)) + ("/" if p.is_dir() else "")), d] for p, d in rows if p.exists()]
    return H.Section("files", "Files", [H.table(["path", "holds"], table)])


def render_run_html(spec: Spec, layout: RunLayout, mixture: bool = False) -> str:
    """The report page of the run in ``layout`` (``mixture``: include the plan of a built mixture)."""
    stats = json.loads(layout.stats.read_text(encoding="utf-8"))
    seed = spec.seed
    sections = [_overview(stats), _funnel(stats), _removals(stats, layout, seed),
                _line_edits(stats, spec, layout, seed), _quarantine(stats, layout, seed),
                _language_quality(stats, spec, layout), _dedup(layout), _contamination(layout),
                _mixture(layout) if mixture else None, _files(layout, mixture)]
    kept = sum(st["kept"]["docs"] for st in stats["sources"].values())
    total = sum(st["input"]["docs"] for st in stats["sources"].values())
    subtitle = (f"{len(stats['sources'])} sources, {kept:,} of {total:,} documents kept"
                + (", mixture built" if mixture and layout.plan.is_file() else "") + f". Spec: {spec.spec_path}")
    return H.page(f"Mixlab run report: {stats['spec']}", subtitle, [s for s in sections if s is not None])


def write_run_html(spec: Spec, layout: RunLayout, mixture: bool = False) -> Path:
    """Write ``report.html`` beside ``report.md``; return its path."""
    return H.write_page(layout.report_html, render_run_html(spec, layout, mixture))

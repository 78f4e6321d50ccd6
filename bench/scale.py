"""How `mixlab mixture` scales: wall, CPU and peak memory of the whole process tree per stage at 1x, 4x, 16x.

Corpora are N copies of the shared web corpus (72 MB of text a copy) whose documents stay distinct: copy k > 0
gets new ids and URLs, and in every line a keyed-hash choice of its words trade places (the line keeps its words,
punctuation and length, so the C4 rules and langdetect see the same kind of text, while lines, 5-word shingles
and whole texts differ between copies, so line, exact and MinHash dedup do not collapse them). Each copy is two
files, one per source (`web_a`, `web_b`), so dedup runs across sources. The spec: the `c4` chain on both sources,
cross-source exact + MinHash dedup (defaults), a mixture of about half the kept tokens (byte-level BPE).

The run is a child process; a thread samples /proc every 0.2 s for every process of its tree (Beam workers,
Dask workers) and sums their resident memory (peak of the sum) and CPU time. Stages are cut at the run's own
log lines (ingest, each segment, reduce parts, the output write, the report, the mixture build); their CPU is the
tree's CPU between those lines. Then the 4x corpus runs on Beam's DaskRunner with a local 2-worker cluster and
its outputs are compared byte for byte with the in-process run.

    .venv/bin/python -m bench.scale                        # 1x, 4x, 16x, then Dask on 4x
    .venv/bin/python -m bench.scale --sizes 1,4 --dask 0   # quicker
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import harness

WORD = re.compile(r"[^\W\d_]{2,}")
TOKENS_PER_COPY = 3_000_000  # about half of the kept tokens of one copy (6.3M with an 8192-token BPE)
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


# ---- corpora -----------------------------------------------------------------------------------------------------

def perturb_line(line: str, copy: int) -> str:
    """Copy ``copy`` of a line: a keyed-hash choice of its words rotate among themselves (copy 0: unchanged)."""
    import xxhash

    if copy == 0:
        return line
    found = list(WORD.finditer(line))
    if len(found) < 2:
        return line
    h = xxhash.xxh3_64_intdigest(line, seed=copy)
    cores = [m.group() for m in found]
    chosen = [i for i in range(len(cores)) if (h >> (i % 64)) & 1]
    new = list(cores)
    for a, b in zip(chosen, chosen[1:] + chosen[:1], strict=True):
        new[b] = cores[a]
    if new == cores:
        new = cores[1:] + cores[:1]
    out, last = [], 0
    for m, word in zip(found, new, strict=True):
        out += [line[last:m.start()], word]
        last = m.end()
    return "".join([*out, line[last:]])


def make_corpus(folder: Path, copies: int) -> Path:
    """``folder/web-{a,b}-NNN.jsonl.gz`` for ``copies`` copies (made once; a marker file says it is complete)."""
    marker = folder / f".complete-{copies}"
    if marker.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    records = harness.read_corpus("web")
    half = len(records) // 2
    for k in range(copies):
        for part, rows in (("a", records[:half]), ("b", records[half:])):
            path = folder / f"web-{part}-{k:03d}.jsonl.gz"
            if path.is_file() and (folder / f".copy-{k}").is_file():
                continue
            with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as out:
                for row in rows:
                    row = dict(row)
                    if k:
                        row["id"] = f"{row['id']}~{k}"
                        meta = dict(row.get("meta") or {})
                        if meta.get("url"):
                            meta["url"] = f"{meta['url'].rstrip('/')}/copy-{k}"
                        row["meta"] = meta
                        row["text"] = "\n".join(perturb_line(line, k) for line in row["text"].split("\n"))
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
        (folder / f".copy-{k}").touch()
    marker.touch()
    return folder


def write_spec(path: Path, data: Path, out: Path, copies: int, extra: str = "") -> Path:
    path.write_text(f"""name: scale{copies}x
data_root: {data}
output_dir: {out}
seed: 1
sources:
  web_a: {{paths: ["web-a-*.jsonl.gz"], filters: [c4]}}
  web_b: {{paths: ["web-b-*.jsonl.gz"], filters: [c4]}}
dedup: {{}}
mixture:
  tokenizer: {{name: bpe, vocab_size: 8192}}
  budget_tokens: {TOKENS_PER_COPY * copies}
  max_seq_len: 512
  sources: {{web_a: {{weight: 0.5}}, web_b: {{weight: 0.5}}}}
{extra}""", encoding="utf-8")
    return path


# ---- measuring a process tree --------------------------------------------------------------------------------------

def _tree(root: int) -> dict[int, tuple[int, float]]:
    """pid -> (resident bytes, CPU seconds) for ``root`` and all its descendants."""
    parent: dict[int, int] = {}
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/statm", encoding="utf-8") as fh:
                rss = int(fh.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
        pid = int(entry)
        parent[pid] = int(fields[1])
        stats[pid] = (rss, (int(fields[11]) + int(fields[12])) / TICK)
    keep, frontier = {root}, [root]
    while frontier:
        nxt = [pid for pid, ppid in parent.items() if ppid in frontier and pid not in keep]
        keep.update(nxt)
        frontier = nxt
    return {pid: stats[pid] for pid in keep if pid in stats}


class TreeSampler(threading.Thread):
    """Samples a process tree: peak of the summed RSS (overall and since the last mark), CPU of live processes."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.peak = self.stage_peak = 0
        self.cpu_seen: dict[int, float] = {}
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()

    def sample(self) -> None:
        tree = _tree(self.pid)
        rss = sum(r for r, _ in tree.values())
        with self.lock:
            self.peak, self.stage_peak = max(self.peak, rss), max(self.stage_peak, rss)
            for pid, (_, cpu) in tree.items():
                self.cpu_seen[pid] = max(cpu, self.cpu_seen.get(pid, 0.0))

    def run(self) -> None:
        while not self.stop_flag.is_set():
            self.sample()
            time.sleep(self.every)

    def mark(self) -> tuple[float, int]:
        """CPU seconds seen so far and the peak RSS since the previous mark (then reset)."""
        self.sample()
        with self.lock:
            peak, self.stage_peak = self.stage_peak, 0
            return sum(self.cpu_seen.values()), peak


def stage_of(line: str) -> str | None:
    """A stage name from a log line of the run, or None when the line does not start one."""
    m = re.search(r"clean: segment \S+ \(([^)]*)\)", line)
    if m:
        return f"segment: {m.group(1)}"
    m = re.search(r"clean: \S+?/(\w+):", line)
    if m:
        return f"reduce: {m.group(1)}"
    for marker, name in (("clean: ingest:", "read (ingest)"), ("clean: write:", "sort + write outputs"),
                         ("clean: writing the report", "report (stats, clusters)"),
                         ("clean: done in", "mixture build")):
        if marker in line:
            return name
    return None


def run_measured(cmd: list[str], env: dict[str, str], log_path: Path, whole_tree: bool = False) -> dict[str, Any]:
    """Run ``cmd``; per stage: wall, CPU, peak tree RSS; totals (CPU from the kernel's child accounting).

    ``whole_tree``: sample this process's tree instead of the child's (a local Dask cluster started here).
    """
    t = harness.Timer().start()
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    sampler = TreeSampler(os.getpid() if whole_tree else proc.pid)
    sampler.start()
    stages: dict[str, dict[str, float]] = {}
    current, since, cpu_at = "start-up (imports, spec, binding)", started, 0.0

    def close(name: str, now: float) -> None:
        nonlocal cpu_at
        cpu, peak = sampler.mark()
        st = stages.setdefault(name, {"wall": 0.0, "cpu": 0.0, "rss": 0})
        st["wall"] += now - since
        st["cpu"] += cpu - cpu_at
        st["rss"] = max(st["rss"], peak)
        cpu_at = cpu

    assert proc.stderr is not None
    with open(log_path, "w", encoding="utf-8") as log:
        for line in proc.stderr:
            log.write(line)
            name = stage_of(line)
            if name and name != current:
                now = time.monotonic()
                close(current, now)
                current, since = name, now
    proc.wait()
    close(current, time.monotonic())
    sampler.stop_flag.set()
    t.stop()
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}); log: {log_path}")
    cpu = sum(sampler.cpu_seen.values()) if whole_tree else t.cpu_children
    return {"stages": stages, "wall": t.wall, "cpu": cpu, "peak": sampler.peak, "load": (t.load_start, t.load_end)}


def outputs(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes()
            for kind in ("docs", "removed", "quarantine") for p in sorted((run / kind).rglob("*.parquet"))}


def input_mb(data: Path) -> float:
    return sum(len(json.loads(line)["text"].encode("utf-8"))
               for p in sorted(data.glob("web-*.jsonl.gz")) for line in gzip.open(p, "rt", encoding="utf-8")) / 1e6


def main() -> None:
    parser = harness.parser(__file__, None, description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,16", help="copies of the web corpus (default 1,4,16)")
    parser.add_argument("--dask", type=int, default=4, help="run this size on DaskRunner too (0: skip)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mixlab-scale"), help="corpora and runs")
    args = parser.parse_args()
    harness.setdefault_env()
    env = {**os.environ, "PYTHONHASHSEED": "0", "MIXLAB_SHARED": str(harness.shared_root()),
           "PYTHONPATH": str(harness.REPO)}
    print(f"Machine: {harness.machine()}\n")
    mixlab = [sys.executable, "-m", "mixlab", "mixture"]
    results: dict[int, dict[str, Any]] = {}
    sizes = [int(s) for s in args.sizes.split(",")]
    for copies in sizes:
        data = make_corpus(args.work / f"corpus-{copies}x", copies)
        spec = write_spec(args.work / f"scale{copies}x.yaml", data, args.work / "runs", copies)
        mb = input_mb(data)
        res = run_measured([*mixlab, str(spec), "--force"], env, args.work / f"scale{copies}x.log")
        results[copies] = {**res, "mb": mb}
        print(report(copies, results[copies]), flush=True)
    one = results.get(1)
    if one:
        rows = [(f"{c}x", f"{r['mb']:,.0f}", f"{r['peak'] / 2**30:.2f}", f"{r['peak'] / one['peak']:.2f}",
                 f"{r['cpu']:,.0f}", f"{r['mb'] / r['cpu']:.2f}", f"{r['wall']:,.0f}") for c, r in results.items()]
        print(harness.table(["corpus", "input MB", "peak tree RSS GiB", "x 1x peak", "CPU s", "MB / CPU s",
                             "wall s"], rows, "lrrrrrr") + "\n")
    if args.dask:
        print(dask_check(args, env, mixlab), flush=True)
    print(f"Load average after: {harness.load_averages()}")


def report(copies: int, res: dict[str, Any]) -> str:
    mb = res["mb"]
    rows = [(name, f"{st['wall']:.1f}", f"{st['cpu']:.1f}", f"{st['rss'] / 2**30:.2f}",
             f"{mb / st['cpu']:.1f}" if st["cpu"] > 0.05 else "-") for name, st in res["stages"].items()]
    rows.append(("**whole run**", f"{res['wall']:.1f}", f"{res['cpu']:.1f}", f"{res['peak'] / 2**30:.2f}",
                 f"{mb / res['cpu']:.2f}"))
    return (f"### {copies}x: {mb:,.0f} MB of input text; load average {res['load'][0]:.2f} at start, "
            f"{res['load'][1]:.2f} at end\n\n"
            + harness.table(["stage", "wall s", "CPU s", "peak tree RSS GiB", "input MB per CPU s"], rows, "lrrrr")
            + "\n")


def dask_check(args: Any, env: dict[str, str], mixlab: list[str]) -> str:
    """The Dask size on DaskRunner (a local cluster of 2 worker processes); its outputs against the in-process run."""
    from distributed import LocalCluster

    copies = args.dask
    data = make_corpus(args.work / f"corpus-{copies}x", copies)
    local_spec = write_spec(args.work / f"scale{copies}x.yaml", data, args.work / "runs", copies)
    local_run = args.work / "runs" / f"scale{copies}x"
    if not (local_run / "clean.json").is_file():
        run_measured([*mixlab, str(local_spec), "--force"], env, args.work / f"scale{copies}x.log")
    expected = outputs(local_run)
    spec = write_spec(args.work / f"dask{copies}x.yaml", data, args.work / "runs-dask", copies)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        res = run_measured([*mixlab, str(spec), "--force", "--runner", "DaskRunner",
                            f"--beam-option=--dask_client_address={cluster.scheduler_address}"],
                           env, args.work / f"dask{copies}x.log", whole_tree=True)
    got = outputs(args.work / "runs-dask" / f"scale{copies}x")
    same = got == expected
    differ = sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))
    return (f"DaskRunner, {copies}x, local cluster of 2 worker processes: {res['wall']:.0f} s wall, "
            f"{res['cpu']:.0f} CPU s (the run, the cluster's workers and this bench), peak RSS of that tree "
            f"{res['peak'] / 2**30:.2f} GiB; outputs {'byte-identical' if same else 'DIFFERENT'} to the "
            f"in-process run ({len(expected)} Parquet files)" + ("" if same else f"; differ: {differ[:10]}") + "\n")


if __name__ == "__main__":
    main()

"""Dedup as Beam corpus stages: exact (normalised text) and MinHash LSH with distributed connected components.

Both stages follow the corpus-stage contract of :mod:`pipelines.stages` (``factory(stage=i, **params)`` ->
``{"kept", "removed"}``); their parameters are :class:`filters.dedup.ExactDedupParams` and
:class:`filters.dedup.MinHashDedupParams`, validated before the transform is built. A document is a node keyed by
a stable 63-bit hash of (source, id, text); a stage produces ``(node, label)`` pairs where ``label`` is the
smallest node of the node's duplicate cluster, and :class:`AssignClusters` turns labels into one survivor per
cluster (preferred source first, then the smallest node) plus removed documents carrying ``dup_cluster_id``,
``dup_cluster_size`` and ``dup_survivor_id``.

MinHash: signatures -> band keys -> group by bucket -> candidate edges (optionally verified by estimated
Jaccard) -> connected components. Components are found by large-star/small-star rounds (Kiveris et al., 2014)
unrolled as Beam stages, with a final check that the edges form stars; when the edge list is small enough a
single-worker union-find is used instead. Both give every node the minimum node of its component, so their
clusters are identical.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa

from filters import dedup as dd
from filters.base import Document
from filters.params import resolve
from mixtures import progress
from pipelines.stages import (
    KEPT,
    REMOVED,
    PartFiles,
    WriteParts,
    iter_part_rows,
    part_files,
    partition_of,
    split_tagged,
)

log = logging.getLogger(__name__)

MAX_VERIFY_PEERS = 32  # with verification, a bucket member is compared with at most this many earlier members
SPACELESS_RATIO = 0.05  # below this share of spaces a text is treated as written without word spaces
Node = int


def _node(doc: Document) -> Node:
    return dd.node_key(doc.source, doc.id, doc.text)


# ---------------------------------------------------------------------------------------------- survivors

class _ClusterInfo(beam.CombineFn):
    """Per cluster: the number of documents and the best-ranked member (rank, node, id, source)."""

    def create_accumulator(self) -> tuple[int, Any]:
        return 0, None

    def add_input(self, acc: tuple[int, Any], member: tuple[tuple[int, Node], str, str, int]) -> tuple[int, Any]:
        rank, doc_id, source, count = member
        best = (rank, doc_id, source)
        return acc[0] + count, best if acc[1] is None or best < acc[1] else acc[1]

    def merge_accumulators(self, accs: Iterable[tuple[int, Any]]) -> tuple[int, Any]:
        size, best = 0, None
        for n, b in accs:
            size += n
            if b is not None and (best is None or b < best):
                best = b
        return size, best

    def extract_output(self, acc: tuple[int, Any]) -> tuple[int, Any]:
        return acc


def decide_cluster_member(node: Node, label: Any, docs: list[Document], info: Any, method: str,
                          stage: int) -> Iterator[Any]:
    """One node's documents, tagged with their cluster: the cluster's survivor is kept, every other removed.

    ``info``: the cluster's ``(size, (rank, survivor_id, survivor_source))``; ``docs`` in :func:`_doc_order`.
    """
    size, (rank, survivor_id, survivor_source) = info
    tags = {"dup_cluster_id": dd.cluster_id(method, label), "dup_cluster_size": size,
            "dup_survivor_id": f"{survivor_source}/{survivor_id}"}
    for i, doc in enumerate(docs):
        out = replace(doc, meta={**doc.meta, **tags})
        if i == 0 and rank[1] == node:
            yield KEPT, out
        else:
            yield REMOVED, (out, f"dedup.{method}", stage)


def _doc_order(doc: Document) -> tuple[str, str]:
    """Order of documents sharing one node (same source, id and text): by url then meta, deterministic."""
    return doc.url or "", repr(sorted(doc.meta.items(), key=lambda kv: kv[0]))


class AssignClusters(beam.PTransform):
    """Join ``(node, label)`` to documents; keep one survivor per cluster, tag every member, remove the rest."""

    def __init__(self, method: str, stage: int, priority: Sequence[str]) -> None:
        super().__init__()
        self.method, self.stage, self.priority = method, stage, tuple(priority)

    def expand(self, pcolls: tuple[beam.PCollection, beam.PCollection]) -> dict[str, beam.PCollection]:
        keyed, labels = pcolls
        priority, method, stage = self.priority, self.method, self.stage

        def split(item: tuple[Node, dict[str, list[Any]]]) -> Iterator[Any]:
            node, joined = item
            docs = sorted(joined["docs"], key=_doc_order)
            if not docs:
                return
            label = joined["label"][0] if joined["label"] else (node if len(docs) > 1 else None)
            if label is None:
                yield "single", docs[0]
                return
            rank = dd.survivor_order(docs[0].source, node, priority)
            yield "members", (label, (rank, docs[0].id, docs[0].source, len(docs)))
            yield "held", (node, (label, docs))

        joined = split_tagged({"docs": keyed, "label": labels} | "JoinLabels" >> beam.CoGroupByKey()
                              | "Split" >> beam.FlatMap(split), ("single", "members", "held"), "SplitClusters")
        info = joined["members"] | "ClusterInfo" >> beam.CombinePerKey(_ClusterInfo())
        label_of = joined["held"] | "LabelOfNode" >> beam.MapTuple(lambda node, held: (held[0], node))
        node_info = ({"info": info, "nodes": label_of} | "JoinInfo" >> beam.CoGroupByKey()
                     | "InfoToNodes" >> beam.FlatMap(
                         lambda kv: ((n, (kv[0], kv[1]["info"][0])) for n in kv[1]["nodes"])))

        def decide(item: tuple[Node, dict[str, list[Any]]]) -> Iterator[Any]:
            node, joined = item
            (label, docs), = joined["held"]
            (_, info), = joined["info"]
            yield from decide_cluster_member(node, label, docs, info, method, stage)

        decided = split_tagged({"held": joined["held"], "info": node_info} | "JoinHeld" >> beam.CoGroupByKey()
                               | "Decide" >> beam.FlatMap(decide), (KEPT, REMOVED), "SplitDecided")
        kept = (joined["single"], decided[KEPT]) | "Kept" >> beam.Flatten()
        return {KEPT: kept, REMOVED: decided[REMOVED]}


# ---------------------------------------------------------------------------------------------- exact

class ExactDedup(beam.PTransform):
    """Remove documents whose normalised text equals another's (empty normalised text is left alone)."""

    def __init__(self, stage: int, params: dd.ExactDedupParams | None = None, **settings: Any) -> None:
        super().__init__()
        p = resolve(dd.ExactDedupParams, params, settings, "exact_dedup")
        self.stage, self.norm, self.cross_source = stage, p.text_norm(), p.cross_source
        self.priority = tuple(p.source_priority)

    def expand(self, docs: beam.PCollection) -> dict[str, beam.PCollection]:
        norm, cross = self.norm, self.cross_source

        def text_key(doc: Document) -> Iterator[tuple[Any, Node]]:
            text = norm(doc.text)
            if not text:  # nothing left to compare: never clustered (docs/dedup.md)
                return
            key = dd.exact_key(text)
            yield (key if cross else (doc.source, key)), _node(doc)

        def labels(item: tuple[Any, Iterable[Node]]) -> Iterator[tuple[Node, Node]]:
            nodes = list(item[1])
            if len(nodes) > 1:
                label = min(nodes)
                yield from ((n, label) for n in set(nodes))

        keyed = docs | "KeyByNode" >> beam.Map(lambda d: (_node(d), d))
        label_pairs = (docs | "TextKey" >> beam.FlatMap(text_key) | "GroupText" >> beam.GroupByKey()
                       | "Labels" >> beam.FlatMap(labels))
        return (keyed, label_pairs) | "Assign" >> AssignClusters("exact", self.stage, self.priority)


def exact_dedup(stage: int, params: dd.ExactDedupParams | None = None, **settings: Any) -> ExactDedup:
    """Corpus-stage factory: ``exact_dedup`` (:class:`filters.dedup.ExactDedupParams`, or the same as keywords)."""
    return ExactDedup(stage, params, **settings)


# ---------------------------------------------------------------------------------------------- MinHash

def _unit_for(doc: Document, text: str, unit: str, char_sources: Sequence[str]) -> str:
    if unit != "auto":
        return unit
    if doc.source in char_sources:
        return "char"
    return "char" if len(text) >= 20 and text.count(" ") < SPACELESS_RATIO * len(text) else "word"


class _Signatures(beam.DoFn):
    """Document -> ``(bucket key, (node, signature or None))`` for each band; empty documents emit nothing."""

    def __init__(self, params: dd.MinHashParams, unit: str, char_ngram: int, char_sources: Sequence[str],
                 cross_source: bool, verify: bool) -> None:
        self.params, self.unit, self.char_ngram = params, unit, char_ngram
        self.char_sources, self.cross_source, self.verify = tuple(char_sources), cross_source, verify

    def signature(self, doc: Document) -> Any:
        """The document's signature, or None when it is shorter than one shingle (never clustered)."""
        p = self.params
        text = p.norm(doc.text)
        unit = _unit_for(doc, text, self.unit, self.char_sources)
        n = self.char_ngram if unit == "char" else p.ngram
        shingles = dd.shingle_hashes(dd.token_hashes(text, unit), n)
        progress.count("minhash", doc.source)
        if len(shingles) == 0:  # shorter than one shingle: never clustered (docs/dedup.md)
            return None
        return dd.signature(shingles, p.num_perm, p.seed)

    def buckets(self, doc: Document, sig: Any) -> list[tuple[Any, ...]]:
        """The document's bucket keys, one per band (with its source when dedup stays within sources)."""
        keys = dd.band_keys(sig, self.params.bands, self.params.rows)
        return [(band, key) if self.cross_source else (doc.source, band, key) for band, key in enumerate(keys)]

    def process(self, doc: Document) -> Iterator[tuple[Any, tuple[Node, Any]]]:
        sig = self.signature(doc)
        if sig is None:
            return
        value = (_node(doc), sig if self.verify else None)
        for bucket in self.buckets(doc, sig):
            yield bucket, value


def bucket_edges(members: Iterable[tuple[Node, Any]], threshold: float | None) -> Iterator[tuple[Node, Node]]:
    """Edges of one LSH bucket: a star on its smallest node, or (verified) links to similar earlier members."""
    ordered = sorted(members, key=lambda m: m[0])
    if threshold is None:
        first = ordered[0][0]
        yield from ((first, node) for node, _ in ordered[1:] if node != first)
        return
    for j in range(1, len(ordered)):
        node, sig = ordered[j]
        for other, other_sig in ordered[:min(j, MAX_VERIFY_PEERS)]:
            if other != node and dd.estimated_jaccard(sig, other_sig) >= threshold:
                yield other, node
                break


class MinHashDedup(beam.PTransform):
    """Near-duplicate removal: MinHash LSH buckets -> candidate edges -> connected components -> survivors."""

    def __init__(self, stage: int, params: dd.MinHashDedupParams | None = None, **settings: Any) -> None:
        super().__init__()
        p = resolve(dd.MinHashDedupParams, params, settings, "minhash_dedup")
        self.params = p.scheme(p.text_norm())
        self.stage, self.threshold, self.verify = stage, p.threshold, p.verify
        self.unit, self.char_ngram, self.char_sources = p.unit, p.char_ngram, tuple(p.char_sources)
        self.cross_source, self.priority = p.cross_source, tuple(p.source_priority)
        self.components = ConnectedComponents(p.components, p.fast_path_max_edges, p.max_iterations)

    def expand(self, docs: beam.PCollection) -> dict[str, beam.PCollection]:
        threshold = self.threshold if self.verify else None
        keyed = docs | "KeyByNode" >> beam.Map(lambda d: (_node(d), d))
        edges = (
            docs
            | "Signatures" >> beam.ParDo(_Signatures(self.params, self.unit, self.char_ngram, self.char_sources,
                                                     self.cross_source, self.verify))
            | "Buckets" >> beam.GroupByKey()
            | "BucketEdges" >> beam.FlatMap(lambda kv: bucket_edges(kv[1], threshold))
            | "DistinctEdges" >> beam.Distinct()
        )
        labels = edges | "Components" >> self.components
        return (keyed, labels) | "Assign" >> AssignClusters("minhash", self.stage, self.priority)


def minhash_dedup(stage: int, params: dd.MinHashDedupParams | None = None, **settings: Any) -> MinHashDedup:
    """Corpus-stage factory: ``minhash_dedup`` (:class:`filters.dedup.MinHashDedupParams`, or the same as keywords)."""
    return MinHashDedup(stage, params, **settings)


# ---------------------------------------------------------------------------------------------- components

def _large_star(item: tuple[Node, Iterable[Node]]) -> Iterator[tuple[Node, Node]]:
    u, nbrs = item
    nbrs = set(nbrs)
    m = min(nbrs | {u})
    yield from ((v, m) for v in nbrs if v > u)


def _small_star(item: tuple[Node, Iterable[Node]]) -> Iterator[tuple[Node, Node]]:
    u, nbrs = item
    group = set(nbrs) | {u}
    m = min(group)
    yield from ((v, m) for v in group if v != m)


def _star_violations(item: tuple[Node, dict[str, list[Node]]]) -> Iterator[int]:
    """1 when a node is both a leaf and a centre, or a leaf of two centres: the edges are not yet stars."""
    _, roles = item
    if (roles["centre_of"] and roles["leaf_of"]) or len(set(roles["leaf_of"])) > 1:
        yield 1


def _assert_converged(violations: int, rounds: int) -> None:
    if violations:
        raise RuntimeError(f"connected components did not converge in {rounds} large-star/small-star rounds "
                           f"({violations} nodes not yet on a star); raise minhash_dedup max_iterations")


class StarComponents(beam.PTransform):
    """Distributed connected components: alternate large-star and small-star rounds, then check for stars.

    Input edges ``(u, v)``; output ``(node, label)`` with ``label`` the minimum node of the component, for every
    node that has an edge. Each round is two GroupByKeys; the rounds are unrolled ``max_iterations`` times
    (rounds after convergence are identity), and the pipeline fails with a clear message if edges are not all
    stars at the end.
    """

    def __init__(self, max_iterations: int = dd.MAX_ITERATIONS) -> None:
        super().__init__()
        self.max_iterations = max_iterations

    def expand(self, edges: beam.PCollection) -> beam.PCollection:
        for i in range(self.max_iterations):
            edges = (edges
                     | f"LargeMap{i}" >> beam.FlatMap(lambda e: (e, (e[1], e[0])))
                     | f"LargeGroup{i}" >> beam.GroupByKey()
                     | f"LargeStar{i}" >> beam.FlatMap(_large_star)
                     | f"SmallMap{i}" >> beam.Map(lambda e: e if e[1] <= e[0] else (e[1], e[0]))
                     | f"SmallGroup{i}" >> beam.GroupByKey()
                     | f"SmallStar{i}" >> beam.FlatMap(_small_star))
        roles = {"leaf_of": edges, "centre_of": edges | "Centres" >> beam.MapTuple(lambda v, m: (m, v))}
        violations = (roles | "Roles" >> beam.CoGroupByKey() | "Violations" >> beam.FlatMap(_star_violations)
                      | "CountViolations" >> beam.CombineGlobally(sum))
        rounds = self.max_iterations
        _ = violations | "CheckStars" >> beam.Map(_assert_converged, rounds)
        leaves = edges | "LeafLabels" >> beam.Distinct()
        centres = edges | "CentreLabels" >> beam.MapTuple(lambda v, m: (m, m)) | "DistinctCentres" >> beam.Distinct()
        return (leaves, centres) | "Labels" >> beam.Flatten()


class ConnectedComponents(beam.PTransform):
    """Edges -> ``(node, min node of its component)``; ``mode`` auto picks union-find when edges are few."""

    def __init__(self, mode: str = "auto", fast_path_max_edges: int = dd.FAST_PATH_MAX_EDGES,
                 max_iterations: int = dd.MAX_ITERATIONS) -> None:
        super().__init__()
        if mode not in ("auto", "single", "distributed"):
            raise ValueError(f"components must be auto, single or distributed, got {mode!r}")
        self.mode, self.limit, self.max_iterations = mode, fast_path_max_edges, max_iterations

    def expand(self, edges: beam.PCollection) -> beam.PCollection:
        mode, limit = self.mode, self.limit
        count = edges | "CountEdges" >> beam.combiners.Count.Globally()

        def single(n: int) -> bool:
            use = mode == "single" or (mode == "auto" and n <= limit)
            return use

        small = edges | "ForUnionFind" >> beam.Filter(lambda _, n: single(n), beam.pvalue.AsSingleton(count))
        large = edges | "ForStars" >> beam.Filter(lambda _, n: not single(n), beam.pvalue.AsSingleton(count))
        fast = (small | "EdgeList" >> beam.combiners.ToList()
                | "UnionFind" >> beam.FlatMap(lambda es: sorted(dd.connected_components(es).items())))
        distributed = large | "Stars" >> StarComponents(self.max_iterations)
        return (fast, distributed) | "AllLabels" >> beam.Flatten()


# ---------------------------------------------------------------------------------------------- MinHash by parts
# The clean job (pipelines/clean.py) runs MinHash without moving documents: the segment before the stage writes
# band records (node, band keys, signature, who the document is), one reduce part per bucket partition turns
# buckets into edges, one components part labels the clusters and decides each member, and each document
# partition applies the decisions. The clusters, survivors and tags are those of :class:`MinHashDedup`.

BAND_SCHEMA = pa.schema([("node", pa.int64()), ("bands", pa.list_(pa.int32())), ("keys", pa.list_(pa.int64())),
                         ("sig", pa.binary()), ("rank", pa.int32()), ("id", pa.string()), ("source", pa.string()),
                         ("part", pa.int32())])
EDGE_SCHEMA = pa.schema([("u", pa.int64()), ("v", pa.int64())])
MEMBER_SCHEMA = pa.schema([("node", pa.int64()), ("rank", pa.int32()), ("id", pa.string()), ("source", pa.string()),
                           ("part", pa.int32())])
DECISION_SCHEMA = pa.schema([("node", pa.int64()), ("label", pa.int64()), ("size", pa.int64()),
                             ("survivor", pa.string()), ("keep", pa.bool_())])


class BandRecords(beam.DoFn):
    """Document -> ``(bucket partition, band record)``: the document's bands that fall in that partition."""

    def __init__(self, stage: MinHashDedup, parts: int, part_of: Any) -> None:
        self.signatures = _Signatures(stage.params, stage.unit, stage.char_ngram, stage.char_sources,
                                      stage.cross_source, True)
        self.priority, self.verify, self.parts, self.part_of = stage.priority, stage.verify, parts, part_of

    def process(self, doc: Document) -> Iterator[tuple[str, dict[str, Any]]]:
        sig = self.signatures.signature(doc)
        if sig is None:
            return
        by_dest: dict[int, tuple[list[int], list[int]]] = {}
        for bucket in self.signatures.buckets(doc, sig):
            bands, keys = by_dest.setdefault(partition_of(repr(bucket), self.parts), ([], []))
            bands.append(bucket[-2])
            keys.append(bucket[-1])
        node = _node(doc)
        rank = dd.source_rank(doc.source, self.priority)
        for dest, (bands, keys) in sorted(by_dest.items()):
            yield f"p{dest:05d}", {"node": node, "bands": bands, "keys": keys,
                                   "sig": sig.tobytes() if self.verify else None, "rank": rank, "id": doc.id,
                                   "source": doc.source, "part": self.part_of(doc)}


def band_records(docs: beam.PCollection, stage: MinHashDedup, parts: int, part_of: Any,
                 label: str) -> beam.PCollection:
    """The band records of a segment's kept documents, keyed by bucket partition."""
    return docs | label >> beam.ParDo(BandRecords(stage, parts, part_of))


def bucket_edges_of_part(stage: MinHashDedup, paths: list[str], edges_dir: str, producer: str) -> dict[str, Any]:
    """One bucket partition: group band records by bucket, write the buckets' edges and their members."""
    buckets: dict[tuple[Any, ...], list[tuple[Node, Any]]] = {}
    members: dict[Node, dict[str, Any]] = {}
    for row in iter_part_rows(paths):
        node = row["node"]
        sig = np.frombuffer(row["sig"], dtype=np.uint32) if row["sig"] is not None else None
        for band, key in zip(row["bands"], row["keys"], strict=True):
            bucket = (band, key) if stage.cross_source else (row["source"], band, key)
            buckets.setdefault(bucket, []).append((node, sig))
        members[node] = {k: row[k] for k in ("node", "rank", "id", "source", "part")}
    threshold = stage.threshold if stage.verify else None
    edges = PartFiles(edges_dir, producer, EDGE_SCHEMA)
    linked_members = PartFiles(edges_dir, producer, MEMBER_SCHEMA)
    linked: set[Node] = set()
    n = 0
    for bucket_members in buckets.values():
        if len(bucket_members) < 2:
            continue
        for u, v in bucket_edges(bucket_members, threshold):
            edges.add("edges", {"u": u, "v": v})
            linked.update((u, v))
            n += 1
    for node in sorted(linked):
        linked_members.add("members", members[node])
    edges.close()
    linked_members.close()
    return {"edges": n}


def _decision(label: Node, size: int, best: tuple[Any, ...], node: Node) -> dict[str, Any]:
    (rank, survivor_id, survivor_source) = best
    return {"node": node, "label": label, "size": size, "survivor": f"{survivor_source}/{survivor_id}",
            "keep": rank[1] == node}


def _member_rank(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["rank"], row["node"]), row["id"], row["source"]


def union_find_decisions(edges_dir: str, out: str) -> dict[str, Any]:
    """Components by one worker's union-find (the edge count is bounded by ``fast_path_max_edges``)."""
    edges = iter_part_rows(part_files(edges_dir, "edges"), columns=["u", "v"])
    labels = dd.connected_components((r["u"], r["v"]) for r in edges)
    best: dict[Node, tuple[Any, ...]] = {}
    size: dict[Node, int] = {}
    rows: dict[Node, dict[str, Any]] = {}
    for row in iter_part_rows(part_files(edges_dir, "members")):
        node = row["node"]
        if node in rows or node not in labels:
            continue
        rows[node] = row
        label = labels[node]
        size[label] = size.get(label, 0) + 1
        rank = _member_rank(row)
        best[label] = min(best.get(label, rank), rank)
    decisions = PartFiles(out, "components", DECISION_SCHEMA)
    for node, row in sorted(rows.items()):
        label = labels[node]
        decisions.add(f"p{row['part']:05d}", _decision(label, size[label], best[label], node))
    decisions.close()
    return {"clustered": len(rows)}


class _ReadPartRows(beam.DoFn):
    def process(self, path: str) -> Iterator[dict[str, Any]]:
        yield from iter_part_rows([path])


def star_decisions(p: beam.Pipeline, stage: MinHashDedup, edges_dir: str, out: str) -> None:
    """Components by large-star/small-star rounds (:class:`StarComponents`), then the same decisions."""
    edges = (p | "EdgeFiles" >> beam.Create(part_files(edges_dir, "edges"), reshuffle=False)
             | "ReadEdges" >> beam.ParDo(_ReadPartRows()) | "Pairs" >> beam.Map(lambda r: (r["u"], r["v"]))
             | "DistinctEdges" >> beam.Distinct())
    labels = edges | "Stars" >> StarComponents(stage.components.max_iterations)
    members = (p | "MemberFiles" >> beam.Create(part_files(edges_dir, "members"), reshuffle=False)
               | "ReadMembers" >> beam.ParDo(_ReadPartRows()) | "ByNode" >> beam.Map(lambda r: (r["node"], r)))

    def labelled(item: tuple[Node, dict[str, list[Any]]]) -> Iterator[tuple[Node, tuple[Node, dict[str, Any]]]]:
        node, joined = item
        if joined["label"] and joined["member"]:
            yield joined["label"][0], (node, joined["member"][0])

    held = {"label": labels, "member": members} | "JoinMembers" >> beam.CoGroupByKey() | "Labelled" >> beam.FlatMap(
        labelled)
    info = (held | "MemberInfo" >> beam.MapTuple(lambda label, m: (label, (*_member_rank(m[1]), 1)))
            | "ClusterInfo" >> beam.CombinePerKey(_ClusterInfo()))

    def decide(item: tuple[Node, dict[str, list[Any]]]) -> Iterator[tuple[str, dict[str, Any]]]:
        label, joined = item
        (size, best), = joined["info"]
        for node, row in joined["held"]:
            yield f"p{row['part']:05d}", _decision(label, size, best, node)

    _ = ({"held": held, "info": info} | "JoinInfo" >> beam.CoGroupByKey() | "Decide" >> beam.FlatMap(decide)
         | "Write" >> WriteParts(out, "components", DECISION_SCHEMA) | "Count" >> beam.combiners.Count.Globally())


def uses_union_find(stage: MinHashDedup, n_edges: int) -> bool:
    """The components path :class:`ConnectedComponents` would take for this many edges."""
    mode, limit = stage.components.mode, stage.components.limit
    return mode == "single" or (mode == "auto" and n_edges <= limit)


def apply_clusters(docs: beam.PCollection, decisions: beam.PCollection, method: str, stage: int,
                   label: str) -> dict[str, beam.PCollection]:
    """Documents + decisions of their partition -> kept (survivors, untouched singles) and removed members."""

    def split(item: tuple[Node, dict[str, list[Any]]]) -> Iterator[Any]:
        node, joined = item
        docs_of_node = sorted(joined["docs"], key=_doc_order)
        if docs_of_node:
            yield from _apply_node(node, docs_of_node, joined["decision"][0] if joined["decision"] else None,
                                   method, stage)

    keyed = docs | f"{label}/ByNode" >> beam.Map(lambda d: (_node(d), d))
    by_node = decisions | f"{label}/DecisionByNode" >> beam.Map(lambda r: (r["node"], r))
    tagged = ({"docs": keyed, "decision": by_node} | f"{label}/Join" >> beam.CoGroupByKey()
              | f"{label}/Apply" >> beam.FlatMap(split))
    return split_tagged(tagged, (KEPT, REMOVED), f"{label}/Split")


# ------------------------------------------------------------------------------------ one partition, in Python
# The same decisions as :class:`AssignClusters` for the documents of one partition (the clean job's parts).

def assign_local(by_node: dict[Node, list[Document]], labels: dict[Node, Node], method: str, stage: int,
                 priority: Sequence[str]) -> Iterator[Any]:
    """Join ``labels`` to documents grouped by node; one survivor per cluster, tags on members, the rest removed."""
    members: dict[Node, tuple[Node, list[Document]]] = {}
    info: dict[Node, list[Any]] = {}
    for node, docs in by_node.items():
        docs = sorted(docs, key=_doc_order)
        label = labels.get(node, node if len(docs) > 1 else None)
        if label is None:
            yield KEPT, docs[0]
            continue
        members[node] = (label, docs)
        best = (dd.survivor_order(docs[0].source, node, priority), docs[0].id, docs[0].source)
        size_best = info.setdefault(label, [0, best])
        size_best[0] += len(docs)
        size_best[1] = min(size_best[1], best)
    for node, (label, docs) in members.items():
        yield from decide_cluster_member(node, label, docs, info[label], method, stage)


def exact_local(docs: Iterable[Document], stage: ExactDedup) -> Iterator[Any]:
    """:class:`ExactDedup` on the documents of one partition (every group of equal texts is inside it)."""
    by_node: dict[Node, list[Document]] = {}
    groups: dict[Any, set[Node]] = {}
    for doc in docs:
        node = _node(doc)
        by_node.setdefault(node, []).append(doc)
        text = stage.norm(doc.text)
        if text:
            key = dd.exact_key(text)
            groups.setdefault(key if stage.cross_source else (doc.source, key), set()).add(node)
    labels = {n: min(nodes) for nodes in groups.values() if len(nodes) > 1 for n in nodes}
    # a group of one node (its documents identical in source, id and text) is left to assign_local
    yield from assign_local(by_node, labels, "exact", stage.stage, stage.priority)


def apply_local(docs: Iterable[Document], decisions: dict[Node, dict[str, Any]], method: str,
                stage: int) -> Iterator[Any]:
    """The components part's decisions applied to the documents of one partition (as :func:`apply_clusters`)."""
    by_node: dict[Node, list[Document]] = {}
    for doc in docs:
        by_node.setdefault(_node(doc), []).append(doc)
    for node, group in by_node.items():
        yield from _apply_node(node, sorted(group, key=_doc_order), decisions.get(node), method, stage)


def _apply_node(node: Node, docs: list[Document], row: dict[str, Any] | None, method: str,
                stage: int) -> Iterator[Any]:
    if row is not None:
        size, survivor, keep, cluster = row["size"], row["survivor"], row["keep"], row["label"]
    elif len(docs) > 1:  # one node, several documents (equal source, id and text): one cluster
        size, survivor, keep, cluster = len(docs), f"{docs[0].source}/{docs[0].id}", True, node
    else:
        yield KEPT, docs[0]
        return
    tags = {"dup_cluster_id": dd.cluster_id(method, cluster), "dup_cluster_size": size, "dup_survivor_id": survivor}
    for i, doc in enumerate(docs):
        out = replace(doc, meta={**doc.meta, **tags})
        if i == 0 and keep:
            yield KEPT, out
        else:
            yield REMOVED, (out, f"dedup.{method}", stage)

"""Spec variants for experiments: one rule of a source's chain switched off, or one parameter swept.

The spec stays the source of truth: every variant is a whole spec (YAML) written next to the experiment's report,
so it can be read, diffed against its base and run alone (``mixlab mixture variants/<name>.yaml``).

Leave one out (:func:`leave_one_out`). The source's chain is written *expanded* (chain names such as ``c4`` replaced
by their members, as the run executes them: :func:`mixtures.chains.source_steps`), and each variant changes one
entry of that list:

- every step of the chain can be removed (``without c4_langdetect``);
- a step whose rule family has several rules behind parameters gets one variant per rule, switched off through its
  parameters (:data:`RULE_SWITCHES`: each C4 line and page rule, each Gopher and FineWeb rule).

Sweep (:func:`sweep`). ``PATH=v1,v2,...``: a dotted path into the spec's YAML (``mixture.sources.web.weight``,
``sources.web.filters.2.quality.top_percent``, ``sources.web.filters.0`` to replace a step or chain by name) and
the values, each read as YAML (``50``, ``null``, ``mc4``). List indices count the entries as written in the file.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mixtures.chains import source_steps
from mixtures.spec import Spec, SpecError, find_spec, load_spec

# step name -> (rule, what it does, the parameters that switch it off). Defaults of the rules: filters/*.py.
RULE_SWITCHES: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
    "c4_clean": [
        ("too_long_word", "remove lines with a word over 1000 characters", {"max_word_length": 10**9}),
        ("citation", "strip [1], [edit], [citation needed]", {"remove_citations": False}),
        ("no_endmark", "remove lines without a terminal punctuation mark", {"filter_no_terminal_punct": False}),
        ("too_short", "remove lines under 5 words", {"min_words_per_line": 0}),
        ("lorem_ipsum", "drop pages with 'lorem ipsum'", {"filter_lorem_ipsum": False}),
        ("javascript", "remove lines mentioning javascript", {"filter_javascript": False}),
        ("curly_bracket", "drop pages with a curly bracket", {"filter_curly_bracket": False}),
        ("policy", "remove cookie / privacy / terms-of-use lines", {"filter_policy": False}),
        ("too_few_sentences", "drop pages under 3 sentences", {"min_num_sentences": 0}),
    ],
    "gopher_repetition": [
        ("dup_para", "duplicated paragraphs (share and characters)", {"dup_para_frac": None,
                                                                      "dup_para_char_frac": None}),
        ("dup_line", "duplicated lines (share and characters)", {"dup_line_frac": None, "dup_line_char_frac": None}),
        ("top_ngrams", "most frequent 2-4-gram's character share", {"top_n_grams": []}),
        ("dup_ngrams", "duplicated 5-10-grams' character share", {"dup_n_grams": []}),
    ],
    "gopher_quality": [
        ("word_count", "50 to 100,000 words", {"min_doc_words": None, "max_doc_words": None}),
        ("mean_word_length", "mean word length 3 to 10", {"min_avg_word_length": None, "max_avg_word_length": None}),
        ("symbol_ratio", "symbols per word <= 0.1", {"max_symbol_word_ratio": None}),
        ("line_shape", "bullet lines <= 90 %, ellipsis lines <= 30 %", {"max_bullet_lines_ratio": None,
                                                                        "max_ellipsis_lines_ratio": None}),
        ("alpha_ratio", ">= 80 % of words with a letter", {"min_alpha_words_ratio": None}),
        ("stop_words", ">= 2 English stop words", {"min_stop_words": None}),
    ],
    "fineweb_quality": [
        ("line_punct", ">= 12 % of lines end in punctuation", {"line_punct_thr": None}),
        ("short_lines", "<= 67 % of lines under 30 characters", {"short_line_thr": None}),
        ("char_duplicates", "<= 1 % of characters in duplicated lines", {"char_duplicates_ratio": None}),
        ("list_ratio", "<= 0.3 newlines per word", {"new_line_ratio": None}),
    ],
}


@dataclass(frozen=True)
class Variant:
    """One spec of an experiment: its name, the rule or value it changes, and the spec's YAML data."""

    name: str
    label: str  # what is varied, for the report: "without c4_clean: javascript", "top_percent = 25"
    change: str  # where, in the spec's keys: "sources.web.filters.2.c4_clean.filter_javascript: false"
    data: dict[str, Any] = field(repr=False)
    baseline: bool = False
    value: Any = None  # the swept value (sweeps only)

    def write(self, out_dir: Path, header: str = "") -> Path:
        """Write the variant as ``out_dir/<name>.yaml`` and return the path."""
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{self.name}.yaml"
        lines = [*header.splitlines(), f"variant: {self.label}", f"change: {self.change}"]
        comment = "".join(f"# {part}\n" for line in lines for part in line.splitlines())
        path.write_text(comment + yaml.safe_dump(self.data, sort_keys=False), encoding="utf-8")
        return path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def _scalar(value: Any) -> str:
    """A value as YAML writes it inline: ``null``, ``false``, ``50``, ``[]``, ``mc4``."""
    text = yaml.safe_dump(value, default_flow_style=True, width=2**31 - 1)  # one line, however long
    return text.strip().removesuffix("...").strip()


def _entry(name: str, params: dict[str, Any]) -> Any:
    """A filters: entry as a spec writes it: the bare name without parameters, else ``{name: params}``."""
    return {name: dict(params)} if params else name


def base_data(spec_path: str | Path) -> tuple[Spec, dict[str, Any]]:
    """The loaded spec and its YAML data, with ``data_root`` made absolute so a copy may live anywhere."""
    path = find_spec(spec_path)
    spec = load_spec(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["data_root"] = str(spec.root)
    return spec, data


def expanded_chain(spec: Spec, source: str) -> list[tuple[str, dict[str, Any]]]:
    """A source's chain as the run executes it (chain names replaced by their members)."""
    if source not in spec.sources:
        raise SpecError(f"{spec.spec_path}: no source {source!r}; the spec has {', '.join(spec.sources)}")
    return [(name, dict(params)) for name, params in source_steps(spec, source)]


def rules_of(steps: list[tuple[str, dict[str, Any]]]) -> list[tuple[int, str, str, dict[str, Any] | None]]:
    """Every rule of an expanded chain: (step index, rule label, description, switch-off parameters or None).

    ``None`` means the rule is switched off by removing the step; a step with sub-rules in :data:`RULE_SWITCHES`
    gives one entry for the whole step and one per sub-rule.
    """
    out: list[tuple[int, str, str, dict[str, Any] | None]] = []
    for i, (name, _) in enumerate(steps):
        out.append((i, name, f"the whole {name} step", None))
        for rule, what, switch in RULE_SWITCHES.get(name, []):
            out.append((i, f"{name}: {rule}", what, switch))
    return out


def leave_one_out(spec_path: str | Path, source: str, rules: list[str] | None = None) -> list[Variant]:
    """The base spec (chain expanded) and one variant per rule of ``source``'s chain switched off.

    ``rules`` picks some by label (``c4_clean: javascript``, ``c4_langdetect``) or by the label's last part
    (``javascript``); unknown names are an error that lists the known ones.
    """
    spec, data = base_data(spec_path)
    steps = expanded_chain(spec, source)
    entries = [_entry(n, p) for n, p in steps]
    base = copy.deepcopy(data)
    base["sources"][source]["filters"] = entries
    variants = [Variant(spec.name, "baseline", f"sources.{source}.filters: the chain expanded, nothing switched off",
                        base, baseline=True)]
    known = rules_of(steps)
    if rules is not None:
        labels = {label for _, label, _, _ in known} | {label.split(": ")[-1] for _, label, _, _ in known}
        unknown = sorted(set(rules) - labels)
        if unknown:
            raise SpecError(f"{spec.spec_path}: sources.{source}: no rule {', '.join(unknown)}; the chain has "
                            f"{', '.join(label for _, label, _, _ in known)}")
        known = [k for k in known if k[1] in rules or k[1].split(": ")[-1] in rules]
    for i, label, what, switch in known:
        name, params = steps[i]
        new = copy.deepcopy(base)
        chain = new["sources"][source]["filters"]
        if switch is None:
            del chain[i]
            change = f"sources.{source}.filters.{i} ({name}) removed"
            slug = f"no-{name}"
        else:
            chain[i] = {name: {**params, **switch}}
            change = "; ".join(f"sources.{source}.filters.{i}.{name}.{k}: {_scalar(v)}" for k, v in switch.items())
            slug = f"no-{name}.{label.split(': ')[-1]}"
        new["name"] = f"{spec.name}--{_slug(slug)}"
        variants.append(Variant(new["name"], f"without {label} ({what})", change, new))
    return variants


def _split_values(text: str) -> list[str]:
    """Split at commas outside brackets and braces: ``"[c4],[mc4_paragraph, mc4_badwords]"`` gives two values."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char in "[{") - (char in "]}")
        if char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item.strip() for item in items if item.strip()]


def parse_sweep(text: str) -> tuple[str, list[Any]]:
    """``"PATH=v1,v2"`` -> (PATH, [v1, v2]) with each value read as YAML (YAML lists and mappings may hold commas)."""
    path, sep, values = text.partition("=")
    items = _split_values(values)
    if not sep or not path.strip() or len(items) < 2:
        raise ValueError(f"--sweep expects PATH=v1,v2[,...] with at least two values, got {text!r}")
    return path.strip(), [yaml.safe_load(v) for v in items]


def _set(data: Any, keys: list[str], value: Any, where: str) -> None:
    """Set ``data[k0][k1]...`` (list indices as integers); a bare step name followed by its own name opens it."""
    node = data
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise SpecError(f"{where}: {'.'.join(keys[:depth + 1])}: no entry {key} (the list has "
                                f"{len(node)})")
            index = int(key)
            if last:
                node[index] = value
                return
            if isinstance(node[index], str) and keys[depth + 1] == node[index]:
                node[index] = {node[index]: {}}  # "- c4_clean" -> "- c4_clean: {}" to set a parameter
            node = node[index]
        elif isinstance(node, dict):
            if last:
                node[key] = value
                return
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
        else:
            raise SpecError(f"{where}: {'.'.join(keys[:depth])} is {node!r}, not a mapping or a list")


def sweep(spec_path: str | Path, path: str, values: list[Any]) -> list[Variant]:
    """One variant per value of the parameter at ``path``; the first value is the baseline of the comparison."""
    spec, data = base_data(spec_path)
    keys = path.split(".")
    key = ".".join(keys[-2:]) if keys[-1].isdigit() and len(keys) > 1 else keys[-1]  # "filters.0", "top_percent"
    variants: list[Variant] = []
    for value in values:
        new = copy.deepcopy(data)
        _set(new, keys, copy.deepcopy(value), str(spec.spec_path))
        shown = _scalar(value)
        tag = _slug(shown) if len(_slug(shown)) <= 32 else f"value{len(variants) + 1}"
        new["name"] = f"{spec.name}--{_slug(key)}-{tag}"
        variants.append(Variant(new["name"], f"{key} = {shown}", f"{path}: {shown}", new, baseline=not variants,
                                value=value))
    if len({v.name for v in variants}) < len(variants):
        raise ValueError(f"--sweep {path}: two values give the same variant name; give distinct values")
    return variants


def write_variants(variants: list[Variant], out_dir: Path, origin: str | Path) -> list[Path]:
    """Write every variant into ``out_dir`` and check that each loads as a spec; returns the paths."""
    paths = []
    for v in variants:
        path = v.write(out_dir, header=f"variant of {origin} (mixtures/variants.py)")
        load_spec(path)  # a variant that is not a valid spec fails here, naming the file and key
        paths.append(path)
    return paths

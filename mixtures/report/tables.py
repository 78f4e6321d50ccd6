"""The one Markdown table writer of the reports (``report.md``, the ablation report, the scaling verdict)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> list[str]:
    """A pipe table as lines: ``align`` has one letter per column, ``l`` (default) or ``r`` (numbers).

    Cells are written as given (format numbers before); a ``|`` inside a cell is escaped.
    """
    if align and len(align) != len(columns):
        raise ValueError(f"align {align!r} has {len(align)} letters for {len(columns)} columns")
    rule = "|" + "|".join("---:" if (align[i:i + 1] == "r") else "---" for i in range(len(columns))) + "|"
    out = ["| " + " | ".join(columns) + " |", rule]
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"row {row!r} has {len(row)} cells for {len(columns)} columns")
        out.append("| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |")
    return out

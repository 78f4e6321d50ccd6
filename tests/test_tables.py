"""The report's one Markdown table writer."""

from __future__ import annotations

import pytest

from mixtures.report.tables import markdown_table


def test_table_aligns_numbers_right_and_escapes_pipes() -> None:
    assert markdown_table(["reason", "docs"], [("`a|b`", "1,234")], "lr") == [
        "| reason | docs |", "|---|---:|", "| `a\\|b` | 1,234 |"]


def test_rows_must_match_the_header() -> None:
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        markdown_table(["a", "b", "c"], [("x", "y")])
    with pytest.raises(ValueError, match="letters for 2 columns"):
        markdown_table(["a", "b"], [], "lrr")

"""The README's table of ``ct sql`` views names every lake table and every derived view, so
that a table added to the lake cannot go missing from what a newcomer reads first."""

from __future__ import annotations

import re
from pathlib import Path

from ct_lake.catalog import load_views
from ct_lake.tables import TABLES

README = Path(__file__).resolve().parents[2] / "README.md"


def _view_table_names() -> set[str]:
    """The names in the first column of the README's ``| view | one row per | ... |`` table."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| view | one row per |"))
    names: set[str] = set()
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        names |= set(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    return names


def test_the_readme_lists_every_table_and_view():
    listed = _view_table_names()
    assert set(TABLES) - listed == set()
    assert {view.name for view in load_views()} - listed == set()

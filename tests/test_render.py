"""Every committed notebook reads well without a kernel (GitHub, nbviewer): rendered to HTML with
nbconvert, it shows no widget reprs, no progress bars, and a static figure after every panel run."""

import re
from pathlib import Path

import nbformat
import pytest
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
JUNK = {
    "a widget repr": re.compile(r"\b(VBox|HBox|IntProgress|FloatProgress)\(|\bOutput\(\)"),
    "a progress bar": re.compile(r"\d+%\|[^|\n]*\|\s*\d+/\d+|\d+/\d+ \[\d+:\d+<"),
}


@pytest.fixture(scope="module")
def exporter():
    return HTMLExporter()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_renders_without_widget_or_progress_junk(path, exporter):
    html, _ = exporter.from_notebook_node(nbformat.read(path, as_version=4))
    for what, pattern in JUNK.items():
        found = pattern.search(html)
        assert not found, f"{path.name} shows {what} when read without a kernel: {found.group(0)!r}"


def has_figure(cell):
    return any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_panel_run_is_followed_by_a_static_figure(path):
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    for i, cell in enumerate(cells):
        if re.search(r"\bpanel\.run\(\)", cell.source):
            after = cells[i : i + 2]
            assert any(has_figure(c) for c in after), f"{path.name}: no static figure after {cell.source[:60]!r}"


def test_the_check_catches_what_it_should(exporter):
    """The patterns find the junk this test exists for (so a pass means something)."""
    assert JUNK["a widget repr"].search("VBox(children=(HTML(value='<b>x</b>'),))")
    assert JUNK["a progress bar"].search("stage1:   0%|          | 0/3 [00:00<?, ?it/s]")
    assert not any(p.search("validation accuracy 97.3% | 10 labels") for p in JUNK.values())

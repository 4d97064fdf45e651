"""The notebooks as committed: executed top to bottom, clean, and shaped like the rest of the series."""

import json
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TRAINING = [p for p in NOTEBOOKS if p.name[:2] in {"02", "03", "04", "05", "06", "07", "08", "09", "10"}]
SERIES = [
    "00_start_here",
    "01_network",
    "02_stage1_pretraining",
    "02b_contrastive",
    "03_freezing",
    "04_stage2_classifier",
    "05_finetune",
    "06_transfer",
    "07_imbalance",
    "08_evaluation",
    "09_when_does_it_help",
    "10_beyond_two_stages",
]


def load(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    return nb


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]


def test_the_series_is_complete():
    assert [p.stem for p in NOTEBOOKS][: len(SERIES)] == SERIES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_executed_top_to_bottom_with_outputs(path):
    cells = code_cells(load(path))
    counts = [c.execution_count for c in cells]
    assert counts == list(range(1, len(cells) + 1)), f"{path.name}: execution counts {counts}"
    assert any(c.outputs for c in cells), f"{path.name} was committed without outputs"
    errors = [o for c in cells for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name} holds an error output: {errors[0].get('ename')}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_clean_metadata(path):
    raw = json.loads(path.read_text())
    assert set(raw["metadata"]) <= {"kernelspec", "language_info"}, raw["metadata"].keys()
    for cell in raw["cells"]:
        assert set(cell.get("metadata", {})) <= {"tags"}, (path.name, cell.get("metadata"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_shape_of_a_lesson(path):
    nb = load(path)
    first = nb.cells[0].source
    assert first.startswith("# "), "starts with a title"
    assert "Learning goals" in first
    badge = re.search(r"mybinder\.org/v2/gh/[^)]*?urlpath=lab/tree/(notebooks/[^)\s]+\.ipynb)", first)
    assert badge and badge.group(1) == f"notebooks/{path.name}", "Binder badge points at this notebook"
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "## Summary" in prose and "## Exercises" in prose and "<details>" in prose
    assert nb.cells[1].cell_type == "markdown" or nb.cells[0].source.count("\n") > 3, "prose before code"


@pytest.mark.parametrize("path", TRAINING, ids=lambda p: p.stem)
def test_training_notebooks_have_a_panel_that_runs_headless(path):
    sources = [c.source for c in code_cells(load(path))]
    assert any(re.search(r"\b(Training|Figure)Panel\(", s) for s in sources), "a hyperparameter panel"
    assert any(".run()" in s for s in sources), "the panel runs once with its defaults, no click needed"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_varying_outputs_are_marked(path):
    """Cells that print timings or load data say so to nbval, with a cell tag (no test plumbing in the
    code a learner reads)."""
    for cell in code_cells(load(path)):
        assert not cell.source.startswith("# NBVAL"), (path.name, "use the nbval-ignore-output tag", cell.source[:60])
        text = "".join(o.get("text", "") for o in cell.outputs)
        varies = "load_mnist(" in cell.source or "perf_counter" in cell.source or "it/s]" in text
        if varies:
            assert "nbval-ignore-output" in cell.metadata.get("tags", []), (path.name, cell.source[:80])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_checks_are_visible(path):
    """A cell that asserts says what it checks in its first line, and its output is compared."""
    for cell in code_cells(load(path)):
        if re.search(r"^assert ", cell.source, re.M):
            assert cell.source.startswith("# Check:"), (path.name, cell.source[:80])
            assert "nbval-ignore-output" not in cell.metadata.get("tags", []), (path.name, cell.source[:80])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_ends_with_a_link_to_the_next_notebook(path):
    last = load(path).cells[-1]
    later = [p for p in NOTEBOOKS if p.name > path.name]
    if later:
        assert "Next →" in last.source and f"({later[0].name})" in last.source, path.name
    else:
        assert "README" in last.source or "00_start_here" in last.source, "the last one points back"


def test_every_notebook_opens_with_the_same_colab_setup_cell():
    cells = [load(path).cells[1] for path in NOTEBOOKS]
    assert all(c.cell_type == "code" and "google.colab" in c.source for c in cells)
    assert len({c.source for c in cells}) == 1, "one setup cell, the same in every notebook"
    assert all(not c.outputs for c in cells), "outside Colab it prints nothing"


def _set_repository_module(root):
    import importlib.util

    spec = importlib.util.spec_from_file_location("set_repository", ROOT / "tools" / "set_repository.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.ROOT = root
    return module


def _badges(text):
    return re.findall(r"https://mybinder\.org/v2/gh/[^)\s\"]+", text)


def _colab_badges(text):
    return re.findall(r"https://colab\.research\.google\.com/github/[^)\s\"]+", text)


def test_every_badge_opens_the_recorded_repository():
    tool = _set_repository_module(ROOT)
    slug, branch = tool.repository()
    prefix = tool.badge_prefix(slug, branch)
    for path in [ROOT / "README.md", *NOTEBOOKS]:
        text = path.read_text()
        for kind, badges, start in (("Binder", _badges(text), prefix),
                                    ("Colab", _colab_badges(text), tool.colab_prefix(slug, branch))):  # fmt: skip
            assert len(badges) == 1, f"{path.name} needs one {kind} badge, has {len(badges)}"
            for url in badges:
                assert url.startswith(start), f"{path.name}: {url} is not {start}...; run tools/set_repository.py"
                assert (ROOT / url[len(start) :]).is_file(), f"{path.name}: {url} opens a file that does not exist"
            if path.suffix == ".ipynb":
                assert url.endswith(f"notebooks/{path.name}"), f"{path.name}: its {kind} badge opens {url}"
        if path.suffix == ".ipynb":
            assert f'TWOSTAGE_REPO\\", \\"https://github.com/{slug}\\"' in text, "the setup cell clones the course"
            assert f'TWOSTAGE_REF\\", \\"{branch}\\"' in text, "the setup cell clones the ref the badge opened"


def test_set_repository_moves_every_badge(tmp_path):
    import shutil

    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copy(ROOT / "README.md", tmp_path)
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns("results", "runs"))
    tool = _set_repository_module(tmp_path)
    tool.main(["someone/course", "--branch", "dev"])
    assert tool.repository() == ("someone/course", "dev")
    assert "](https://someone.github.io/course/)" in (tmp_path / "README.md").read_text()  # the website's link
    for path in [tmp_path / "README.md", *sorted((tmp_path / "notebooks").glob("*.ipynb"))]:
        text = path.read_text()
        for url in _badges(text):
            assert url.startswith("https://mybinder.org/v2/gh/someone/course/dev?urlpath=lab/tree/"), url
        for url in _colab_badges(text):
            assert url.startswith("https://colab.research.google.com/github/someone/course/blob/dev/"), url
        assert "twostage/twostage" not in text, path.name
        if path.suffix == ".ipynb":
            assert 'TWOSTAGE_REF\\", \\"dev\\"' in text, path.name
        if path.suffix == ".ipynb":
            nbformat.validate(nbformat.read(path, as_version=4))
    with pytest.raises(SystemExit):
        tool.main(["not a slug"])

"""The notebooks on Colab's own packages: the setup cell installs the course and changes nothing else,
and the notebooks run with every panel drawn as a widget, no error and no traceback anywhere; the
unit suite passes on the same packages.

The environment is built by tools/colab_env.py from tests/colab/pip-freeze.txt, Colab's published
package list (Python 3.13 where this machine has it; ipywidgets 7.7.1, IPython 7.34, PyTorch 2.11),
once, then reused (about 75 s and 5 GB the first time, in ~/.cache/twostage/colab-env). Colab is
stood in for by a `google.colab` module that every Python process of the environment imports at
start (a sitecustomize), as Colab's kernel does; TWOSTAGE_REPO points the setup cell at this
checkout instead of GitHub. `TWOSTAGE_COLAB_PINS` names another list (the weekly CI job passes
the latest one).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from twostage_lib.widgets import WIDGET_VIEW

ROOT = Path(__file__).resolve().parents[1]
PINS = Path(os.environ.get("TWOSTAGE_COLAB_PINS") or ROOT / "tests" / "colab" / "pip-freeze.txt")
NOTEBOOKS = ["00_start_here.ipynb", "04_stage2_classifier.ipynb"]
RUN = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
nb.cells.append(nbformat.v4.new_code_cell("import twostage_lib; print(twostage_lib.__file__)"))
NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
nbformat.write(nb, sys.argv[1])
"""


def freeze(python, env) -> dict:
    out = subprocess.run([python, "-m", "pip", "freeze", "--all"], env=env, capture_output=True, text=True, check=True)
    pairs = (line.split("==", 1) if "==" in line else (line.split(" @ ")[0], line) for line in out.stdout.splitlines())
    return {name.lower().replace("-", "_"): version for name, version in pairs}


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """(python of the Colab environment, the variables that make it look like Colab, its packages before)."""
    built = subprocess.run([sys.executable, str(ROOT / "tools" / "colab_env.py"), "--pins", str(PINS)],
                           capture_output=True, text=True)  # fmt: skip
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-4000:]
    python = built.stdout.split()[-1]
    stub = tmp_path_factory.mktemp("stub")
    (stub / "google" / "colab").mkdir(parents=True)  # a namespace portion: google.protobuf still imports
    (stub / "google" / "colab" / "__init__.py").write_text("")
    (stub / "google" / "colab" / "output.py").write_text("def enable_custom_widget_manager():\n    pass\n")
    (stub / "sitecustomize.py").write_text("import google.colab  # as Colab's kernel has it imported\n")
    env = {k: v for k, v in os.environ.items() if k not in ("TWOSTAGE_DATA", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PYTHONPATH=str(stub), TWOSTAGE_REPO=str(ROOT), TWOSTAGE_CHECKPOINTS=str(stub / "checkpoints"))
    subprocess.run([python, "-m", "pip", "uninstall", "--yes", "--quiet", "twostage_lib"], env=env, check=False)
    return python, env, freeze(python, env)


@pytest.fixture(scope="module")
def executed(colab, tmp_path_factory):
    """Each notebook executed top to bottom in the Colab environment: {name: (notebook, stderr)}."""
    python, env, _ = colab
    done = {}
    for name in NOTEBOOKS:
        folder = tmp_path_factory.mktemp(name.split("_")[0])
        copy = folder / name
        copy.write_text((ROOT / "notebooks" / name).read_text())
        out = subprocess.run([python, "-c", RUN, str(copy), str(folder)], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-4000:]
        done[name] = nbformat.read(copy, as_version=4)
    return done


def test_the_environment_is_colabs(colab):
    python, _, before = colab
    wanted = {"torch": "2.11.0", "ipywidgets": "7.7.1", "ipython": "7.34.0", "numpy": "2.1.3"}
    have = {k.lower(): v for k, v in before.items()}
    assert {k: have.get(k, "").split("+")[0] for k in wanted} == wanted


def test_the_setup_cell_installs_the_course_and_changes_nothing_of_colabs(colab, executed):
    python, env, before = colab
    after = freeze(python, env)
    added = {k for k in after if k not in before}
    changed = {k: (before[k], after[k]) for k in before if after.get(k) != before[k]}
    assert added == {"twostage_lib"} and changed == {}, (added, changed)
    for name, nb in executed.items():
        where = "".join(o.get("text", "") for o in nb.cells[-1].outputs).strip()
        assert "site-packages" in where, f"{name}: the course was imported from {where}, not installed by the cell"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_output_is_clean_and_every_panel_a_widget(executed, name):
    panels = 0
    for i, cell in enumerate(executed[name].cells):
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"{name} cell {i}: {output.get('ename')}: {output.get('evalue')}"
            text = output.get("text", "") + json.dumps(output.get("data", {}))
            assert "Traceback" not in text, f"{name} cell {i} shows a traceback:\n{text[:2000]}"
            assert "<twostage_lib.widgets." not in text, f"{name} cell {i}: a panel shown as text, not a widget"
            panels += WIDGET_VIEW in output.get("data", {})
    if name != "00_start_here.ipynb":  # 00 has no panel; every training notebook has one
        assert panels >= 1, f"{name}: its panel was not drawn as a widget"


def test_the_unit_suite_passes_on_colabs_packages(colab, tmp_path_factory):
    """The library itself on Colab's versions (ipywidgets 7, IPython 7, torch 2.11, numpy 2.1), not
    only the two notebooks: the unit suite, with Colab's own pytest beside the environment (in a
    folder of its own, so the environment stays Colab's), less the tests that build environments
    or need PyPI and the browser."""
    python, env, _ = colab
    extra = tmp_path_factory.mktemp("colab-pytest")
    constraints = Path(python).parents[1] / "colab-constraints.txt"
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", str(extra),
                    "-c", str(constraints), "pytest", "nbconvert", "pyyaml", "packaging"], check=True)  # fmt: skip
    plain = {k: v for k, v in env.items() if k != "PYTHONPATH"}  # no google.colab stub: this is no notebook
    plain.update(PYTHONPATH=f"{extra}{os.pathsep}{ROOT}", TWOSTAGE_DATA=os.environ.get("TWOSTAGE_DATA", ""))
    skip = ["test_colab.py", "test_floors.py", "test_browser.py", "test_packaging.py", "test_environments.py"]
    command = [python, "-m", "pytest", "tests", "-q", "-x", "-p", "no:cacheprovider", "-o", "addopts=-ra",
               *(f"--ignore=tests/{name}" for name in skip)]  # fmt: skip
    run = subprocess.run(command, cwd=ROOT, env=plain, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]

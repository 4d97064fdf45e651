"""The notebooks open on Colab: their first code cell installs the course there and only there.

Tried here without Colab: a fresh venv in which twostage_lib is not installed (it borrows torch and
Jupyter from this one through a .pth file, so nothing is downloaded but the build backend), a
stand-in `google.colab` module, and TWOSTAGE_REPO pointing the setup cell at this checkout instead
of GitHub. Notebook 00 and a training notebook (04) must run top to bottom.
"""

import os
import site
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = """
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
nb.cells.append(nbformat.v4.new_code_cell("import twostage_lib, torch; print(twostage_lib.__file__)"))
NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
nbformat.write(nb, sys.argv[1])
"""


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """(python of a fresh venv without twostage_lib, the environment that makes it look like Colab)."""
    tmp = tmp_path_factory.mktemp("colab")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    own_site = next(venv.glob("lib/python*/site-packages"))
    (own_site / "borrowed.pth").write_text(site.getsitepackages()[0] + "\n")
    stub = tmp / "stub" / "google" / "colab"  # a namespace portion: google.protobuf still imports
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("")
    marker = tmp / "widget-manager-enabled"
    (stub / "output.py").write_text(f"def enable_custom_widget_manager():\n    open({str(marker)!r}, 'w').close()\n")
    env = {k: v for k, v in os.environ.items() if k not in ("TWOSTAGE_DATA", "PYTHONPATH")}
    env.update(PYTHONPATH=str(tmp / "stub"), TWOSTAGE_REPO=str(ROOT), TWOSTAGE_CHECKPOINTS=str(tmp / "checkpoints"))
    python = venv / "bin" / "python"
    probe = subprocess.run([python, "-c", "import importlib.util as u; print(u.find_spec('twostage_lib'))"],
                           env=env, capture_output=True, text=True, cwd=tmp)  # fmt: skip
    assert probe.stdout.strip() == "None", "the fresh venv must not see twostage_lib before the setup cell"
    return python, env, own_site, marker


@pytest.mark.parametrize("name", ["00_start_here.ipynb", "04_stage2_classifier.ipynb"])
def test_a_notebook_runs_on_colab_from_a_bare_environment(colab, tmp_path, name):
    python, env, own_site, marker = colab
    copy = tmp_path / name
    copy.write_text((ROOT / "notebooks" / name).read_text())
    out = subprocess.run([python, "-c", RUN, str(copy), str(tmp_path)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-4000:]
    last = nbformat.read(copy, as_version=4).cells[-1]
    where = "".join(o.get("text", "") for o in last.outputs).strip()
    assert where.startswith(str(own_site)), where  # installed by the setup cell, into the fresh venv
    assert marker.exists(), "the setup cell turns on Colab's widget manager for ipywidgets 8"

"""`pip install .` gives a working package: the `twostage` command, the bundled subset from
site-packages, the version from the metadata, both licences in the wheel, no build warnings."""

import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(ROOT)],
                           capture_output=True, text=True)  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    assert "Warning" not in build.stderr + build.stdout, build.stderr  # license form, package layout
    return next(out.glob("twostage_lib-*.whl"))


def test_the_wheel_holds_the_subset_and_both_licences(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "twostage_lib/bundled/mnist_subset.npz" in names and "twostage_lib/bundled/LICENSE" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    metadata = next(zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith("METADATA"))
    assert "License-Expression: MIT" in metadata and "Provides-Extra: notebooks" in metadata


def test_installed_in_a_fresh_venv_it_runs_from_site_packages(wheel, tmp_path):
    """A venv of its own (torch and friends borrowed from this one through a .pth file, so nothing is
    downloaded): the command exists, the bundled subset loads from site-packages, the version is right."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    own_site = next(venv.glob("lib/python*/site-packages"))
    (own_site / "borrowed.pth").write_text(site.getsitepackages()[0] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True)  # fmt: skip
    help_text = subprocess.run([venv / "bin" / "twostage", "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert help_text.returncode == 0 and "{run,compare}" in help_text.stdout
    code = ("import twostage_lib as ts; s = ts.load_mnist(source='bundled', verbose=False); "
            "print(ts.__file__, ts.__version__, len(s.train), len(s.test))")  # fmt: skip
    out = subprocess.run([venv / "bin" / "python", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    where, version, n_train, n_test = out.stdout.split()
    assert where.startswith(str(own_site)), where  # not this checkout
    assert (version, n_train, n_test) == ("0.1.0", "10000", "10000")

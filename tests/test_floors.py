"""The floors in pyproject.toml are true: the unit suite passes on the lowest torch, torchvision and
numpy they allow (torch 2.6 is the first with ``nn.utils.get_total_norm``, which the loop calls).

The environment is built once in ~/.cache/twostage/floor-env (about 100 s and 5 GB: PyPI's torch
is the CUDA build) and reused while pyproject.toml and the checkout's folder are unchanged; every
other package is whatever pip picks beside those three floors. The suite then runs in it, less the
tests that build environments of their own (this one, Colab's) and the browser test.
"""

import hashlib
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = Path.home() / ".cache" / "twostage" / "floor-env"


def floors() -> list[str]:
    """``name==X.Y.0`` for torch, torchvision and numpy, from pyproject.toml's ``name>=X.Y``."""
    pins = []
    for spec in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        found = re.fullmatch(r"(torch|torchvision|numpy)>=(\d+)\.(\d+)", spec.split("#")[0].strip())
        if found:
            pins.append(f"{found.group(1)}=={found.group(2)}.{found.group(3)}.0")
    assert len(pins) == 3, f"pyproject.toml should give torch, torchvision and numpy a floor: {pins}"
    return pins


def floor_env() -> Path:
    python = TARGET / "bin" / "python"
    stamp = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + str(ROOT).encode()).hexdigest()  # editable: here
    if python.exists() and (TARGET / ".built-from").is_file() and (TARGET / ".built-from").read_text() == stamp:
        return python
    shutil.rmtree(TARGET, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(TARGET)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *floors(), "-e", f"{ROOT}[notebooks,dev]"], check=True)
    (TARGET / ".built-from").write_text(stamp)
    return python


def test_the_unit_suite_passes_on_the_lowest_allowed_versions():
    python = floor_env()
    code = "import torch, torchvision, numpy; print(torch.__version__, torchvision.__version__, numpy.__version__)"
    versions = subprocess.run([python, "-c", code], capture_output=True, text=True)
    have = [v.split("+")[0] for v in versions.stdout.split()]
    assert have == [pin.split("==")[1] for pin in floors()], versions.stdout + versions.stderr
    skip = ["tests/test_floors.py", "tests/test_colab.py", "tests/test_browser.py"]
    command = [python, "-m", "pytest", "tests", "-q", "-x", "-p", "no:cacheprovider", *(f"--ignore={p}" for p in skip)]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, f"on {' '.join(floors())}:\n{run.stdout[-4000:]}{run.stderr[-2000:]}"

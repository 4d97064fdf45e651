"""Build a virtual environment with Colab's own package versions, to run the course as Colab would.

    python tools/colab_env.py [--pins tests/colab/pip-freeze.txt] [--target ~/.cache/twostage/colab-env]

Reads Colab's published ``pip freeze`` list, installs exactly its versions of what a notebook's
kernel uses (PyTorch, NumPy, Matplotlib, ipywidgets, IPython, ipykernel, TensorBoard, tqdm and the
Jupyter client that executes the notebook), with every other package of the list as a constraint,
so whatever they pull in also has Colab's version. Colab's own wheels of PyTorch (``+cpu``, from
PyTorch's index) are taken as the same release from PyPI. Python is the list's (3.13 as of
2026-08-19) when this machine has it, else this interpreter, and the script says so.

Reuses ``--target`` when it was built from the same list and Python. Prints the environment's
python on the last line. ``tests/test_colab.py`` calls it.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PINS = ROOT / "tests" / "colab" / "pip-freeze.txt"
# what a notebook's kernel imports, and what executes it (nbclient runs inside the environment)
KERNEL = ("torch", "torchvision", "numpy", "matplotlib", "ipywidgets", "ipython", "ipykernel", "tensorboard", "tqdm",
          "jupyter-client", "traitlets", "widgetsnbextension", "nbclient", "nbformat")  # fmt: skip
TARGET = Path.home() / ".cache" / "twostage" / "colab-env"  # outside the checkout: 5 GB, shared by clones
PYTHON = "3.13"  # Colab's default since 2026-08-19 (the list's "Upgrade to Python 3.13")


def normal(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict:
    """{name: version} from a ``pip freeze`` list. ``name @ url`` lines of wheels (Colab's PyTorch)
    give the wheel's version without its local part (``2.11.0+cpu`` is PyPI's ``2.11.0``); other
    direct references (Colab's own packages, git checkouts) are left out."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip() if not line.startswith("#") else ""
        if "==" in line:
            name, version = line.split("==", 1)
            found[normal(name)] = version.strip()
        elif " @ " in line:
            name, url = line.split(" @ ", 1)
            wheel = re.search(r"/[^/]+?-(\d[\w.]*?)(?:%2B|\+)[\w.]+-cp\d+", url)
            if wheel:
                found[normal(name)] = wheel.group(1)
    return found


def interpreter() -> tuple[str, str]:
    """(python to build with, a sentence saying which and why)."""
    found = [shutil.which(f"python{PYTHON}"), *sorted(Path.home().glob(f".pyenv/versions/{PYTHON}*/bin/python3"))]
    for wanted in filter(None, found):
        version = subprocess.run([wanted, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True,
                                 text=True).stdout.strip()  # fmt: skip
        if version.startswith(PYTHON):
            return str(wanted), f"Python {version}, as on Colab"
    here = ".".join(map(str, sys.version_info[:3]))
    return sys.executable, f"Python {here}: Colab's {PYTHON} is not on this machine"


def build(target: Path, pin_file: Path) -> Path:
    """The environment's python, built (or reused) from ``pin_file``."""
    python, which = interpreter()
    wanted = pins(pin_file)
    missing = [name for name in KERNEL if normal(name) not in wanted]
    if missing:
        raise SystemExit(f"{pin_file} has no version of {', '.join(missing)}: is it a Colab pip freeze list?")
    stamp = hashlib.sha256(pin_file.read_bytes() + python.encode()).hexdigest()
    env_python = target / "bin" / "python"
    if env_python.exists() and (target / ".built-from").is_file() and (target / ".built-from").read_text() == stamp:
        print(f"reusing {target} ({which})")
        return env_python
    print(f"building {target} with {which}", flush=True)
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run([python, "-m", "venv", str(target)], check=True)
    constraints = target / "colab-constraints.txt"
    # PyPI's PyTorch is the CUDA build: its NVIDIA libraries are its own, not what Colab's CPU runtime holds
    cuda = re.compile(r"(nvidia|cuda)-|triton$")
    kept = sorted((name, version) for name, version in wanted.items() if not cuda.match(name))
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in kept))
    pip = [str(env_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, f"pip=={wanted['pip']}"], check=True)
    kernel = [f"{name}=={wanted[normal(name)]}" for name in KERNEL]
    subprocess.run([*pip, "-c", str(constraints), *kernel], check=True)
    (target / ".built-from").write_text(stamp)
    return env_python


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pins", type=Path, default=PINS, help="a Colab pip freeze list (default: %(default)s)")
    parser.add_argument("--target", type=Path, default=TARGET, help="the environment's folder (default: %(default)s)")
    args = parser.parse_args(argv)
    print(build(args.target, args.pins))


if __name__ == "__main__":
    main()

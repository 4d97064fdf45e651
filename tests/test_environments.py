"""requirements.txt, environment.yml, binder/environment.yml and pyproject.toml cannot drift apart."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def pins_from_lines(lines):
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        pins[canonicalize_name(req.name)] = str(req.specifier)
    return pins


def conda_pins(path):
    env = yaml.safe_load(path.read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return pins_from_lines(pip), env


def test_three_environment_files_pin_the_same_packages():
    requirements = pins_from_lines((ROOT / "requirements.txt").read_text().splitlines())
    conda, _ = conda_pins(ROOT / "environment.yml")
    binder, _ = conda_pins(ROOT / "binder" / "environment.yml")
    assert requirements == conda, set(requirements.items()) ^ set(conda.items())
    # Binder leaves JupyterLab to repo2docker's base environment (its `notebook` pins it below 4.5)
    local_only = {"jupyterlab", "zizmor"}  # zizmor: make lint's workflow audit, no use on Binder
    assert {k: v for k, v in requirements.items() if k not in local_only} == binder, set(requirements.items()) ^ set(
        binder.items()
    )
    assert requirements["torch"] == "==2.14.1" and requirements["torchvision"] == "==0.29.1"


def test_pins_satisfy_pyproject_and_cover_every_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    requirements = pins_from_lines((ROOT / "requirements.txt").read_text().splitlines())
    for spec in declared:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in requirements, f"{name} is in pyproject.toml but not pinned in requirements.txt"
        pinned = requirements[name].removeprefix("==")
        assert req.specifier.contains(pinned), f"{name}=={pinned} does not satisfy pyproject's {req.specifier}"


def test_conda_and_binder_use_cpu_only_pytorch_and_install_the_library():
    for path in (ROOT / "environment.yml", ROOT / "binder" / "environment.yml"):
        _, env = conda_pins(path)
        pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
        index = pip.index("--extra-index-url https://download.pytorch.org/whl/cpu")
        assert index < pip.index("torch==2.14.1"), f"{path.name}: the CPU index must come before torch"
    assert "pip install --no-deps -e ." in (ROOT / "binder" / "postBuild").read_text()
    assert "-e ." in conda_pins(ROOT / "environment.yml")[1]["dependencies"][-1]["pip"]


def test_the_conda_pins_resolve(tmp_path):
    """environment.yml's pip list resolves as one set (a dry run; PyTorch left out, as for Binder's)."""
    conda, _ = conda_pins(ROOT / "environment.yml")
    ok, err = resolves([f"{name}{spec}" for name, spec in conda.items() if name not in ("torch", "torchvision")],
                       tmp_path)  # fmt: skip
    assert ok, err[-2000:]


def test_every_pin_has_a_comment():
    for path in (ROOT / "environment.yml", ROOT / "binder" / "environment.yml"):
        for line in path.read_text().splitlines():
            if re.match(r"\s+- [A-Za-z_-]+==", line):
                assert "#" in line, f"{path.name}: say why this pin is there: {line.strip()}"


def resolves(pins, tmp_path):
    """Does pip find one consistent set of packages for these pins? (a dry run: nothing is installed)"""
    (tmp_path / "pins.txt").write_text("\n".join(pins) + "\n")
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                          "-r", str(tmp_path / "pins.txt")], capture_output=True, text=True)  # fmt: skip
    return out.returncode == 0, out.stderr


def test_binder_pins_resolve_with_repo2dockers_jupyter(tmp_path):
    """repo2docker updates its base environment with binder/environment.yml's pip list: the two must
    resolve together. PyTorch and the test-only tools are left out: they touch no Jupyter package."""
    binder, _ = conda_pins(ROOT / "binder" / "environment.yml")
    heavy = {"torch", "torchvision", "tensorboard", "playwright", "ruff", "pytest", "nbval"}
    pins = [f"{name}{spec}" for name, spec in binder.items() if name not in heavy]
    base = pins_from_lines((ROOT / "binder" / "repo2docker-base.txt").read_text().splitlines())
    base_pins = [f"{name}{spec}" for name, spec in base.items() if name not in binder]
    ok, err = resolves(pins + base_pins, tmp_path)
    assert ok, err[-2000:]
    clash, _ = resolves(pins + base_pins + ["jupyterlab==4.6.6"], tmp_path)  # what binder/ pinned before
    assert not clash, "the check must catch a JupyterLab pin that the base's notebook 7.4 refuses"

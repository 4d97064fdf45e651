"""requirements.txt, environment.yml, binder/environment.yml and pyproject.toml cannot drift apart."""

import re
from pathlib import Path

import tomllib
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
    assert requirements == binder, set(requirements.items()) ^ set(binder.items())
    assert requirements["torch"] == "==2.14.1" and requirements["torchvision"] == "==0.29.1"


def test_pins_satisfy_pyproject_and_cover_every_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    requirements = pins_from_lines((ROOT / "requirements.txt").read_text().splitlines())
    for spec in declared:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in requirements, f"{name} is in pyproject.toml but not pinned in requirements.txt"
        pinned = requirements[name].removeprefix("==")
        assert req.specifier.contains(pinned), f"{name}=={pinned} does not satisfy pyproject's {req.specifier}"


def test_binder_uses_cpu_only_pytorch_and_installs_the_library():
    text = (ROOT / "binder" / "environment.yml").read_text()
    assert re.search(r"--extra-index-url https://download\.pytorch\.org/whl/cpu", text)
    assert "pip install --no-deps -e ." in (ROOT / "binder" / "postBuild").read_text()


def test_every_pin_has_a_comment():
    for path in (ROOT / "environment.yml", ROOT / "binder" / "environment.yml"):
        for line in path.read_text().splitlines():
            if re.match(r"\s+- [A-Za-z_-]+==", line):
                assert "#" in line, f"{path.name}: say why this pin is there: {line.strip()}"

"""Install the pinned PyTorch pair (requirements.txt) into the running Python.

    python tools/install_torch.py          # Linux: the CPU-only build; macOS and Windows: PyPI's (CPU) build
    python tools/install_torch.py --cuda   # PyPI's default build (on Linux: with CUDA, for an NVIDIA GPU)

The course runs on a CPU, and PyPI's Linux wheels bring CUDA and its NVIDIA libraries, gigabytes
it does not need. When PyTorch's CPU index cannot be reached (offline, a registry-only network), it
says so in one line and installs from PyPI instead, which works the same on a CPU.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
ROOT = Path(__file__).resolve().parents[1]


def pins(requirements=ROOT / "requirements.txt") -> list[str]:
    """The torch and torchvision lines of requirements.txt, as pip takes them."""
    lines = [line.split("#")[0].strip() for line in requirements.read_text().splitlines()]
    return [line for line in lines if line.split("==")[0] in ("torch", "torchvision")]


def reachable(url, version, timeout=90) -> bool:
    """Does pip itself find ``torch==version`` on the index at ``url``? pip, not a socket of our own:
    it goes through the proxy (HTTPS_PROXY, pip.conf), certificates and configuration the learner
    has. Other indexes and local wheel folders of that configuration are left out of the question."""
    with tempfile.TemporaryDirectory() as nothing:
        env = dict(os.environ, PIP_EXTRA_INDEX_URL=url, PIP_FIND_LINKS=nothing)
        command = [sys.executable, "-m", "pip", "index", "versions", "torch", "--index-url", url, "--retries", "1",
                   "--timeout", "15", "--disable-pip-version-check"]  # fmt: skip
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return False
    listed = [line for line in out.stdout.splitlines() if line.startswith("Available versions:")]
    return out.returncode == 0 and any(version in line.split(":", 1)[1].replace(" ", "").split(",") for line in listed)


def plan(cuda: bool, platform: str, index_reachable: bool) -> tuple[list[str], str]:
    """(pip arguments, the one line to print) for this machine."""
    if cuda or platform != "linux":
        return [], "PyTorch: PyPI's build" + (" (CUDA)" if cuda else " (CPU on this system)")
    if index_reachable:
        return ["--extra-index-url", CPU_INDEX], "PyTorch: the CPU-only build (make CUDA=1 for the CUDA one)"
    return [], ("PyTorch: its CPU-only index cannot be reached, so installing from PyPI instead (on Linux that is "
                "the CUDA build, about 2 GB more; it runs on the CPU all the same)")  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuda", action="store_true", help="PyPI's default build, with CUDA on Linux")
    args = parser.parse_args(argv)
    linux_cpu = not args.cuda and sys.platform == "linux"
    torch_pin = next(p for p in pins() if p.startswith("torch=="))
    extra, message = plan(args.cuda, sys.platform, linux_cpu and reachable(CPU_INDEX, torch_pin.split("==")[1]))
    print(message, flush=True)
    return subprocess.call([sys.executable, "-m", "pip", "install", *extra, *pins()])


if __name__ == "__main__":
    sys.exit(main())

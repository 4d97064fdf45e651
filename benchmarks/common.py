"""What every benchmark module shares: the paths measured, the data, the batch sizes."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from twostage_lib.mnist import full_data_dir
from twostage_lib.recipe import DEFAULT
from twostage_lib.runtime import has_fast_bf16

# the library's paths: batch size and precision ("bf16": bfloat16 autocast, the default where the
# hardware is fast at it; elsewhere only float32 is measured)
PRECISIONS = ("fp32", "bf16") if has_fast_bf16(torch.device("cpu")) else ("fp32",)
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BLOG_BATCH = 32
# the library's default batch of each stage: stage 2's head on cached features takes larger ones
DEFAULT_BATCH = {"stage1": DEFAULT.batch_size, "stage2": DEFAULT.batch_size_stage2, "finetune": DEFAULT.batch_size}


def data_root() -> Path:
    """The folder holding MNIST/raw/ ($TWOSTAGE_DATA; `make bench` sets it), as torchvision wants it."""
    folder = full_data_dir()
    if folder is not None and (folder / "train-images-idx3-ubyte").is_file() and folder.parent.name == "MNIST":
        return folder.parents[1]
    sys.exit(
        "benchmarks need the full, uncompressed MNIST raw files: set TWOSTAGE_DATA to a folder "
        "holding MNIST/raw/ (torchvision's layout)"
    )


def path_key(batch_size, precision):
    return f"{batch_size}-{precision}"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_process(*flags, env=None) -> dict:
    """The whole ``python -m twostage_lib run`` process with ``flags``, as a learner runs it: its wall
    time (import and start included), the training time it reports, its accuracy and its table."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "report.json"
        command = [sys.executable, "-m", "twostage_lib", "run", "--no-progress", *flags, "--json", str(path)]
        start = time.perf_counter()
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
        report = json.loads(path.read_text())
    return {
        "wall_seconds": wall,
        "training_seconds": report["total_seconds"],
        "final_accuracy": report["final_test_accuracy"],
        "table": out.stdout,
    }

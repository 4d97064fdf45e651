"""Run every notebook as on the smallest machine the course promises: one CPU core, one thread, no
fast bfloat16 (precision="auto" then picks float32). Record each one's wall time and its kernel's
memory: the peak RSS, and how much of it came after `import torch`.

    python -m tools.notebook_budget        # or: make notebooks-budget
    python -m tools.notebook_budget 06     # re-measure the notebooks whose names start with 06

Targets (issue: open the course anywhere): each notebook under 90 s, the series under 10 minutes,
and a kernel adding at most 400 MB to what it holds after `import torch`. Writes
notebooks/results/budget.json and the table between the budget markers in README.md. The
notebooks run on copies: the committed ones are not touched.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.report import update_readme  # the README block writer the benchmark uses too
from twostage_lib.runtime import describe_machine

ROOT = Path(__file__).resolve().parents[1]

NOTEBOOKS = ROOT / "notebooks"
RESULTS = NOTEBOOKS / "results" / "budget.json"
# The kernel's first cell: import torch, note the peak RSS, and watch its anonymous memory (RssAnon:
# tensors and Python objects, not the pages of library files the kernel maps) every 20 ms (Linux).
FIRST = """import resource, threading, time, torch
_after_import_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
def _anon_kb():
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("RssAnon"))
    except (OSError, StopIteration):
        return None
_anon = {"after_import": _anon_kb(), "peak": _anon_kb()}
def _watch():
    while _anon["peak"] is not None:
        _anon["peak"] = max(_anon["peak"], _anon_kb() or 0)
        time.sleep(0.02)
threading.Thread(target=_watch, daemon=True).start()"""
LAST = """import json, resource
_anon["peak"] = max(_anon["peak"], _anon_kb() or 0) if _anon["peak"] is not None else None
anon = {"anon_added_mb": (_anon["peak"] - _anon["after_import"]) / 1024} if _anon["peak"] is not None else {}
print("BUDGET", json.dumps({"after_import_mb": _after_import_kb / 1024,
                            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **anon}))"""
RUN = """
import sys, nbformat
from nbclient import NotebookClient

nb = nbformat.read(sys.argv[1], as_version=4)
nb.cells.insert(0, nbformat.v4.new_code_cell(sys.argv[3]))
nb.cells.append(nbformat.v4.new_code_cell(sys.argv[4]))
NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
print("".join(o.get("text", "") for o in nb.cells[-1].outputs))  # a stream may arrive in pieces
"""


FLOOR = ("import json, resource, sys\nif sys.argv[1:] == ['no-triton']:\n    sys.modules['triton'] = None\n"
         "import torch\na = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
         "torch.optim.Adam([torch.zeros(1, requires_grad=True)])\n"
         "print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - a) / 1024))")  # fmt: skip


def env_one_core(workdir: Path) -> dict:
    return dict(os.environ, TWOSTAGE_THREADS="1", OMP_NUM_THREADS="1", TWOSTAGE_NO_FAST_BF16="1",
                TWOSTAGE_CHECKPOINTS=str(workdir / "checkpoints"))  # fmt: skip


def first_optimizer_mb(workdir: Path, *args) -> float:
    """What PyTorch itself adds the first time any optimizer is built (torch.optim imports
    torch._dynamo, and with it sympy and, where it is installed, triton; importing torchvision does
    the same): part of every training notebook's figure. ``"no-triton"`` measures it as the CPU
    build has it (no triton package: torch then skips it)."""
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", FLOOR, *args], env=env_one_core(workdir),
                         capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout)


def run(path: Path, workdir: Path) -> dict:
    copy = workdir / path.name
    shutil.copy(path, copy)
    env = env_one_core(workdir)
    start = time.perf_counter()
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", RUN, str(copy), str(NOTEBOOKS), FIRST, LAST],
                         env=env, capture_output=True, text=True)  # fmt: skip
    if out.returncode != 0:  # the failing cell's error is in the kernel client's output: show it, then stop
        sys.exit(f"{path.name} failed on one core:\n{out.stderr[-6000:]}")
    seconds = time.perf_counter() - start
    memory = json.loads(out.stdout.split("BUDGET", 1)[1].strip().splitlines()[0])
    return {"seconds": seconds, **memory, "added_mb": memory["peak_mb"] - memory["after_import_mb"]}


def table(saved) -> str:
    rows = saved["notebooks"]
    lines = [f"Measured with `python -m tools.notebook_budget` on {saved['machine']}: one core (`taskset -c 0`), "
             f"one thread, float32 (no fast bfloat16), {saved['data']}, checkpoints trained as the series runs "
             "(each notebook saves the stage 1 the next ones load). Of what a training notebook adds, "
             f"{saved['first_optimizer_mb']:.0f} MB is PyTorch's own: building the first optimizer (or importing "
             "torchvision) imports torch._dynamo, sympy and triton in any kernel, measured alone in a bare process; "
             f"{saved['first_optimizer_no_triton_mb']:.0f} MB with the CPU build, which has no triton (measured "
             "here with triton hidden). The last column: the peak of the kernel's anonymous memory (its tensors "
             "and objects, without the pages of library files it maps, whose count moves between runs), read "
             "every 20 ms, less what it held after `import torch`.", "",
             "| notebook | wall time | kernel peak RSS | after `import torch` | added by the notebook | "
             "of it anonymous |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, r in rows.items():
        anon = f"{r['anon_added_mb']:.0f} MB" if "anon_added_mb" in r else "-"
        lines.append(f"| {name} | {r['seconds']:.0f} s | {r['peak_mb']:.0f} MB | {r['after_import_mb']:.0f} MB | "
                     f"{r['added_mb']:.0f} MB | {anon} |")  # fmt: skip
    total = sum(r["seconds"] for r in rows.values())
    lines.append(f"| **series** | **{total:.0f} s** | | | | |")
    return "\n".join(lines)


def main(prefixes):
    from twostage_lib.mnist import full_data_dir  # TWOSTAGE_DATA, read and checked as the notebooks read it

    data = full_data_dir()
    rows = json.loads(RESULTS.read_text())["notebooks"] if prefixes and RESULTS.is_file() else {}
    with tempfile.TemporaryDirectory() as workdir:
        for path in sorted(p for p in NOTEBOOKS.glob("*.ipynb") if not prefixes or p.name.startswith(tuple(prefixes))):
            rows[path.stem] = run(path, Path(workdir))
            r = rows[path.stem]
            anon = f"  anonymous {r['anon_added_mb']:5.0f} MB" if "anon_added_mb" in r else ""
            print(f"{path.stem:<28} {r['seconds']:6.1f} s  peak {r['peak_mb']:6.0f} MB  added {r['added_mb']:5.0f} MB"
                  f"{anon}", flush=True)  # fmt: skip
        floor = first_optimizer_mb(Path(workdir))
        floor_cpu_build = first_optimizer_mb(Path(workdir), "no-triton")
    cpu = describe_machine(torch.device("cpu"))["cpu"]  # the CPU's name: timings differ between models
    machine = f"{cpu} ({platform.machine()}), {os.cpu_count()} cores, Python {platform.python_version()}"
    saved = {"notebooks": rows, "first_optimizer_mb": floor, "first_optimizer_no_triton_mb": floor_cpu_build,
             "machine": machine,
             "data": "full MNIST" if data else "the bundled subset"}  # fmt: skip
    RESULTS.write_text(json.dumps(saved, indent=1))
    text = table(saved)
    update_readme(text, marker="budget", readme=ROOT / "README.md")
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])

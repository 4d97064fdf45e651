"""Execute notebooks top to bottom, in place, keeping outputs; print each one's wall time.

    python tools/execute_notebooks.py                 # every notebook in notebooks/
    python tools/execute_notebooks.py 02 04           # those whose names start with 02 or 04

Metadata is cleaned so diffs show only sources and outputs: no widget state, no timings.
"""

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KEEP_NB_METADATA = ("kernelspec", "language_info")


def clean(nb):
    nb.metadata = {k: v for k, v in nb.metadata.items() if k in KEEP_NB_METADATA}
    nb.metadata["language_info"] = {"name": "python"}
    for cell in nb.cells:
        cell.metadata = {k: v for k, v in cell.metadata.items() if k == "tags"}
    return nb


def execute(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}, record_timing=False
    ).execute()
    seconds = time.perf_counter() - start
    nbformat.write(clean(nb), path)
    return seconds


def main(prefixes):
    paths = sorted(p for p in NOTEBOOKS.glob("*.ipynb") if not prefixes or p.name.startswith(tuple(prefixes)))
    total = 0.0
    for path in paths:
        seconds = execute(path)
        total += seconds
        print(f"{path.name:<34} {seconds:6.1f} s", flush=True)
    print(f"{'total':<34} {total:6.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])

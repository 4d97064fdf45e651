"""Execute notebooks top to bottom, in place, keeping outputs; print each one's wall time.

    python tools/execute_notebooks.py                 # every notebook in notebooks/
    python tools/execute_notebooks.py 02 04           # those whose names start with 02 or 04
    python tools/execute_notebooks.py --check-only    # execute, write nothing, go on past a failure
                                                      # (tools/gpu_check.sh: every notebook on CUDA)

Metadata is cleaned so diffs show only sources and outputs: no widget state, no timings.
"""

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KEEP_NB_METADATA = ("kernelspec", "language_info")


def clean(nb):
    nb.metadata = {k: v for k, v in nb.metadata.items() if k in KEEP_NB_METADATA}
    nb.metadata["language_info"] = {"name": "python"}
    for cell in nb.cells:
        cell.metadata = {k: v for k, v in cell.metadata.items() if k == "tags"}
    return nb


def execute(path: Path, write=True) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}, record_timing=False
    ).execute()
    seconds = time.perf_counter() - start
    if write:
        nbformat.write(clean(nb), path)
    return seconds


def main(args) -> int:
    check_only = "--check-only" in args
    prefixes = [a for a in args if a != "--check-only"]
    paths = sorted(p for p in NOTEBOOKS.glob("*.ipynb") if not prefixes or p.name.startswith(tuple(prefixes)))
    total, failed = 0.0, []
    for path in paths:
        try:
            seconds = execute(path, write=not check_only)
        except CellExecutionError as exc:
            if not check_only:
                raise
            failed.append(path.name)
            print(f"{path.name:<34} FAILED: {str(exc).strip().splitlines()[-1][:200]}", flush=True)
            continue
        total += seconds
        print(f"{path.name:<34} {seconds:6.1f} s", flush=True)
    print(f"{'total':<34} {total:6.1f} s; {len(paths) - len(failed)} of {len(paths)} notebooks ran" +
          (f", failed: {', '.join(failed)}" if failed else ""))  # fmt: skip
    return len(failed)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

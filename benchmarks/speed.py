"""Speed benchmark: the blog's recipe against the library's in-memory path, measured in one run.

    python -m benchmarks.speed            # everything (about 10 minutes on 2 cores)
    python -m benchmarks.speed --quick    # skips the blog recipe's full 10-epoch run (about 3 minutes)
    python -m benchmarks.speed --report-only  # redraws the table and plot from results.json

Needs the full MNIST raw files ($TWOSTAGE_DATA; `make bench` sets it). Each measurement runs in its own
process so its peak memory (RSS) is its own. Samples/s and the ratios to the blog's loop come from one
process per stage that interleaves the blog's loop and the library in short rounds (a shared VM's
slow spells then hit both sides; the table gives the median ratio and its range). Writes
benchmarks/results.json, benchmarks/speed.png and the table between the bench markers in benchmarks/README.md.

Modules: common.py (paths, data, batch sizes), blog_loop.py (the blog's loop), hardware.py (FLOPs,
ceilings, what precision="auto" picks), workers.py (each measurement), report.py (table, plot).
Smaller probes behind the library's defaults: probes.py (docs/decisions.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from .common import HERE, ROOT, data_root, peak_rss_mb
from .hardware import flops_per_sample, machine_info
from .report import plot, table, update_readme
from .workers import WORKERS


def run_worker(name):
    result = WORKERS[name]()
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def measure(names) -> dict:
    results = {}
    for name in names:
        print(f"  {name} ...", end=" ", flush=True)
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.speed", "--worker", name], capture_output=True, text=True, cwd=ROOT
        )
        if out.returncode != 0:
            sys.exit(f"worker {name} failed:\n{out.stderr[-3000:]}")
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            {
                k: round(v, 3) if isinstance(v, float) else v
                for k, v in results[name].items()
                if k not in ("curve", "table")
            },
            flush=True,
        )
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the blog recipe's 10-epoch run")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: redraw the table and plot from benchmarks/results.json",
    )
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(args.worker)
    if args.report_only:
        saved = json.loads((HERE / "results.json").read_text())
    else:
        data_root()
        names = [n for n in WORKERS if not (args.quick and n == "to98/blog")]
        saved = {
            "results": measure(names),
            "flops_per_sample": flops_per_sample(),
            "command": "python -m benchmarks.speed" + (" --quick" if args.quick else ""),
            "machine": machine_info(),
        }
        (HERE / "results.json").write_text(json.dumps(saved, indent=1))
    text = table(saved)
    plot(saved["results"], HERE / "speed.png", saved["machine"]["precisions"], saved["machine"]["default_batch"])
    update_readme(text)
    print(text)


if __name__ == "__main__":
    main()

"""The label study's report: merge runs of `compare` into notebooks/results/compare.json, and write
README.md's table from it (between <!-- compare:start --> and <!-- compare:end -->).

    python -m tools.study_report --merge old.json new.json -o notebooks/results/compare.json
    python -m tools.study_report --write   # README.md's table from notebooks/results/compare.json
    python -m tools.study_report --check   # exit 1 if README.md's table differs (tests/test_layout.py)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from twostage_lib.compare import merge_studies

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "notebooks" / "results" / "compare.json"
README = ROOT / "README.md"
START, END = "<!-- compare:start -->", "<!-- compare:end -->"
SPREAD_FROM = 10  # runs: from this many, a cell shows the worst and best run instead of the std
NOTES = {"contrastive+selftrain": "notebook 10", "contrastive+propagate": "notebook 10"}
BOLD = {"contrastive+propagate"}
MARK = "†"  # a row measured on another machine than its budget's
# The study's first runs (3 seeds, every budget) predate the machine in the report; the README said it.
LEGACY_MACHINE = {"cpu": "Intel Xeon", "fast_bf16": True, "cores": 2, "device": "cpu"}


def cell(result) -> str:
    runs = [100 * r for r in result["runs"]]
    if len(runs) >= SPREAD_FROM:
        return f"{100 * result['mean']:.1f} ({min(runs):.1f}-{max(runs):.1f})"
    return f"{100 * result['mean']:.1f} ± {100 * result['std']:.1f}"


def machine_name(machine) -> str:
    if machine is None:  # runs saved before `compare` recorded its machine (2026-12-05)
        machine = LEGACY_MACHINE
    bf16 = "with" if machine["fast_bf16"] else "without"
    cpu = re.sub(r"\((R|TM)\)|( CPU)? @ .*| Processor$", "", machine["cpu"])  # Intel(R) Xeon(R) Processor
    return f"{cpu} {bf16} fast bfloat16, {machine['cores']} cores, {machine['device'].upper()}"


def seeds_line(study) -> str:
    """Budgets grouped by the seeds and the machine that measured them."""
    by_budget = study.get("seeds_by_budget") or {b: study["seeds"] for b in study["budgets"]}
    machines = study.get("machine_by_budget") or {b: study.get("machine") for b in study["budgets"]}
    groups = {}
    for budget, seeds in by_budget.items():
        groups.setdefault((tuple(seeds), machine_name(machines.get(budget))), []).append(budget)
    parts = [f"{', '.join(budgets)} labels per digit: {len(seeds)} seeds ({seeds[0]}-{seeds[-1]}) on {machine}"
             for (seeds, machine), budgets in groups.items()]  # fmt: skip
    return "; ".join(parts)


def table(study) -> str:
    budgets = study["budgets"]
    lines = [
        "Measured with `python -m twostage_lib compare` on full MNIST (`--precision auto`: bfloat16 autocast "
        "where the machine has fast bfloat16, for stage 1, self-training, and for supervised "
        "training and fine-tuning from 10 labels per digit up; float32 for the small heads and for the 10-image "
        "steps of 1 label per digit), the runs merged with `python -m tools.study_report --merge`: "
        f"{seeds_line(study)}; {study['total_seconds'] / 60:.0f} minutes of runs in all (every run merged in, "
        "the superseded runs of a re-run row included). Test accuracy (%) on all "
        f"10,000 test images: the mean ± std over the seeds, or, from {SPREAD_FROM} seeds on, the mean "
        "(worst-best run):",
        "",
        "| method | " + " | ".join(f"{b}/digit" for b in budgets) + " |",
        "|---|" + "---:|" * len(budgets),
    ]
    elsewhere = study.get("machine_by_row", {})  # rows re-run on another machine at some budgets
    for method, row in study["methods"].items():
        name = f"**{method}**" if method in BOLD else method
        notes = [NOTES[method]] if method in NOTES else []
        notes += [MARK] if method in elsewhere else []
        name += f" ({'; '.join(notes)})" if notes else ""
        lines.append(f"| {name} | " + " | ".join(cell(row[b]) if b in row else "-" for b in budgets) + " |")
    for method, machines in elsewhere.items():
        on = {}  # budgets grouped by machine
        for b, m in machines.items():
            on.setdefault(machine_name(m), []).append(b)
        where = "; ".join(f"{', '.join(budgets)}/digit on {name}" for name, budgets in on.items())
        lines += ["", f"{MARK} {method}: re-run alone, {where}."]
    return "\n".join(lines)


def rendered(readme: str, study) -> str:
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table(study)}\n{END}{tail}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--merge", nargs="+", metavar="JSON", help="reports of compare, oldest first")
    p.add_argument("-o", "--output", type=Path, help="where --merge writes")
    p.add_argument("--write", action="store_true")
    p.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    if args.merge:
        if args.output is None:
            p.error("--merge needs -o")
        merged = merge_studies(*(json.loads(Path(f).read_text()) for f in args.merge))
        args.output.write_text(json.dumps(merged, indent=2) + "\n")
    study = json.loads(STUDY.read_text())
    readme = README.read_text()
    if args.write:
        README.write_text(rendered(readme, study))
    if args.check and rendered(readme, study) != readme:
        print("README.md's study table differs from notebooks/results/compare.json: run "
              "python -m tools.study_report --write", file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

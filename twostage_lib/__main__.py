"""Command line: ``python -m twostage_lib run`` (the pipeline) and ``compare`` (the label study)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

from .checkpoint import write_atomically
from .compare import all_methods
from .data import DATASETS, SOURCES
from .loop import TrainingDiverged, stop_requested
from .models import WeightsUnavailableError
from .objectives import OBJECTIVES
from .pipeline import PipelineConfig, format_table, run_pipeline
from .runtime import PRECISIONS, select_device


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def add_data_flags(p):
    p.add_argument(
        "--data",
        choices=SOURCES,
        default="auto",
        help="auto: --data-dir or $TWOSTAGE_DATA, else download, else the bundled subset",
    )
    p.add_argument("--data-dir", help="folder in torchvision's layout (holding MNIST/raw/)")
    p.add_argument("--dataset", choices=list(DATASETS), default="mnist")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 or mps")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto: bfloat16 autocast where the hardware is fast at it and a step is big enough "
        "(default); fp32: float32 only; bf16: always",
    )
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m twostage_lib", description="Two-stage training on MNIST.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_flags(sub.add_parser("run", help="train stage 1, stage 2 and fine-tune; print a results table"))
    cmp = sub.add_parser("compare", help="label-efficiency study: two-stage vs supervised per labels budget")
    add_data_flags(cmp)
    cmp.add_argument("--labels-per-class", nargs="+", type=budget, default=["1", "10", "100", "1000", "all"],
                     help="budgets: numbers of labels per class, or 'all'")  # fmt: skip
    cmp.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    cmp.add_argument("--objectives", nargs="+", choices=list(OBJECTIVES), default=list(OBJECTIVES))
    cmp.add_argument("--methods", nargs="+", choices=all_methods(OBJECTIVES), default=None, metavar="METHOD",
                     help="run only these rows, e.g. contrastive+selftrain supervised (default: every method "
                     "but self-training on the reconstruction objectives); stage 1 trained as needed")  # fmt: skip
    return parser


def add_run_flags(run):
    """``run``'s flags: one per PipelineConfig field, its default shown."""
    defaults = PipelineConfig()
    add_data_flags(run)
    run.add_argument("--objective", choices=list(OBJECTIVES), default=defaults.objective)
    run.add_argument("--epochs-stage1", type=non_negative_int, default=defaults.epochs_stage1)
    run.add_argument("--epochs-stage2", type=non_negative_int, default=defaults.epochs_stage2)
    run.add_argument("--epochs-finetune", type=non_negative_int, default=defaults.epochs_finetune)
    run.add_argument("--batch-size", type=positive_int, default=defaults.batch_size,
                     help="stage 1 and fine-tuning (default %(default)s)")  # fmt: skip
    run.add_argument("--lr", type=positive_float, default=defaults.lr,
                     help="stage 1 and fine-tuning (default %(default)s)")  # fmt: skip
    run.add_argument("--batch-size-stage2", type=positive_int, default=defaults.batch_size_stage2,
                     help="stage 2, the head on cached features (default %(default)s)")  # fmt: skip
    run.add_argument("--lr-stage2", type=positive_float, default=defaults.lr_stage2,
                     help="stage 2 (default %(default)s: the default --lr x 4, for the 4x batch)")  # fmt: skip
    run.add_argument("--stage1-lr-scale", type=positive_float, default=defaults.stage1_lr_scale)
    run.add_argument("--no-augment", action="store_true", help="fine-tune without augmentation")
    run.add_argument("--labels-per-class", type=positive_int, default=None,
                     help="use only this many labels per class in stages 2 and 3 (default: all)")  # fmt: skip
    run.add_argument("--seed", type=int, default=defaults.seed)


def budget(text):
    if text == "all":
        return text
    positive_int(text)
    return text


def cmd_compare(args) -> int:
    from .compare import format_study, run_study
    from .data import load_mnist

    device = select_device(args.device)
    check_output_path(args.json)
    splits = load_mnist(args.data_dir, source=args.data, dataset=args.dataset)
    budgets = [None if b == "all" else int(b) for b in args.labels_per_class]
    start = time.perf_counter()
    log = print if not args.no_progress else (lambda *a: None)
    with ctrl_c_stops_the_run():
        study = run_study(splits, budgets=budgets, seeds=args.seeds, objectives=args.objectives, device=device,
                          precision=args.precision, log=log, methods=args.methods)  # fmt: skip
    study["total_seconds"] = time.perf_counter() - start
    print(format_study(study))
    print(f"total {study['total_seconds']:.0f} s" + (" (interrupted: the runs so far)" if study["interrupted"] else ""))
    return write_json(study, args.json) or (130 if study["interrupted"] else 0)


def cmd_run(args) -> int:
    names = {f.name for f in fields(PipelineConfig)}
    config = PipelineConfig(**{k: v for k, v in vars(args).items() if k in names})
    config.augment = not args.no_augment
    config.progress = not args.no_progress
    select_device(config.device)  # bad arguments and paths fail now, before any training
    check_output_path(args.json)
    with ctrl_c_stops_the_run():
        report = run_pipeline(config)
    print(format_table(report))
    return write_json(report, args.json) or (130 if report["interrupted"] else 0)


@contextmanager
def ctrl_c_stops_the_run():
    """The first Ctrl-C stops training at the end of the current step (the stages so far are kept
    and reported); a second one quits at once. The previous handler is put back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_ctrl_c(signum, frame):
        if stop_requested.is_set():
            print("\ninterrupted again: quitting now", file=sys.stderr, flush=True)
            os._exit(130)
        stop_requested.set()
        print("\ninterrupted: stopping after the current step (Ctrl-C again to quit at once)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    stop_requested.clear()
    try:
        with warnings.catch_warnings():  # the table says where training stopped: no second, longer notice
            warnings.filterwarnings("ignore", message=".*interrupted in epoch")
            yield
    finally:
        signal.signal(signal.SIGINT, previous)
        stop_requested.clear()


def check_output_path(path) -> None:
    """Fail before training, not after it: the report's path must be a file name in a writable folder."""
    if not path:
        return
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--json {path} is a folder; give a file name, e.g. {path / 'report.json'}")
    existing = next(p for p in [path.parent, *path.parent.parents] if p.exists())
    if not existing.is_dir():
        raise ValueError(f"--json {path}: {existing} is a file, not a folder; choose another path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".twostage-check-"):
            pass
    except OSError as exc:
        raise ValueError(f"--json {path}: cannot write in {path.parent} ({exc.strerror or exc}); "
                         "choose a folder you can write to") from None  # fmt: skip


def write_json(report, path) -> int:
    """Write the report atomically; if that fails after all (a disk filled up), keep it in the temp
    folder and say where. Returns the exit code: 0, or 2 when the report is not where it was asked."""
    if not path:
        return 0
    text = json.dumps(report, indent=2)
    try:
        write_atomically(path, lambda f: f.write(text.encode()))
    except OSError as exc:
        fallback = Path(tempfile.gettempdir()) / f"twostage-report-{os.getpid()}.json"
        fallback.write_text(text)
        print(f"python -m twostage_lib: error: could not write {path} ({exc.strerror or exc}); the report is "
              f"in {fallback}", file=sys.stderr)  # fmt: skip
        return 2
    print(f"report written to {path}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"run": cmd_run, "compare": cmd_compare}[args.command](args)
    except (ValueError, OSError, WeightsUnavailableError, TrainingDiverged) as exc:
        # bad input, missing data or disk, a diverging run: one line that names it and the fix (bugs keep a traceback)
        message = " ".join(str(exc).split())  # one line, whatever the message holds
        print(f"python -m twostage_lib {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

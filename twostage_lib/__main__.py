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
from .guard import TrainingDiverged
from .mnist import DATASETS, SOURCES
from .models import WeightsUnavailableError
from .objectives import OBJECTIVES
from .pipeline import PipelineConfig, format_table, run_pipeline
from .runtime import PRECISIONS, describe_machine, select_device, use_cpu_quota


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
    p.add_argument(
        "--json",
        metavar="PATH",
        help="also write the report as JSON here ('-': standard output, and the table goes to standard error)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m twostage_lib", description="Two-stage training on MNIST.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_flags(sub.add_parser("run", help="train stage 1, stage 2 and fine-tune; print a results table"))
    cmp = sub.add_parser("compare", help="label-efficiency study: two-stage vs supervised per labels budget")
    add_data_flags(cmp)
    cmp.add_argument(
        "--labels-per-class",
        nargs="+",
        type=budget,
        default=None,
        help="budgets: numbers of labels per class, or 'all' (default: 1 10 100 1000 all, less "
        "those the data cannot give)",
    )
    cmp.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    cmp.add_argument("--objectives", nargs="+", choices=list(OBJECTIVES), default=list(OBJECTIVES))
    cmp.add_argument(
        "--methods",
        nargs="+",
        choices=all_methods(OBJECTIVES),
        default=None,
        metavar="METHOD",
        help="run only these rows, e.g. contrastive+selftrain supervised (default: every method "
        "but self-training on the reconstruction objectives); stage 1 trained as needed",
    )
    return parser


def add_run_flags(run):
    """``run``'s flags: one per PipelineConfig field, its default shown."""
    defaults = PipelineConfig()
    add_data_flags(run)
    run.add_argument("--objective", choices=list(OBJECTIVES), default=defaults.objective)
    run.add_argument("--epochs-stage1", type=non_negative_int, default=defaults.epochs_stage1)
    run.add_argument("--epochs-stage2", type=non_negative_int, default=defaults.epochs_stage2)
    run.add_argument("--epochs-finetune", type=non_negative_int, default=defaults.epochs_finetune)
    stages13 = "stage 1 and fine-tuning (default %(default)s)"
    run.add_argument("--batch-size", type=positive_int, default=defaults.batch_size, help=stages13)
    run.add_argument("--lr", type=positive_float, default=defaults.lr, help=stages13)
    run.add_argument(
        "--batch-size-stage2",
        type=positive_int,
        default=defaults.batch_size_stage2,
        help="stage 2, the head on cached features (default %(default)s)",
    )
    run.add_argument(
        "--lr-stage2",
        type=positive_float,
        default=None,
        help="stage 2 (default: --lr scaled to stage 2's batch, x4 for 2048 against 512)",
    )
    run.add_argument("--stage1-lr-scale", type=positive_float, default=defaults.stage1_lr_scale)
    run.add_argument("--no-augment", action="store_true", help="fine-tune without augmentation")
    run.add_argument(
        "--labels-per-class",
        type=positive_int,
        default=None,
        help="use only this many labels per class in stages 2 and 3 (default: all)",
    )
    run.add_argument("--seed", type=int, default=defaults.seed)


def budget(text):
    if text == "all":
        return text
    positive_int(text)
    return text


def cmd_compare(args) -> int:
    from .compare import format_study, run_study
    from .mnist import load_mnist

    device = select_device(args.device)
    check_output_path(args.json)
    say = human_output(args.json)
    splits = load_mnist(args.data_dir, source=args.data, dataset=args.dataset, verbose=False)
    say(f"Data: {splits.describe()}")
    budgets = None if args.labels_per_class is None else [None if b == "all" else int(b) for b in args.labels_per_class]
    start = time.perf_counter()
    log = say if not args.no_progress else (lambda *a: None)
    with ctrl_c_stops_the_run() as stop:
        study = run_study(
            splits,
            budgets=budgets,
            seeds=args.seeds,
            objectives=args.objectives,
            device=device,
            precision=args.precision,
            log=log,
            methods=args.methods,
            stop=stop.requested,
        )
    study["total_seconds"] = time.perf_counter() - start
    study["machine"] = describe_machine(device)
    say(format_study(study))
    say(f"total {study['total_seconds']:.0f} s" + (" (interrupted: the runs so far)" if study["interrupted"] else ""))
    return write_json(study, args.json) or (stop.code if study["interrupted"] else 0)


def cmd_run(args) -> int:
    names = {f.name for f in fields(PipelineConfig)}
    config = PipelineConfig(**{k: v for k, v in vars(args).items() if k in names})
    config.augment = not args.no_augment
    config.progress = not args.no_progress
    select_device(config.device)  # bad arguments and paths fail now, before any training
    check_output_path(args.json)
    say = human_output(args.json)
    with ctrl_c_stops_the_run() as stop:
        report = run_pipeline(config, log=say, stop=stop.requested)
    say(format_table(report))
    return write_json(report, args.json) or (stop.code if report["interrupted"] else 0)


def human_output(json_path):
    """Where the table and progress lines go: standard output, or standard error when the JSON
    report goes to standard output (``--json -``), so that a pipe receives the JSON alone."""
    stream = sys.stderr if json_path == "-" else sys.stdout
    return lambda *parts: print(*parts, file=stream, flush=True)


class Stop:
    """A run's stop request: ``requested`` (a ``threading.Event``, the loop's ``LoopSettings.stop``)
    is set by the first stop signal; ``code`` is the exit status that says which (130 for Ctrl-C,
    143 for SIGTERM, 128 + the signal's number), 130 when nothing was signalled (an API interrupt)."""

    def __init__(self):
        self.code = 130
        self.requested = threading.Event()


# The signals that stop a run the way the first Ctrl-C does: SIGTERM is what kill, timeout, Docker
# and job schedulers send; SIGHUP a closed terminal (not on Windows).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextmanager
def ctrl_c_stops_the_run():
    """The first Ctrl-C (or SIGTERM, or SIGHUP) stops training at the end of the current step: the
    stages or runs so far are kept and reported, and the exit status names the signal. A second one
    quits at once. The previous handlers are put back afterwards."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def on_signal(signum, frame):
        name = "interrupted" if signum == signal.SIGINT else f"{signal.Signals(signum).name} received"
        if stop.requested.is_set():
            print(f"\n{name} again: quitting now", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        stop.code = 128 + signum
        stop.requested.set()
        print(f"\n{name}: stopping after the current step (again to quit at once)", file=sys.stderr, flush=True)

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        with warnings.catch_warnings():  # the table says where training stopped: no second, longer notice
            warnings.filterwarnings("ignore", message=".*interrupted in epoch")
            yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def check_output_path(path) -> None:
    """Fail before training, not after it: the report's path must be a file name in a writable folder,
    ``-`` (standard output), or a special file you may write to (``/dev/stdout``, a pipe). A symlink
    is followed: its target is what gets written."""
    if not path or path == "-":
        return
    path = Path(os.path.realpath(Path(path).expanduser()))
    if path.exists() and not path.is_file() and not path.is_dir():
        if not os.access(path, os.W_OK):
            raise ValueError(f"--json {path}: you may not write to it; choose another path")
        return
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
        raise ValueError(
            f"--json {path}: cannot write in {path.parent} ({exc.strerror or exc}); choose a folder you can write to"
        ) from None


def write_json(report, path) -> int:
    """Write the report atomically; if that fails after all (a disk filled up), keep it in the temp
    folder and say where. Returns the exit code: 0, or 2 when the report is not where it was asked."""
    if not path:
        return 0
    text = json.dumps(report, indent=2)
    if path == "-":
        print(text, flush=True)
        return 0
    try:
        write_atomically(path, lambda f: f.write(text.encode()))
    except OSError as exc:
        fallback = Path(tempfile.gettempdir()) / f"twostage-report-{os.getpid()}.json"
        fallback.write_text(text)
        reason = exc.strerror or exc
        print(
            f"python -m twostage_lib: error: could not write {path} ({reason}); the report is in {fallback}",
            file=sys.stderr,
        )
        return 2
    print(f"report written to {path}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    use_cpu_quota()  # the process starts here: torch's threads follow the CPU quota
    try:
        return {"run": cmd_run, "compare": cmd_compare}[args.command](args)
    except (ValueError, OSError, WeightsUnavailableError, TrainingDiverged) as exc:
        # bad input, missing data or disk, a diverging run: one line that names it and the fix (bugs keep a traceback)
        message = " ".join(str(exc).split())  # one line, whatever the message holds
        print(f"python -m twostage_lib {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

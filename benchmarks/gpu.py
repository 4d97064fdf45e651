"""The GPU at its limit: each stage's epoch time, steps a second and share of the launch floor.

    python -m benchmarks.gpu                  # on a CUDA GPU: prints the table, writes benchmarks/gpu.json
    python -m benchmarks.gpu --device cpu --quick --epochs 2   # the same measurements on the CPU

For each stage at its default batch (stage 1 contrastive, stage 2 on cached features, fine-tuning
with augmentation, and self-training as the study's propagate row runs it: a label for every image,
as its spread labels give, with overrule and VAT): epochs timed with CUDA events (on a GPU) and the
wall clock in three ways, interleaved, so their ratios come from one run: each batch's step
replayed from a CUDA graph (the default on a GPU: twostage_lib/step.py), step by step with the loss
read once an epoch (``cuda_graph=False``), and step by step with the loss read on the host every step
(``read_every_step=True``). The launches a step makes from the host (torch.profiler: kernels,
copies, graph replays) times the cost of one launch (a tiny kernel, timed back to back) is the
launch floor, the least a step can take however fast the arithmetic. On a CPU no graph is recorded:
the first two ways are then the same training.

A fourth way, once a stage (the first round; --no-compile leaves it out): the network's two stages
compiled with ``torch.compile(mode="reduce-overhead")`` (on a GPU its CUDA graphs), step
by step otherwise, with the compiler's caches off, as on a learner's first run. The time of a stage
as a run trains it (its epochs in ``RUN``; self-training's in ``PROPAGATE``), set-up, recording and
compiling included, says which of the recorded graph and the compiler wins. A compiler that fails
is reported, not fatal.

Before the stages (left out with --quick), the issue's headline figures: the whole ``python -m
twostage_lib run`` as a process, import and CUDA start included, the same process training no epoch
(what is not training), and a fresh process's start part by part (``start_up``). The JSON is written
after each part, so a run cut short keeps what it measured; stopped by Ctrl-C (or tools/gpu_check.sh's
time limit), it ends with the stages measured so far, marked interrupted: a stage cut short is
dropped, not measured. The data: ``load_mnist``'s (``--data``; $TWOSTAGE_DATA names the full files).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

import twostage_lib as ts
from benchmarks.common import DEFAULT_BATCH, run_process
from twostage_lib.recipe import PROPAGATE, RUN, SELFTRAIN
from twostage_lib.runtime import describe_machine, select_device

HERE = Path(__file__).resolve().parent
RUN_STAGES = ("stage1", "stage2", "finetune")  # what `python -m twostage_lib run` trains
STAGES = (*RUN_STAGES, "selftrain")
MODES = {  # the loop's settings for each way of running a step
    "graph": dict(read_every_step=False, cuda_graph=True),
    "step by step": dict(read_every_step=False, cuda_graph=False),
    "read every step": dict(read_every_step=True, cuda_graph=False),
    "compiled": dict(read_every_step=False, cuda_graph=False),  # and the network compiled (compile_network)
}
# the epochs a stage trains in `python -m twostage_lib run` (3 + 6 + 25: the 34-epoch run;
# fine-tuning may stop earlier) and in the study's propagate row (self-training)
RUN_EPOCHS = {
    "stage1": RUN.epochs_stage1,
    "stage2": RUN.epochs_stage2,
    "finetune": RUN.epochs_finetune,
    "selftrain": PROPAGATE.epochs,
}


def launch_us(device, n=2000) -> float:
    """Microseconds one tiny kernel (an in-place add on one number) takes when launched back to back."""
    x = torch.zeros(1, device=device)
    for _ in range(50):
        x.add_(1)
    sync(device)
    start = time.perf_counter()
    for _ in range(n):
        x.add_(1)
    sync(device)
    return (time.perf_counter() - start) / n * 1e6


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# where a fresh process's start goes, in the order `python -m twostage_lib run` meets it
START_UP = """
import json, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import twostage_lib as ts
t2 = time.perf_counter()
torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # the first optimizer: PyTorch imports torch._dynamo
t3 = time.perf_counter()
device = ts.select_device("{device}")
torch.zeros(1, device=device).sum().item()  # CUDA's start, on a GPU
t4 = time.perf_counter()
ts.load_mnist(verbose=False)
t5 = time.perf_counter()
print(json.dumps(dict(import_torch=t1 - t0, import_twostage_lib=t2 - t1, first_optimizer=t3 - t2,
                      device_start=t4 - t3, load_data=t5 - t4)))
"""


START_UP_PARTS = {
    "import_torch": "import torch",
    "import_twostage_lib": "import twostage_lib",
    "first_optimizer": "the first optimizer",
    "device_start": "the device's start",
    "load_data": "the data",
}


def start_up(device) -> dict:
    """Seconds of a fresh process's start, part by part (``START_UP``), measured in a new process."""
    code = START_UP.format(device=device)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def batch_of(stage) -> int:
    """Images a step: the stage's default batch; for self-training, its unlabelled images a step."""
    return SELFTRAIN.batch_size * SELFTRAIN.unlabelled_ratio if stage == "selftrain" else DEFAULT_BATCH[stage]


def compile_network(model) -> None:
    """Compile the network's two stages, as a learner would: each replaced by ``torch.compile(stage,
    mode="reduce-overhead")`` (CUDA graphs of the compiled forward and backward, on a GPU; the same
    parameters). The objective's projection and the loss stay as they are. Dynamo's record of earlier
    models is cleared first, so each run compiles from scratch. (Not ``stage.compile()`` in place: in
    the version-floor environment (torch 2.6) and Colab's (torch 2.11, Python 3.13) that compiled
    nothing, silently; a run that compiles nothing is reported as a failure.)"""
    torch._dynamo.reset()
    model.stage1 = torch.compile(model.stage1, mode="reduce-overhead")
    model.stage2 = torch.compile(model.stage2, mode="reduce-overhead")


def train(stage, model, data, device, epochs, mode):
    """One stage's run at the library's defaults, a step run the ``mode`` way (``MODES``); its History."""
    if mode == "compiled":
        compile_network(model)
        import torch._inductor.config as inductor

        # every variant compiled (two stages, training and evaluation, each batch shape): past dynamo's
        # default of 8 a function, the rest would run eagerly and the compiled way would not be measured
        config = torch._dynamo.config
        limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # its name before 2.7
        with (
            inductor.patch(force_disable_caches=True),
            config.patch(**{limit: 64}),
            warnings.catch_warnings(),
        ):
            warnings.filterwarnings("ignore", message="dynamo_pgo force disabled")  # what the line above asks
            return train(stage, model, data, device, epochs, "step by step")
    loop = dict(epochs=epochs, device=device, progress=False, **MODES[mode])
    if stage == "selftrain":
        history = ts.selftrain(model, data, data, overrule=PROPAGATE.overrule, vat=PROPAGATE.vat, **loop)
    else:
        loop["batch_size"] = DEFAULT_BATCH[stage]
        if stage == "stage1":
            history = ts.train_stage1(model, data, objective="contrastive", lr=RUN.lr, **loop)
        elif stage == "stage2":
            history = ts.train_stage2(model, data, lr=RUN.lr_stage2, **loop)
        else:
            history = ts.finetune(model, data, lr=RUN.lr, augment=True, **loop)
    if history.interrupted:  # the loop keeps a Ctrl-C's epochs; here a run cut short is no measurement
        raise KeyboardInterrupt
    return history


def timed(stage, model, data, device, epochs, mode) -> dict:
    """Seconds an epoch after the first (wall clock, and CUDA events on a GPU) for one run; the first
    epoch's (recording or compiling in it); the whole call's (set-up such as stage 2's feature cache
    included) and what the stage would take over its epochs in a run (``RUN_EPOCHS``)."""
    events = [torch.cuda.Event(enable_timing=True) for _ in range(2)] if device.type == "cuda" else None
    if events:
        events[0].record()
    from torch._dynamo.utils import counters

    counters.clear()
    start = time.perf_counter()
    history = train(stage, model, data, device, epochs, mode)
    sync(device)
    call = time.perf_counter() - start
    if events:
        events[1].record()
        sync(device)
    graphs = counters["stats"]["unique_graphs"]
    if mode == "compiled":
        torch._dynamo.reset()  # nothing compiled stays behind for the other ways' runs
        if graphs == 0:
            raise RuntimeError("torch.compile compiled nothing: the network ran eagerly")
    epoch = statistics.median(history["seconds"][1:] or history["seconds"])
    out = {
        "epoch_s": epoch,
        "first_epoch_s": history["seconds"][0],
        "call_s": call,
        "stage_s": call + (RUN_EPOCHS[stage] - len(history)) * epoch,
        "precision": history.precision,
        "graphed": history.graphed,
        "compiled_graphs": graphs,  # what torch.compile compiled (recompiles too)
    }
    if events:  # the whole run on the GPU's own clock, the first epoch included
        out["run_gpu_s"] = events[0].elapsed_time(events[1]) / 1000
    return out


LAUNCHES = ("LaunchKernel", "GraphLaunch", "Memcpy", "Memset")  # the CUDA runtime's calls that start GPU work


def launches(stage, model, data, device, epochs, mode) -> int:
    """Launches a run makes from the host (on a GPU: kernels, copies, graph replays) or operators it
    dispatches (on the CPU), counted by torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        train(stage, model, data, device, epochs, mode)
        sync(device)
    if device.type == "cuda":
        return sum(1 for e in prof.events() if e.name.startswith("cu") and any(w in e.name for w in LAUNCHES))
    return sum(1 for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None)


def launches_per_step(stage, start, data, device, batch, mode) -> float:
    """Launches a step once training runs (after the first epoch, which records the graph): the
    launches of two short epochs less those of one, over the second epoch's steps."""
    small = data.subset(torch.arange(min(len(data), 8 * batch)))
    counts = []
    for epochs in (1, 2):
        model = ts.TwoStageNetwork(in_features=data.num_features)
        model.load_state_dict(start.state_dict())
        counts.append(launches(stage, model, small, device, epochs, mode))
    return (counts[1] - counts[0]) / math.ceil(len(small) / batch)


def measure_stage(stage, data, device, epochs, rounds, compiled=True) -> dict:
    """The three ways of running a step (``MODES``), interleaved ``rounds`` times from the same start;
    the compiled way once, in the first round (its cost is mostly the compiling), unless ``compiled``
    is False. A compiler that fails leaves its error in ``compile_error``."""
    ts.seed_everything(0)
    start = ts.TwoStageNetwork(in_features=data.train.num_features).to(device)
    batch = batch_of(stage)
    # untimed: what the process does once (PyTorch's lazy imports, first kernels) is not any one way's cost
    train(
        stage,
        ts.TwoStageNetwork(in_features=data.train.num_features),
        data.train.subset(torch.arange(min(2 * batch, len(data.train)))),
        device,
        1,
        "step by step",
    )
    runs = {mode: [] for mode in MODES}
    compile_error = None
    for round_ in range(rounds):
        for mode in MODES:
            if mode == "compiled" and (round_ > 0 or not compiled):
                continue
            model = ts.TwoStageNetwork(in_features=data.train.num_features)
            model.load_state_dict(start.state_dict())
            try:
                runs[mode].append(timed(stage, model, data.train, device, epochs, mode))
            except Exception as exc:  # the compiler's failure is a finding; the other ways still count
                if mode != "compiled":
                    raise
                compile_error = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
    steps = math.ceil(len(data.train) / batch)
    epoch = {mode: statistics.median(r["epoch_s"] for r in runs[mode]) for mode in MODES if runs[mode]}
    median = {
        key: {m: statistics.median(r[key] for r in runs[m]) for m in runs if runs[m]}
        for key in ("first_epoch_s", "stage_s")
    }
    per_step = {m: launches_per_step(stage, start, data.train, device, batch, m) for m in ("graph", "step by step")}
    out = {
        "stage": stage,
        "batch": batch,
        "steps_per_epoch": steps,
        "precision": runs["graph"][0]["precision"],
        "graphed": runs["graph"][0]["graphed"],
        "epoch_s": epoch["graph"],
        "epoch_s_step_by_step": epoch["step by step"],
        "epoch_s_read_every_step": epoch["read every step"],
        "graph_speedup": epoch["step by step"] / epoch["graph"],
        "read_every_step_ratio": epoch["read every step"] / epoch["step by step"],
        "steps_per_s": steps / epoch["graph"],
        "ms_per_step": epoch["graph"] / steps * 1000,
        "launches_per_step": per_step["graph"],
        "launches_per_step_step_by_step": per_step["step by step"],
        "run_epochs": RUN_EPOCHS[stage],
        "first_epoch_s": median["first_epoch_s"],
        "stage_s": median["stage_s"],
        "epoch_s_compiled": epoch.get("compiled"),
        "compiled_graphs": runs["compiled"][0]["compiled_graphs"] if runs["compiled"] else None,
        "compile_error": compile_error,
    }
    if device.type == "cuda":  # the whole run on the GPU's own clock
        out["run_gpu_s"] = {mode: statistics.median(r["run_gpu_s"] for r in runs[mode]) for mode in runs if runs[mode]}
    return out


def format_table(result) -> str:
    launch = result["launch_us"]
    lines = [
        f"Measured with `{result['command']}` on {result['device_name']} ({result['torch']}); one launch "
        f"{launch:.1f} us. Launches a step: from the host, with the graph (step by step); the launch floor is "
        "what they cost at one launch's time, as a share of a step.",
        "",
        "| stage | batch | precision | graph | epoch | steps/s | ms/step | launches/step | launch floor "
        "| graph speed-up | read every step |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["stages"]:
        floor = r["launches_per_step"] * launch / 1000 / r["ms_per_step"]
        lines.append(
            f"| {r['stage']} | {r['batch']} | {r['precision']} | {'yes' if r['graphed'] else 'no'} | "
            f"{r['epoch_s']:.3f} s | {r['steps_per_s']:,.0f} | {r['ms_per_step']:.2f} | "
            f"{r['launches_per_step']:.0f} ({r['launches_per_step_step_by_step']:.0f}) | {floor:.0%} | "
            f"{r['graph_speedup']:.2f}x | {r['read_every_step_ratio']:.2f}x |"
        )
    if result["stages"]:
        lines += ["", *compile_table(result["stages"])]
    if "run" in result:
        run, idle = result["run"], result["run_no_epochs"]
        lines += [
            "",
            f"`python -m twostage_lib run`: {run['wall_seconds']:.1f} s as a process, {run['training_seconds']:.1f} s "
            f"inside it, test accuracy {run['final_accuracy']:.2%}. The same process training no epoch (import, "
            f"start, data, evaluation): {idle['wall_seconds']:.1f} s. Its start, part by part: "
            + ", ".join(f"{START_UP_PARTS[part]} {sec:.2f} s" for part, sec in result["start_up"].items())
            + ".",
        ]
    return "\n".join(lines)


def compile_table(stages) -> list:
    """Recorded graph or torch.compile: each stage over its epochs in a run, set-up and recording or
    compiling included, and the issue's 34-epoch run (stage 1, stage 2, fine-tuning)."""
    lines = [
        "A stage as a run trains it (its epochs), set-up, recording or compiling included: the recorded "
        'graph, the same steps one by one, and the network under torch.compile(mode="reduce-overhead").',
        "",
        "| stage | epochs | first epoch: graph / compiled | epoch: graph / compiled "
        "| stage: graph / step by step / compiled |",
        "|---|---:|---:|---:|---:|",
    ]

    def seconds(value):
        return "-" if value is None else f"{value:.2f} s"

    for r in stages:
        first, stage = r["first_epoch_s"], r["stage_s"]
        compiled = [seconds(first.get("compiled")), seconds(r["epoch_s_compiled"]), seconds(stage.get("compiled"))]
        if r["compile_error"]:
            compiled = ["failed"] * 3
        lines.append(
            f"| {r['stage']} | {r['run_epochs']} | {seconds(first['graph'])} / {compiled[0]} | "
            f"{seconds(r['epoch_s'])} / {compiled[1]} | {seconds(stage['graph'])} / "
            f"{seconds(stage['step by step'])} / {compiled[2]} |"
        )
    run = [r for r in stages if r["stage"] in RUN_STAGES]
    total = {m: sum(r["stage_s"].get(m, math.nan) for r in run) for m in ("graph", "step by step", "compiled")}
    lines += [
        "",
        f"The {sum(r['run_epochs'] for r in run)}-epoch run's stages: "
        + ", ".join(f"{m} {'-' if math.isnan(t) else f'{t:.1f} s'}" for m, t in total.items())
        + ".",
    ]
    graphs = ", ".join(f"{r['stage']} {r['compiled_graphs']}" for r in stages if r["compiled_graphs"] is not None)
    if graphs:
        lines.append(f"Graphs torch.compile compiled (a recompile adds one): {graphs}.")
    for r in stages:
        if r["compile_error"]:
            lines.append(f"torch.compile failed in {r['stage']}: {r['compile_error']}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:1 or cpu")
    parser.add_argument("--epochs", type=int, default=4, help="epochs a run (the first is not timed)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the three ways of running a step")
    parser.add_argument("--quick", action="store_true", help="leave out the whole run as a process")
    parser.add_argument("--no-compile", action="store_true", help="leave out the network under torch.compile")
    parser.add_argument("--images", type=int, default=None, help="train on the first N training images (default: all)")
    parser.add_argument("--data", choices=("auto", "full", "bundled"), default="auto", help="load_mnist's source")
    parser.add_argument("--json", default=str(HERE / "gpu.json"), help="where to write the figures")
    args = parser.parse_args(argv)
    device = select_device(args.device)
    ts.use_cpu_quota()
    data = ts.load_mnist(source=args.data, verbose=False)
    if args.images is not None:
        data.train = data.train.subset(torch.arange(min(args.images, len(data.train))))
    result = {
        "command": "python -m benchmarks.gpu" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else describe_machine(device)["cpu"],
        "torch": torch.__version__,
        "data": f"{len(data.train):,} training images",
        "launch_us": launch_us(device),
        "stages": [],
    }

    def save(done):  # after each part: a run cut short (a GPU lent for minutes) keeps what it measured
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        print(f"measured: {done}", flush=True)

    def process(*options):  # `python -m twostage_lib run` as a process: its figures, less the table
        return {k: v for k, v in run_process("--device", str(device), *options).items() if k != "table"}

    if not args.quick:  # the headline figures first: the whole process, then the same without training
        result["run"] = process()
        result["run_no_epochs"] = process(*(a for s in RUN_STAGES for a in (f"--epochs-{s}", "0")))
        result["start_up"] = start_up(device)
        save("the run as a process")
    try:
        for stage in STAGES:
            result["stages"].append(measure_stage(stage, data, device, args.epochs, args.rounds, not args.no_compile))
            save(stage)
    except KeyboardInterrupt:  # Ctrl-C, or tools/gpu_check.sh's time limit: the stages measured so far
        result["interrupted"] = True
        save(f"interrupted after {len(result['stages'])} of {len(STAGES)} stages")
        print(format_table(result))
        return 130
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

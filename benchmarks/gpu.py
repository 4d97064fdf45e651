"""The GPU at its limit: each stage's epoch time, steps a second and share of the launch floor.

    python -m benchmarks.gpu                  # on a CUDA GPU: prints the table, writes benchmarks/gpu.json
    python -m benchmarks.gpu --device cpu --quick --epochs 2   # the same measurements on the CPU

For each stage at its default batch (stage 1 contrastive, stage 2 on cached features, fine-tuning
with augmentation): epochs timed with CUDA events (on a GPU) and the wall clock, the loss read on
the host every step against once an epoch (``LoopSettings.read_every_step``), interleaved, so their
ratio comes from one run; the kernels a step launches (torch.profiler) times the cost of one launch
(a tiny kernel, timed back to back) is the launch floor, the least a step can take however fast the
arithmetic. Then the whole ``python -m twostage_lib run`` as a process, import and CUDA start
included (left out with --quick). The data: ``load_mnist``'s (``--data``; $TWOSTAGE_DATA names the full files).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

import twostage_lib as ts
from benchmarks.common import DEFAULT_BATCH, run_process
from twostage_lib.recipe import RUN
from twostage_lib.runtime import describe_machine, select_device

HERE = Path(__file__).resolve().parent
STAGES = ("stage1", "stage2", "finetune")


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


def train(stage, model, data, device, epochs, every_step):
    """One stage's run at the library's defaults; returns its History."""
    loop = dict(
        epochs=epochs, batch_size=DEFAULT_BATCH[stage], device=device, progress=False, read_every_step=every_step
    )
    if stage == "stage1":
        return ts.train_stage1(model, data, objective="contrastive", lr=RUN.lr, **loop)
    if stage == "stage2":
        return ts.train_stage2(model, data, lr=RUN.lr_stage2, **loop)
    return ts.finetune(model, data, lr=RUN.lr, augment=True, **loop)


def timed(stage, model, data, device, epochs, every_step) -> dict:
    """Seconds an epoch after the first (wall clock, and CUDA events on a GPU) for one run."""
    events = [torch.cuda.Event(enable_timing=True) for _ in range(2)] if device.type == "cuda" else None
    if events:
        events[0].record()
    history = train(stage, model, data, device, epochs, every_step)
    if events:
        events[1].record()
        sync(device)
    walls = history["seconds"][1:] or history["seconds"]
    out = {"epoch_s": statistics.median(walls), "precision": history.precision}
    if events:  # the whole run on the GPU's own clock, the first epoch included
        out["run_gpu_s"] = events[0].elapsed_time(events[1]) / 1000
    return out


def ops_per_step(stage, model, data, device, batch) -> float:
    """Kernels launched (on a GPU) or operators dispatched (on the CPU) a step, over one short epoch."""
    from torch.profiler import ProfilerActivity, profile

    small = data.subset(torch.arange(min(len(data), 4 * batch)))
    steps = math.ceil(len(small) / batch)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        train(stage, model, small, device, 1, False)
        sync(device)
    events = prof.events()
    if device.type == "cuda":
        count = sum(1 for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    else:
        count = sum(1 for e in events if e.name.startswith("aten::") and e.cpu_parent is None)
    return count / steps


def measure_stage(stage, data, device, epochs, rounds) -> dict:
    """Both ways of reading the loss, interleaved ``rounds`` times from the same start."""
    ts.seed_everything(0)
    start = ts.TwoStageNetwork(in_features=data.train.num_features).to(device)
    train_data = data.train
    batch = DEFAULT_BATCH[stage]
    runs = {True: [], False: []}
    for _ in range(rounds):
        for every_step in (True, False):
            model = ts.TwoStageNetwork(in_features=data.train.num_features)
            model.load_state_dict(start.state_dict())
            runs[every_step].append(timed(stage, model, train_data, device, epochs, every_step))
    steps = math.ceil(len(train_data) / batch)
    fast = statistics.median(r["epoch_s"] for r in runs[False])
    slow = statistics.median(r["epoch_s"] for r in runs[True])
    model = ts.TwoStageNetwork(in_features=data.train.num_features)
    model.load_state_dict(start.state_dict())
    ops = ops_per_step(stage, model, train_data, device, batch)
    return {
        "stage": stage,
        "batch": batch,
        "steps_per_epoch": steps,
        "precision": runs[False][0]["precision"],
        "epoch_s": fast,
        "epoch_s_read_every_step": slow,
        "read_every_step_ratio": slow / fast,
        "steps_per_s": steps / fast,
        "ms_per_step": fast / steps * 1000,
        "ops_per_step": ops,
        **({"run_gpu_s": statistics.median(r["run_gpu_s"] for r in runs[False])} if device.type == "cuda" else {}),
    }


def format_table(result) -> str:
    launch = result["launch_us"]
    lines = [
        f"Measured with `{result['command']}` on {result['device_name']} ({result['torch']}); one launch "
        f"{launch:.1f} us.",
        "",
        "| stage | batch | precision | epoch | steps/s | ms/step | kernels/step | launch floor | read every step |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["stages"]:
        floor = r["ops_per_step"] * launch / 1000 / r["ms_per_step"]
        lines.append(
            f"| {r['stage']} | {r['batch']} | {r['precision']} | {r['epoch_s']:.3f} s | {r['steps_per_s']:,.0f} | "
            f"{r['ms_per_step']:.2f} | {r['ops_per_step']:.0f} | {floor:.0%} | {r['read_every_step_ratio']:.2f}x |"
        )
    if "run" in result:
        run = result["run"]
        lines += [
            "",
            f"`python -m twostage_lib run`: {run['wall_seconds']:.1f} s as a process, {run['training_seconds']:.1f} s "
            f"inside it, test accuracy {run['final_accuracy']:.2%}.",
        ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:1 or cpu")
    parser.add_argument("--epochs", type=int, default=4, help="epochs a run (the first is not timed)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of both ways of reading")
    parser.add_argument("--quick", action="store_true", help="leave out the whole run as a process")
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
        "stages": [measure_stage(s, data, device, args.epochs, args.rounds) for s in STAGES],
    }
    if not args.quick:
        result["run"] = {k: v for k, v in run_process("--device", str(device)).items() if k != "table"}
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Speed benchmark: the seeds' recipe against the library's in-memory path, measured in one run.

    python benchmarks/speed.py            # everything (about 10 minutes on 2 cores)
    python benchmarks/speed.py --quick    # skips the seed recipe's full 10-epoch run (about 3 minutes)
    python benchmarks/speed.py --report-only  # redraws the table and plot from results.json

Needs the full MNIST raw files (TWOSTAGE_DATA or ../shared/data). Each measurement runs in its own
process so its peak memory (RSS) is its own. Samples/s and the ratios to the seeds come from one
process per stage that interleaves the seeds' loop and the library in short rounds (a shared VM's
slow spells then hit both sides; the table gives the median ratio and its range). Writes benchmarks/results.json, benchmarks/speed.png
and the table between the bench markers in README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

from twostage_lib.training import DEFAULT_BATCH_SIZE, STAGE2_BATCH_SIZE, has_fast_bf16

# the library's paths: batch size and precision ("bf16": bfloat16 autocast, the default where the
# hardware is fast at it, as on this CPU; elsewhere only float32 is measured)
PRECISIONS = ("fp32", "bf16") if has_fast_bf16(torch.device("cpu")) else ("fp32",)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SEED_BATCH = 32
# the library's default batch of each stage: stage 2's head on cached features takes larger ones
DEFAULT_BATCH = {"stage1": DEFAULT_BATCH_SIZE, "stage2": STAGE2_BATCH_SIZE, "finetune": DEFAULT_BATCH_SIZE}
WINDOW, WINDOWS = 1.5, 3  # the seeds' loader: best of 3 windows of 1.5 s of stepping


# ---------------------------------------------------------------- shared pieces

def data_root() -> Path:
    for root in (os.environ.get("TWOSTAGE_DATA"), ROOT.parent / "shared" / "data"):
        if root and (Path(root) / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
            return Path(root)
    sys.exit("benchmarks need the full, uncompressed MNIST raw files: set TWOSTAGE_DATA to a folder "
             "holding MNIST/raw/ (torchvision's layout)")


def linear_flops(layers, input_needs_grad=False) -> float:
    """Forward + backward FLOPs per sample of a stack of Linear layers (multiply-add = 2 FLOPs).

    Forward: 2·in·out per layer. Backward: 2·in·out for the weight gradient, and 2·in·out for the
    input gradient of every layer except the first when its input needs no gradient.
    """
    total = 0.0
    for i, layer in enumerate(layers):
        macs = layer.in_features * layer.out_features
        total += 2 * macs + 2 * macs + (2 * macs if (i > 0 or input_needs_grad) else 0)
    return total


def linears(*modules):
    return [m for module in modules for m in module.modules() if isinstance(m, nn.Linear)]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# ---------------------------------------------------------------- the seeds' path

def seeds_loader(batch_size=SEED_BATCH):
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    train = datasets.MNIST(str(data_root()), train=True, transform=transform, download=False)
    return torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True)


def seeds_step(stage, model, optimizer, decoder=None):
    """One training step as the seeds write it, for stage1, stage2 or finetune (slide 5).

    With a ``decoder``, stage 1 uses a real reconstruction loss in the seeds' loop (the same work
    as the library's autoencoder step); without one, the seeds' zero loss as written.
    """
    mse, ce = nn.MSELoss(), nn.CrossEntropyLoss()

    def step(inputs, labels):
        inputs = inputs.view(inputs.size(0), -1)
        optimizer.zero_grad()
        if stage == "stage1" and decoder is not None:
            loss = mse(decoder(model.stage1(inputs)), inputs)
        elif stage == "stage1":
            features = model.stage1(inputs)
            loss = mse(features, features.detach())
        elif stage == "stage2":
            loss = ce(model.stage2(model.stage1(inputs).detach()), labels)
        else:
            loss = ce(model(inputs), labels)
        loss.backward()
        optimizer.step()
        return loss.item()  # the seeds' running_loss += loss.item()
    return step


class SeedsLoop:
    """The seeds' training loop for one stage, timed in windows of stepping (epochs restart as needed)."""

    def __init__(self, stage, fixed_loss):
        import twostage_lib as ts
        from twostage_lib.models import decoder_for

        ts.seed_everything(0)
        model = ts.TwoStageNetwork()
        decoder = decoder_for(model) if fixed_loss else None
        params = list(model.parameters()) + (list(decoder.parameters()) if decoder else [])
        self.step = seeds_step(stage, model, torch.optim.Adam(params, lr=1e-3), decoder)
        self.loader = seeds_loader()
        self.batches = iter(self.loader)

    def next_batch(self):
        try:
            return next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            return next(self.batches)

    def window(self, seconds=WINDOW):
        """Samples per second over ``seconds`` of stepping."""
        seen, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            inputs, labels = self.next_batch()
            self.step(inputs, labels)
            seen += len(labels)
        return seen / (time.perf_counter() - start)


def worker_seeds(stage, fixed_loss=False):
    loop = SeedsLoop(stage, fixed_loss)
    for _ in range(20):  # warm-up
        loop.step(*loop.next_batch())
    return {"samples_per_s": max(loop.window() for _ in range(WINDOWS))}


# ---------------------------------------------------------------- the library's path

def library_data():
    import twostage_lib as ts

    splits = ts.load_mnist(data_root(), source="full", verbose=False)
    return splits, splits.train


def library_epochs(stage, model, train, epochs, batch_size, precision="auto"):
    """``epochs`` of the library's ``stage`` on CPU (stage 1: the autoencoder; stage 2: cached
    features, built outside the timed epochs); returns its History."""
    import twostage_lib as ts

    common = dict(epochs=epochs, batch_size=batch_size, device="cpu", progress=False, precision=precision)
    if stage == "stage1":
        return ts.train_stage1(model, train, objective="autoencoder", **common)
    if stage == "stage2":
        return ts.train_stage2(model, train, **common)
    return ts.finetune(model, train, **common)


def worker_library(stage, batch_size):
    import twostage_lib as ts

    _, train = library_data()
    ts.seed_everything(0)
    h = library_epochs(stage, ts.TwoStageNetwork(), train, 3, batch_size)
    seconds = min(h["seconds"])  # the fastest of 3 epochs: least disturbed by other processes
    return {"samples_per_s": len(train) / seconds, "epoch_seconds": seconds}


def worker_cache(batch_size, rounds=5, network="mlp", n_images=None):
    """Stage-2 epochs recomputing stage 1 and on cached features, interleaved; the fastest of each,
    and the time to build the cache once. ``network="resnet18"``: the transfer network (slide 12,
    random weights, 64 pixels) on the first ``n_images``, its times scaled to a full epoch."""
    import twostage_lib as ts

    _, train = library_data()
    epoch_size = len(train)
    if n_images:
        train = train.subset(torch.arange(n_images))
    ts.seed_everything(0)
    build = ts.TwoStageNetwork if network == "mlp" else lambda: ts.TransferTwoStageNetwork(weights=None)
    models = {cache: build() for cache in (False, True)}
    times = {False: [], True: [], "build": []}
    x, _ = train.on("cpu")
    for _ in range(rounds):
        for cache, model in models.items():
            h = ts.train_stage2(model, train, epochs=1, batch_size=batch_size, device="cpu", progress=False,
                                cache_features=cache)
            times[cache].append(h["seconds"][0])  # the epoch alone; building the cache is not in it
        start = time.perf_counter()
        ts.stage1_features(models[True], x)
        times["build"].append(time.perf_counter() - start)
    scale = epoch_size / len(train)
    out = {"recomputed": min(times[False]) * scale, "cached": min(times[True]) * scale,
           "build": min(times["build"]) * scale, "network": network, "measured_images": len(train)}
    out["speedup"] = out["recomputed"] / out["cached"]
    return out


def worker_paired(stage, rounds=5, seconds=1.5):
    """The seeds' loop and the library at batch 32 and at the default batch (in each precision),
    interleaved in one process: each round times a window of each, so a slow spell of the machine
    hits them all. Returns the median rate of each and the median of the per-round ratios to the seeds."""
    import statistics

    import twostage_lib as ts

    seeds = SeedsLoop(stage, fixed_loss=stage == "stage1")  # stage 1: the fixed loss, same work as ours
    _, train = library_data()
    paths = [(bs, precision) for bs in (SEED_BATCH, DEFAULT_BATCH[stage]) for precision in PRECISIONS]
    models = {path: ts.TwoStageNetwork() for path in paths}
    epochs = {path: 1 for path in paths}

    def library_window(path):
        h = library_epochs(stage, models[path], train, epochs[path], *path)
        rate = len(train) * len(h["seconds"]) / sum(h["seconds"])
        epochs[path] = max(1, round(seconds * rate / len(train)))  # next window: about `seconds` long
        return rate

    seeds.window(0.3)  # warm-up
    for path in paths:
        library_window(path)
    rates = {"seeds": [], **{path: [] for path in paths}}
    for _ in range(rounds):
        rates["seeds"].append(seeds.window(seconds))
        for path in paths:
            rates[path].append(library_window(path))
    out = {"seeds": statistics.median(rates["seeds"])}
    for path in paths:
        ratios = [r / s for r, s in zip(rates[path], rates["seeds"])]
        key = path_key(*path)
        out[f"library{key}"] = statistics.median(rates[path])
        out[f"ratio{key}"] = statistics.median(ratios)
        out[f"ratio{key}_range"] = [min(ratios), max(ratios)]
    return out


def path_key(batch_size, precision):
    return f"{batch_size}-{precision}"


# ---------------------------------------------------------------- time to 98 % test accuracy

class Clock:
    """Training time only: evaluation after each epoch is timed and subtracted.

    ``test`` is (x, y) normalized the way the model was trained.
    """

    def __init__(self, model, test, target=0.98):
        self.model, self.test, self.target = model, test, target
        self.start, self.paused, self.reached, self.curve = time.perf_counter(), 0.0, None, []

    def check(self, stage):
        import twostage_lib as ts

        t0 = time.perf_counter()
        accuracy = ts.evaluate_model(self.model, self.test).accuracy
        self.paused += time.perf_counter() - t0
        elapsed = time.perf_counter() - self.start - self.paused
        self.curve.append((elapsed, accuracy, stage))
        if self.reached is None and accuracy >= self.target:
            self.reached = elapsed
        return self.reached is not None

    def summary(self, final_accuracy=None):
        return {"seconds_to_98": self.reached, "final_accuracy": final_accuracy or self.curve[-1][1],
                "training_seconds": self.curve[-1][0], "curve": self.curve}


def worker_to98_seeds():
    """The seed blog's script as written: batch 32, 5 epochs of stage 1, then 5 of stage 2."""
    import twostage_lib as ts

    splits, _ = library_data()
    ts.seed_everything(0)
    model = ts.TwoStageNetwork()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    # the blog normalizes with Normalize((0.5,), (0.5,)): test it the same way
    x_test = (splits.test.images.reshape(-1, 784).float() / 255 - 0.5) / 0.5
    clock = Clock(model, (x_test, splits.test.labels))
    loader = seeds_loader()
    for stage in ("stage1", "stage2"):
        step = seeds_step(stage, model, optimizer)
        for _ in range(5):
            model.train()
            for inputs, labels in loader:
                step(inputs, labels)
            clock.check(stage)
    return clock.summary()


def worker_to98_supervised():
    import twostage_lib as ts

    splits, train = library_data()
    ts.seed_everything(0)
    model = ts.TwoStageNetwork()
    clock = Clock(model, splits.test)

    def on_epoch(record):  # returns None: all 15 epochs run
        clock.check("supervised")

    ts.train_supervised(model, train, epochs=15, lr=2e-3, scheduler="cosine", device="cpu", progress=False,
                        callback=on_epoch)
    return clock.summary()


def worker_to98_pipeline(precision="auto"):
    import twostage_lib as ts
    from twostage_lib.pipeline import PipelineConfig, run_pipeline

    splits, _ = library_data()
    ts.seed_everything(0)
    model = ts.TwoStageNetwork()
    clock = Clock(model, splits.test)

    def on_epoch(stage, record):  # returns None: the pipeline runs to its end
        if stage != "stage1":
            clock.check(stage)

    report = run_pipeline(PipelineConfig(device="cpu", progress=False, precision=precision), splits=splits,
                          model=model, on_epoch=on_epoch)
    return clock.summary(report["final_test_accuracy"])


def worker_cli():
    """The whole `python -m twostage_lib run` process, wall time, as a learner runs it."""
    start = time.perf_counter()
    env = dict(os.environ, TWOSTAGE_DATA=str(data_root()))
    out = subprocess.run([sys.executable, "-m", "twostage_lib", "run", "--no-progress", "--json",
                          str(HERE / "cli_report.json")], env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    report = json.loads((HERE / "cli_report.json").read_text())
    (HERE / "cli_report.json").unlink()
    return {"wall_seconds": wall, "final_accuracy": report["final_test_accuracy"], "table": out.stdout}


# ---------------------------------------------------------------- the ceiling

def worker_ceiling():
    """Measured matmul throughput of this machine (FLOP/s) in each precision, at its best square size."""
    torch.manual_seed(0)
    out = {}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if precision not in PRECISIONS:
            continue
        best = 0.0
        for n in (512, 1024, 2048):
            a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
            for _ in range(3):
                a @ b
            reps = max(3, int(4e10 / (2 * n ** 3)))
            start = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - start))
        out[precision] = best
    return {"flops": out, "gemm_only": gemm_only_rates()}


def stage_layers(net=None):
    """The Linear layers each stage trains: stage 1 with its decoder (the autoencoder step), the
    head alone on cached features, the whole network when fine-tuning."""
    import twostage_lib as ts
    from twostage_lib.models import decoder_for

    net = net or ts.TwoStageNetwork()
    return {"stage1": linears(net.stage1, decoder_for(net)), "stage2": linears(net.stage2), "finetune": linears(net)}


def gemm_only_rates(repeats=5):
    """The other ceiling: samples/s if a training step were nothing but its own matrix products.

    For each stage, batch size and precision, the step's forward and backward products (the shapes
    ``linear_flops`` counts) run back to back on ready tensors, with nothing else between them.
    Small matrices run below the square-matrix ceiling; this measures how far, on this machine.
    """
    import torch.nn.functional as F

    torch.manual_seed(0)
    rates = {}
    for stage, layers in stage_layers().items():
        shapes = [(l.in_features, l.out_features) for l in layers]
        for bs in (SEED_BATCH, DEFAULT_BATCH[stage]):
            for precision in PRECISIONS:
                dtype = torch.bfloat16 if precision == "bf16" else torch.float32
                xs = [torch.randn(bs, i, dtype=dtype) for i, _ in shapes]
                ws = [torch.randn(o, i, dtype=dtype) for i, o in shapes]
                gs = [torch.randn(bs, o, dtype=dtype) for _, o in shapes]

                def step():
                    for x, w in zip(xs, ws):
                        F.linear(x, w)  # forward
                    for k, (x, w, g) in enumerate(zip(xs, ws, gs)):
                        g.t().mm(x)  # weight gradient
                        if k > 0:
                            g.mm(w)  # input gradient (the first layer's input needs none)

                for _ in range(20):
                    step()
                reps = max(20, int(2e9 / (bs * linear_flops(layers))))  # about 2 GFLOP a timing
                best = float("inf")
                for _ in range(repeats):
                    start = time.perf_counter()
                    for _ in range(reps):
                        step()
                    best = min(best, (time.perf_counter() - start) / reps)
                rates[f"{stage}/{path_key(bs, precision)}"] = bs / best
    return rates


WORKERS = {
    "seeds/stage1-as-written": lambda: worker_seeds("stage1"),
    "seeds/stage1": lambda: worker_seeds("stage1", fixed_loss=True),
    "seeds/stage2": lambda: worker_seeds("stage2"),
    "seeds/finetune": lambda: worker_seeds("finetune"),
    "library32/stage1": lambda: worker_library("stage1", SEED_BATCH),
    "library32/stage2": lambda: worker_library("stage2", SEED_BATCH),
    "library32/finetune": lambda: worker_library("finetune", SEED_BATCH),
    "library/stage1": lambda: worker_library("stage1", DEFAULT_BATCH["stage1"]),
    "library/stage2": lambda: worker_library("stage2", DEFAULT_BATCH["stage2"]),
    "library/finetune": lambda: worker_library("finetune", DEFAULT_BATCH["finetune"]),
    "paired/stage1": lambda: worker_paired("stage1"),
    "paired/stage2": lambda: worker_paired("stage2"),
    "paired/finetune": lambda: worker_paired("finetune"),
    "cache": lambda: worker_cache(DEFAULT_BATCH["stage2"]),
    "cache/resnet18": lambda: worker_cache(DEFAULT_BATCH["stage2"], rounds=2, network="resnet18", n_images=2048),
    "to98/seeds": worker_to98_seeds,
    "to98/supervised": worker_to98_supervised,
    "to98/pipeline": worker_to98_pipeline,
    "to98/pipeline-fp32": lambda: worker_to98_pipeline("fp32"),
    "cli": worker_cli,
    "ceiling": worker_ceiling,
}


def run_worker(name):
    result = WORKERS[name]()
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


# ---------------------------------------------------------------- report

def default_precisions(batch_size=DEFAULT_BATCH_SIZE):
    """What precision="auto" picks on this machine for each stage at ``batch_size``."""
    from twostage_lib.training import resolve_precision

    weights = {stage: sum(p.numel() for l in layers for p in l.parameters()) for stage, layers in stage_layers().items()}
    return {stage: resolve_precision("auto", torch.device("cpu"), n * batch_size) for stage, n in weights.items()}


def flops_per_sample():
    import twostage_lib as ts

    net = ts.TwoStageNetwork()
    return {
        **{stage: linear_flops(layers) for stage, layers in stage_layers(net).items()},
        "seeds_stage1-as-written": linear_flops(linears(net.stage1)),
        "seeds_stage2": 2 * sum(l.in_features * l.out_features for l in linears(net.stage1)) + linear_flops(linears(net.stage2)),
    }


def measure(names) -> dict:
    results = {}
    for name in names:
        print(f"  {name} ...", end=" ", flush=True)
        out = subprocess.run([sys.executable, __file__, "--worker", name], capture_output=True, text=True,
                             cwd=ROOT)
        if out.returncode != 0:
            sys.exit(f"worker {name} failed:\n{out.stderr[-3000:]}")
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in results[name].items()
               if k not in ("curve", "table")}, flush=True)
    return results


def machine_info() -> dict:
    """The machine a run measures, saved with its results so that a redrawn table names it."""
    cpu = platform.processor()
    if Path("/proc/cpuinfo").is_file():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"machine": platform.machine(), "cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "precisions": list(PRECISIONS),
            "default_batch": DEFAULT_BATCH,
            "defaults": {str(bs): default_precisions(bs) for bs in sorted({SEED_BATCH, *DEFAULT_BATCH.values()})}}


def table(saved) -> str:
    """The README's table from a saved run (results.json): its numbers, its machine, its command."""
    results, flops, command = saved["results"], saved["flops_per_sample"], saved["command"]
    machine = saved["machine"]
    precisions = machine["precisions"]
    peak = results["ceiling"]["flops"]
    ceilings = ", ".join(f"{p} {peak[p] / 1e9:.0f}" for p in precisions)
    defaults = {int(bs): d for bs, d in machine["defaults"].items()}
    default_batch = machine["default_batch"]
    default = (f"batch {SEED_BATCH}: " + ", ".join(f"{stage} {p}" for stage, p in defaults[SEED_BATCH].items())
               + "; default batch: " + ", ".join(f"{stage} {defaults[bs][stage]} ({bs})"
                                                 for stage, bs in default_batch.items()))
    cpu = f" ({machine['cpu']})" if machine.get("cpu") else ""
    lines = [f"Measured with `{command}` on {machine['machine']}{cpu}, {machine['cores']} cores, "
             f"torch {machine['torch']}, {machine['threads']} threads; "
             f"matmul ceiling (GFLOP/s): {ceilings}. The library's default precision there (`precision=\"auto\"`): {default}.", "",
             "| path | stage | batch | precision | samples/s | vs seeds | FLOPs/sample (fwd+bwd) | of ceiling | of GEMM-only | peak RSS |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    gemm = results["ceiling"].get("gemm_only", {})
    for stage in ("stage1", "stage2", "finetune"):
        paired = results[f"paired/{stage}"]  # rates and ratios from one process, interleaved
        seeds = paired["seeds"]
        rows = [("seeds: per-sample DataLoader", f"seeds/{stage}", SEED_BATCH, "fp32",
                 flops.get(f"seeds_{stage}", flops[stage]), seeds, None)]
        if stage == "stage1":
            rows[0] = ("seeds: per-sample DataLoader, loss fixed (autoencoder)", *rows[0][1:])
            rows.insert(0, ("seeds: as written (zero loss, no decoder), own process", "seeds/stage1-as-written",
                            SEED_BATCH, "fp32", flops["seeds_stage1-as-written"],
                            results["seeds/stage1-as-written"]["samples_per_s"], None))
        for bs in (SEED_BATCH, default_batch[stage]):
            solo = f"library32/{stage}" if bs == SEED_BATCH else f"library/{stage}"
            for precision in precisions:
                key = path_key(bs, precision)
                rows.append(("library: in-memory", solo, bs, precision, flops[stage], paired[f"library{key}"], key))
        for label, rss_key, batch, precision, f, rate, key in rows:
            ratio = f"{rate / seeds:.1f}x"
            if key is not None:
                low, high = paired[f"ratio{key}_range"]
                ratio = f"**{paired[f'ratio{key}']:.1f}x** ({low:.1f}-{high:.1f})"
            shown = f"{precision} (default)" if key is not None and precision == defaults[batch][stage] else precision
            of_gemm = f"{rate / gemm[f'{stage}/{key}']:.0%}" if key is not None and f"{stage}/{key}" in gemm else ""
            lines.append(f"| {label} | {stage} | {batch} | {shown} | {rate:,.0f} | {ratio} | {f / 1e6:.3f} M | "
                         f"{rate * f / peak[precision]:.0%} | {of_gemm} | {results[rss_key]['peak_rss_mb']:.0f} MB |")
    lines += ["", "Rates are medians of 5 interleaved rounds in one process (1.5 s of the seeds' loop, then "
              "about 1.5 s of each library path); \"vs seeds\" is the median of the per-round ratios, "
              "with their range. \"Of ceiling\" divides by the matmul ceiling of the path's own precision "
              "(large square matrices); \"of GEMM-only\" divides by the rate the same step would run at if it "
              "were only its own matrix products, at their own shapes and precision (`gemm_only_rates`). "
              "Peak RSS comes from each path run alone in its own process, at the default precision."]
    c = results["cache"]
    lines += ["", f"Stage 2, one epoch at its default batch ({default_batch['stage2']}): recomputing stage 1 {c['recomputed']:.3f} s, "
              f"cached features {c['cached']:.3f} s: **{c['speedup']:.1f}x** faster; building the cache once "
              f"takes {c['build']:.3f} s."]
    if "cache/resnet18" in results:
        r = results["cache/resnet18"]
        lines[-1] += (f" With the transfer network's ResNet-18 as stage 1 (slide 12; random weights, 64 pixels; "
                      f"timed on {r['measured_images']:,} images and scaled to 60,000): recomputing "
                      f"{r['recomputed']:.0f} s, cached {r['cached']:.2f} s, **{r['speedup']:.0f}x**; "
                      f"building the cache {r['build']:.0f} s.")
    lines += ["",
              "| time to 98% test accuracy (training only) | reached after | final test accuracy | training time | peak RSS |",
              "|---|---:|---:|---:|---:|"]
    names = {"to98/seeds": "seed blog's script as written (batch 32, 5 + 5 epochs)",
             "to98/supervised": "library, supervised from scratch (15 epochs, cosine)",
             "to98/pipeline": "library, two-stage defaults (`python -m twostage_lib run`)",
             "to98/pipeline-fp32": "library, two-stage defaults with `--precision fp32`"}
    for key, label in names.items():
        if key not in results:
            continue
        r = results[key]
        reached = f"{r['seconds_to_98']:.1f} s" if r["seconds_to_98"] is not None else "never"
        lines.append(f"| {label} | {reached} | {r['final_accuracy']:.2%} | {r['training_seconds']:.1f} s | "
                     f"{r['peak_rss_mb']:.0f} MB |")
    cli = results["cli"]
    lines += ["", f"Whole `python -m twostage_lib run` process (defaults, full MNIST): "
              f"**{cli['wall_seconds']:.1f} s** wall, final test accuracy {cli['final_accuracy']:.2%}."]
    return "\n".join(lines)


def plot(results, path, precisions, default_batch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    stages = ["stage1", "stage2", "finetune"]
    # each bar: its label and, per stage, the key of its rate in that stage's paired results
    bars = [("seeds' loop, batch 32", {s: "seeds" for s in stages})]
    bars += [(f"library, batch 32, {p}", {s: f"library{path_key(SEED_BATCH, p)}" for s in stages})
             for p in precisions]
    bars += [(f"library, default batch, {p}", {s: f"library{path_key(default_batch[s], p)}" for s in stages})
             for p in precisions]
    width = 0.8 / len(bars)
    for i, (label, keys) in enumerate(bars):
        left.bar([s + i * width for s in range(3)], [results[f"paired/{s}"][keys[s]] for s in stages], width,
                 label=label)
    left.set_xticks([s + 0.4 - width / 2 for s in range(3)], stages)
    left.set_yscale("log")
    left.set_ylabel("training samples / s")
    left.legend()
    for key in ("to98/seeds", "to98/supervised", "to98/pipeline", "to98/pipeline-fp32"):
        if key in results:
            curve = results[key]["curve"]
            right.plot([c[0] for c in curve], [c[1] for c in curve], marker="o", label=key.split("/")[1])
    right.axhline(0.98, color="k", linestyle="--", linewidth=1)
    right.set_xlabel("training seconds")
    right.set_ylabel("test accuracy")
    right.set_ylim(0.85, 1.0)
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def update_readme(text):
    readme = ROOT / "README.md"
    content = readme.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start in content and end in content:
        head, rest = content.split(start, 1)
        readme.write_text(head + start + "\n" + text + "\n" + end + rest.split(end, 1)[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the seed recipe's 10-epoch run")
    parser.add_argument("--report-only", action="store_true",
                        help="measure nothing: redraw the table and plot from benchmarks/results.json")
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(args.worker)
    if args.report_only:
        saved = json.loads((HERE / "results.json").read_text())
    else:
        data_root()
        names = [n for n in WORKERS if not (args.quick and n == "to98/seeds")]
        saved = {"results": measure(names), "flops_per_sample": flops_per_sample(),
                 "command": "python benchmarks/speed.py" + (" --quick" if args.quick else ""),
                 "machine": machine_info()}
        (HERE / "results.json").write_text(json.dumps(saved, indent=1))
    text = table(saved)
    plot(saved["results"], HERE / "speed.png", saved["machine"]["precisions"], saved["machine"]["default_batch"])
    update_readme(text)
    print(text)


if __name__ == "__main__":
    main()

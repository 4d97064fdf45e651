"""Each measurement, run in its own process by speed.py: the library's paths, caching, time to 98%."""

from __future__ import annotations

import os
import time

import torch

from .blog_loop import BlogLoop, blog_loader, blog_step, worker_blog
from .common import BLOG_BATCH, DEFAULT_BATCH, PRECISIONS, data_root, path_key, run_process
from .hardware import worker_ceiling


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
            h = ts.train_stage2(
                model, train, epochs=1, batch_size=batch_size, device="cpu", progress=False, cache_features=cache
            )
            times[cache].append(h["seconds"][0])  # the epoch alone; building the cache is not in it
        start = time.perf_counter()
        ts.stage1_features(models[True], x)
        times["build"].append(time.perf_counter() - start)
    scale = epoch_size / len(train)
    out = {
        "recomputed": min(times[False]) * scale,
        "cached": min(times[True]) * scale,
        "build": min(times["build"]) * scale,
        "network": network,
        "measured_images": len(train),
    }
    out["speedup"] = out["recomputed"] / out["cached"]
    return out


def worker_paired(stage, rounds=5, seconds=1.5):
    """The blog's loop and the library at batch 32 and at the default batch (in each precision),
    interleaved in one process: each round times a window of each, so a slow spell of the machine
    hits them all. Returns the median rate of each and the median of the per-round ratios to the blog post's code."""
    import statistics

    import twostage_lib as ts

    blog = BlogLoop(stage, fixed_loss=stage == "stage1")  # stage 1: the fixed loss, same work as ours
    _, train = library_data()
    paths = [(bs, precision) for bs in (BLOG_BATCH, DEFAULT_BATCH[stage]) for precision in PRECISIONS]
    models = {path: ts.TwoStageNetwork() for path in paths}
    epochs = {path: 1 for path in paths}

    def library_window(path):
        h = library_epochs(stage, models[path], train, epochs[path], *path)
        rate = len(train) * len(h["seconds"]) / sum(h["seconds"])
        epochs[path] = max(1, round(seconds * rate / len(train)))  # next window: about `seconds` long
        return rate

    blog.window(0.3)  # warm-up
    for path in paths:
        library_window(path)
    rates = {"blog": [], **{path: [] for path in paths}}
    for _ in range(rounds):
        rates["blog"].append(blog.window(seconds))
        for path in paths:
            rates[path].append(library_window(path))
    out = {"blog": statistics.median(rates["blog"])}
    for path in paths:
        ratios = [r / s for r, s in zip(rates[path], rates["blog"])]
        key = path_key(*path)
        out[f"library{key}"] = statistics.median(rates[path])
        out[f"ratio{key}"] = statistics.median(ratios)
        out[f"ratio{key}_range"] = [min(ratios), max(ratios)]
    return out


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
        return {
            "seconds_to_98": self.reached,
            "final_accuracy": final_accuracy or self.curve[-1][1],
            "training_seconds": self.curve[-1][0],
            "curve": self.curve,
        }


def worker_to98_blog():
    """The seed blog's script as written: batch 32, 5 epochs of stage 1, then 5 of stage 2."""
    import twostage_lib as ts

    splits, _ = library_data()
    ts.seed_everything(0)
    model = ts.TwoStageNetwork()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    # the blog normalizes with Normalize((0.5,), (0.5,)): test it the same way
    x_test = (splits.test.images.reshape(-1, 784).float() / 255 - 0.5) / 0.5
    clock = Clock(model, (x_test, splits.test.labels))
    loader = blog_loader()
    for stage in ("stage1", "stage2"):
        step = blog_step(stage, model, optimizer)
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

    ts.train_supervised(
        model, train, epochs=15, lr=2e-3, scheduler="cosine", device="cpu", progress=False, callback=on_epoch
    )
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

    report = run_pipeline(
        PipelineConfig(device="cpu", progress=False, precision=precision), splits=splits, model=model, on_epoch=on_epoch
    )
    return clock.summary(report["final_test_accuracy"])


def worker_cli():
    """The whole `python -m twostage_lib run` process, wall time, as a learner runs it."""
    return run_process(env=dict(os.environ, TWOSTAGE_DATA=str(data_root())))


WORKERS = {
    "blog/stage1-as-written": lambda: worker_blog("stage1"),
    "blog/stage1": lambda: worker_blog("stage1", fixed_loss=True),
    "blog/stage2": lambda: worker_blog("stage2"),
    "blog/finetune": lambda: worker_blog("finetune"),
    "library32/stage1": lambda: worker_library("stage1", BLOG_BATCH),
    "library32/stage2": lambda: worker_library("stage2", BLOG_BATCH),
    "library32/finetune": lambda: worker_library("finetune", BLOG_BATCH),
    "library/stage1": lambda: worker_library("stage1", DEFAULT_BATCH["stage1"]),
    "library/stage2": lambda: worker_library("stage2", DEFAULT_BATCH["stage2"]),
    "library/finetune": lambda: worker_library("finetune", DEFAULT_BATCH["finetune"]),
    "paired/stage1": lambda: worker_paired("stage1"),
    "paired/stage2": lambda: worker_paired("stage2"),
    "paired/finetune": lambda: worker_paired("finetune"),
    "cache": lambda: worker_cache(DEFAULT_BATCH["stage2"]),
    "cache/resnet18": lambda: worker_cache(DEFAULT_BATCH["stage2"], rounds=2, network="resnet18", n_images=2048),
    "to98/blog": worker_to98_blog,
    "to98/supervised": worker_to98_supervised,
    "to98/pipeline": worker_to98_pipeline,
    "to98/pipeline-fp32": lambda: worker_to98_pipeline("fp32"),
    "cli": worker_cli,
    "ceiling": worker_ceiling,
}

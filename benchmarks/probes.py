"""Small measurements behind the library's defaults (docs/decisions.md names each one's command).

    python -m benchmarks.probes bf16-threshold   # bf16 / fp32 speed of each stage at several batch sizes
    python -m benchmarks.probes stage2-batch     # the head at batch 512 vs 2048: accuracy and time, 3 seeds
    python -m benchmarks.probes feature-chunks   # stage1_features in chunks of 512 vs 2048
    python -m benchmarks.probes gather           # a batch by index_select vs x[idx]
    python -m benchmarks.probes rows             # per-batch normalization vs a whole float32 copy
    python -m benchmarks.probes augment          # augmentation's sampling grid: two planes vs torch.stack

Needs the full MNIST raw files ($TWOSTAGE_DATA; `make bench` sets it). Times are the median of a few
repeats on one machine: read them as ratios, not constants.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import twostage_lib as ts
from twostage_lib.models import decoder_for
from twostage_lib.runtime import has_fast_bf16

from .common import data_root


def timed(fn, repeats=3):
    """Median wall time of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bf16_threshold(train):
    """bf16 / fp32 speed per stage and batch, with the work a step does (trained weights x batch)."""
    if not has_fast_bf16(torch.device("cpu")):
        print("this CPU has no fast bfloat16: precision='auto' always picks float32 here")
        return
    data = train.subset(torch.arange(12_000))
    net = ts.TwoStageNetwork()
    count = ts.count_parameters
    stages = {  # how to train one epoch of each stage, and the weights it trains
        "stage1": (lambda **kw: ts.train_stage1(net, data, **kw), count(net.stage1) + count(decoder_for(net))),
        "stage2": (lambda **kw: ts.train_stage2(net, data, **kw), count(net.stage2)),
        "finetune": (lambda **kw: ts.finetune(net, data, **kw), count(net)),
    }
    print(f"{'stage':<10}{'batch':>7}{'work (M)':>10}{'bf16 / fp32 speed':>20}")
    for stage, (train_fn, weights) in stages.items():
        for batch in (32, 48, 64, 512, 2048):
            seconds = {
                p: timed(lambda p=p: train_fn(epochs=1, batch_size=batch, precision=p, progress=False))
                for p in ("fp32", "bf16")
            }
            print(f"{stage:<10}{batch:>7}{weights * batch / 1e6:>10.1f}{seconds['fp32'] / seconds['bf16']:>20.2f}")


def stage2_batch(splits, train, epochs=5):
    """The head on autoencoder features: batch 512 at 2e-3 against 2048 at 8e-3 (the linear scaling rule)."""
    rows = {(512, 2e-3): [], (2048, 8e-3): []}
    for seed in (0, 1, 2):
        ts.seed_everything(seed)
        pretrained = ts.TwoStageNetwork()
        ts.train_stage1(pretrained, train, epochs=3, lr=3e-3, seed=seed, progress=False)
        for (batch, lr), out in rows.items():
            net = ts.TwoStageNetwork()
            net.load_state_dict(pretrained.state_dict())
            h = ts.train_stage2(net, train, epochs=epochs, lr=lr, batch_size=batch, seed=seed, progress=False)
            out.append((ts.evaluate_model(net, splits.test).accuracy, sum(h["seconds"])))
    for (batch, lr), out in rows.items():
        accuracy = statistics.fmean(a for a, _ in out)
        seconds = statistics.fmean(s for _, s in out)
        print(f"batch {batch:>5}, lr {lr:g}, {epochs} epochs: {accuracy:.2%} mean over 3 seeds, {seconds:.2f} s")


def feature_chunks(train):
    """stage1_features in chunks of 512 against 2048, for the MLP and for ResNet-18 (64 pixels)."""
    x, _ = train.on("cpu")
    for name, net, n in (
        ("mlp", ts.TwoStageNetwork(), 60_000),
        ("resnet18", ts.TransferTwoStageNetwork(weights=None), 1024),
    ):
        seconds = {bs: timed(lambda bs=bs: ts.stage1_features(net, x[:n], batch_size=bs)) for bs in (512, 2048)}
        print(f"{name}: {n} images, chunks of 512 {seconds[512]:.3f} s, of 2048 {seconds[2048]:.3f} s")


def gather(train, batch=512):
    """One epoch of batches taken by index_select against fancy indexing x[idx]."""
    x, _ = train.on("cpu")
    order = torch.randperm(len(x))
    chunks = [order[i : i + batch] for i in range(0, len(x), batch)]
    by_select = timed(lambda: [x.index_select(0, idx) for idx in chunks], repeats=5)
    by_index = timed(lambda: [x[idx] for idx in chunks], repeats=5)
    print(
        f"batch {batch}: index_select {by_select * 1e3:.1f} ms an epoch, x[idx] {by_index * 1e3:.1f} ms "
        f"({by_index / by_select:.1f}x)"
    )


def rows(train, rounds=5):
    """Epoch time of each stage reading normalized rows a batch at a time (``TensorData.rows``, the
    library's path) against reading a normalized float32 copy of the whole split (the old path),
    interleaved in one process; median of ``rounds``, at the precision ``auto`` picks here."""
    from twostage_lib.tensors import TensorData

    per_batch = TensorData.rows
    copies = {}

    def whole_copy(data, device):  # normalize everything once, keep it: what the library did before
        if id(data) not in copies:
            x, y = per_batch(data, device)
            copies[id(data)] = (x[:], y)
        return copies[id(data)]

    jobs = {
        "stage 1 autoencoder, batch 512": lambda m: ts.train_stage1(m, train, epochs=1, progress=False),
        "fine-tuning, batch 512": lambda m: ts.finetune(m, train, epochs=1, progress=False),
        "fine-tuning + augmentation, batch 512": lambda m: ts.finetune(m, train, epochs=1, augment=True,
                                                                       progress=False),
        "supervised, batch 64": lambda m: ts.train_supervised(m, train, epochs=1, batch_size=64, progress=False),
    }  # fmt: skip
    try:
        for name, job in jobs.items():
            seconds = {"whole copy": [], "rows": []}
            for _ in range(rounds):
                for way, read in (("whole copy", whole_copy), ("rows", per_batch)):
                    TensorData.rows = read
                    seconds[way].append(job(ts.TwoStageNetwork())["seconds"][0])
            copy_s, rows_s = statistics.median(seconds["whole copy"]), statistics.median(seconds["rows"])
            print(f"{name}: whole float32 copy {copy_s:.2f} s, rows {rows_s:.2f} s an epoch ({rows_s / copy_s:.2f}x)")
    finally:
        TensorData.rows = per_batch


def augment(train, batch=512, rounds=7):
    """A batch's augmentation with its sampling grid built as two planes (the library) against
    interleaved by torch.stack as it is built (before): interleaved rounds, median, and a check that
    both give the same pixels bit for bit."""
    from twostage_lib import augmentations as A

    planes = A._sampling_grid

    def stacked(cos, sin, tx, ty, field, height, width):
        cols, rows = A._pixel_centres(height, width, cos.device, cos.dtype)
        grid = torch.stack([cos * cols - sin * rows + tx, sin * cols + cos * rows + ty], dim=-1)
        return grid if field is None else grid + field.permute(0, 2, 3, 1)

    x, _ = train.rows("cpu")
    xb = x[:batch]
    kinds = {"gentle (fine-tuning)": A.augment, "strong (contrastive, self-training)": A.strong_augment}
    try:
        for name, fn in kinds.items():
            seconds, out = {"stacked": [], "planes": []}, {}
            for _ in range(rounds):
                for way, build in (("stacked", stacked), ("planes", planes)):
                    A._sampling_grid = build
                    out[way] = fn(xb, generator=torch.Generator().manual_seed(0))
                    seconds[way].append(timed(lambda fn=fn: fn(xb, generator=torch.Generator().manual_seed(0))))
            before, after = statistics.median(seconds["stacked"]), statistics.median(seconds["planes"])
            same = "the same bits" if torch.equal(out["stacked"], out["planes"]) else "DIFFERENT PIXELS"
            print(f"{name}, batch {batch}: stacked {before * 1e3:.2f} ms, planes {after * 1e3:.2f} ms "
                  f"({before / after:.1f}x faster), {same}")  # fmt: skip
    finally:
        A._sampling_grid = planes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    probes = ("bf16-threshold", "stage2-batch", "feature-chunks", "gather", "rows", "augment")
    parser.add_argument("probe", choices=probes)
    args = parser.parse_args()
    splits = ts.load_mnist(data_root(), source="full", verbose=False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.probe == "bf16-threshold":
        bf16_threshold(splits.train)
    elif args.probe == "stage2-batch":
        stage2_batch(splits, splits.train)
    elif args.probe == "feature-chunks":
        feature_chunks(splits.train)
    elif args.probe == "gather":
        gather(splits.train)
    elif args.probe == "augment":
        augment(splits.train)
    else:
        rows(ts.validation_split(splits.train, 5000)[0])


if __name__ == "__main__":
    main()

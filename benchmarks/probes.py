"""Small measurements behind the library's defaults (docs/decisions.md names each one's command).

    python benchmarks/probes.py bf16-threshold   # bf16 / fp32 speed of each stage at several batch sizes
    python benchmarks/probes.py stage2-batch     # the head at batch 512 vs 2048: accuracy and time, 3 seeds
    python benchmarks/probes.py feature-chunks   # stage1_features in chunks of 512 vs 2048
    python benchmarks/probes.py gather           # a batch by index_select vs x[idx]

Needs the full MNIST raw files ($TWOSTAGE_DATA; `make bench` sets it). Times are the median of a few
repeats on one machine: read them as ratios, not constants.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import data_root

import twostage_lib as ts
from twostage_lib.models import decoder_for
from twostage_lib.runtime import has_fast_bf16


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=("bf16-threshold", "stage2-batch", "feature-chunks", "gather"))
    args = parser.parse_args()
    splits = ts.load_mnist(data_root(), source="full", verbose=False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.probe == "bf16-threshold":
        bf16_threshold(splits.train)
    elif args.probe == "stage2-batch":
        stage2_batch(splits, splits.train)
    elif args.probe == "feature-chunks":
        feature_chunks(splits.train)
    else:
        gather(splits.train)


if __name__ == "__main__":
    main()

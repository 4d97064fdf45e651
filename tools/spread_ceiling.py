"""How far would right labels take ``contrastive+propagate``? The study's row at one label budget,
and beside it, from the same stage 1 and the same kept images: the kept images with their true
labels (an oracle: what the network and its training reach when the spread labels make no
mistake) and the row with every pseudo-label counted (``threshold`` 0). Each run's kept share and
how much of it is right are scored after the spreading, from labels the run never reads.
docs/decisions.md, "How far right labels would go".

    python tools/spread_ceiling.py             # 10 labels per digit, seeds 0-2, three variants:
                                               # about 13 minutes on 2 cores with fast bfloat16
                                               # (50 s a stage 1, 68 s a variant, when the row
                                               # self-trained 60 epochs; now PROPAGATE.epochs)
    python tools/spread_ceiling.py --variants row oracle --seeds 0
"""

from __future__ import annotations

import argparse
import copy

import twostage_lib as ts
from twostage_lib.compare import Study
from twostage_lib.loop import LoopSettings
from twostage_lib.propagation import kept_images
from twostage_lib.recipe import PROPAGATE, RUN, SELFTRAIN, STUDY
from twostage_lib.runtime import describe_machine
from twostage_lib.subsets import holdout_size

VARIANTS = ("row", "oracle", "threshold0")


def runs(data, n, seed, variants) -> dict:
    """{variant: test accuracy} for one seed, and the spread labels' kept and right shares."""
    train, _ = ts.validation_split(data.train, holdout_size(len(data.train)), seed=seed)
    labelled = ts.labels_per_class(train, n, seed=seed)
    study = Study(data.test, RUN.lr, LoopSettings(device="cpu", progress=False), print, [])
    pretrained, _ = study.stage1(train, "contrastive", STUDY.stage1_epochs["contrastive"], seed)
    index, spread = ts.spread_labels(pretrained, labelled, train, seed=seed)
    truth = train.labels[index]  # scored here, given to no run but the oracle
    out = {"kept": len(index) / len(train), "right": (spread == truth).float().mean().item()}
    for variant in variants:
        model = copy.deepcopy(pretrained)
        labels = truth if variant == "oracle" else spread
        kept = kept_images(labelled, train, index, labels, f"kept images, {variant} labels", repeats=PROPAGATE.repeats)
        study.train_on_spread(
            model, kept, train, seed,
            overrule=None if variant == "oracle" else PROPAGATE.overrule,
            threshold=0.0 if variant == "threshold0" else SELFTRAIN.threshold,
            vat=PROPAGATE.vat,
        )  # fmt: skip
        out[variant] = ts.evaluate_model(model, data.test).accuracy
        print(f"seed {seed}, {variant}: {out[variant]:.2%}", flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels-per-class", type=int, default=10)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--data-dir", default=None, help="folder holding MNIST/raw/ (default: $TWOSTAGE_DATA)")
    args = parser.parse_args(argv)
    ts.use_cpu_quota()
    data = ts.load_mnist(args.data_dir)
    print(describe_machine(ts.select_device("cpu")))
    for seed in args.seeds:
        r = runs(data, args.labels_per_class, seed, args.variants)
        line = ", ".join(f"{v} {r[v]:.2%}" for v in args.variants)
        print(f"seed {seed}: labels kept on {r['kept']:.1%} of the pool, right on {r['right']:.2%}; {line}", flush=True)


if __name__ == "__main__":
    main()

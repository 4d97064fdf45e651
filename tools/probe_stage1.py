"""How good is the study's contrastive stage 1, and does a longer one read better? The linear and
the k-nearest-neighbour probe (twostage_lib/probes.py) with every label, on the study's stage 1
(``compare``'s settings: the training part of MNIST's training set, RUN's rate, a cosine
schedule) trained for each length, over three seeds; notebook 09 shows the table.

    python tools/probe_stage1.py              # 30 and 60 epochs, seeds 0-2: about 11 minutes on
                                              # 2 cores with fast bfloat16; writes
                                              # notebooks/results/probes.json
    python tools/probe_stage1.py --epochs 30 --seeds 0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import twostage_lib as ts
from twostage_lib.recipe import RUN
from twostage_lib.runtime import describe_machine
from twostage_lib.subsets import holdout_size

OUT = Path(__file__).resolve().parents[1] / "notebooks" / "results" / "probes.json"


def probe_run(data, epochs, seed) -> dict:
    """One stage 1 of ``epochs`` epochs for ``seed``, trained as the study trains it, and its probes."""
    train, _ = ts.validation_split(data.train, holdout_size(len(data.train)), seed=seed)
    ts.seed_everything(seed)
    model = ts.TwoStageNetwork(in_features=train.num_features)
    start = time.perf_counter()
    ts.train_stage1(model, train, objective="contrastive", lr=RUN.lr, seed=seed, epochs=epochs,
                    batch_size=RUN.batch_size, scheduler=RUN.scheduler, progress=False)  # fmt: skip
    seconds = time.perf_counter() - start
    return {"linear": ts.linear_probe(model, train, data.test, seed=seed),
            "knn": ts.knn_probe(model, train, data.test), "stage1_seconds": seconds}  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", nargs="+", type=int, default=[30, 60])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--data-dir", default=None, help="folder holding MNIST/raw/ (default: $TWOSTAGE_DATA)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where the JSON goes (default: {OUT.name} in results/)")
    args = parser.parse_args(argv)
    ts.use_cpu_quota()
    data = ts.load_mnist(args.data_dir)
    runs = {}
    for epochs in args.epochs:
        for seed in args.seeds:
            r = runs.setdefault(str(epochs), {})[str(seed)] = probe_run(data, epochs, seed)
            print(f"{epochs} epochs, seed {seed}: linear {r['linear']:.2%}, kNN {r['knn']:.2%} "
                  f"(stage 1 {r['stage1_seconds']:.0f} s)", flush=True)  # fmt: skip
    machine = describe_machine(ts.select_device("cpu"))
    args.out.write_text(json.dumps({"runs": runs, "machine": machine, "data_source": data.source}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""How the contrastive stage 1 improves with its length: a linear probe with 10 labels per digit after
1, 3, 10 and 30 epochs of stage 1, over three seeds; notebook 02b plots it.

    python tools/stage1_length.py     # about 3 minutes on 2 cores with fast bfloat16; writes
                                      # notebooks/results/stage1_length.json

Each seed trains one stage 1 the way the notebooks do (``course.stage1_model``'s settings: the
recipe's COURSE learning rate, no schedule, all 60,000 training images), keeps its weights after
the epochs listed, and probes each copy afterwards. The copy after 3 epochs is the stage 1 the
notebooks save and share; the README's study trains 30 (with a cosine schedule).
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

import torch.nn as nn

import twostage_lib as ts
from twostage_lib.recipe import COURSE

OUT = Path(__file__).resolve().parents[1] / "notebooks" / "results" / "stage1_length.json"
EPOCHS = (1, 3, 10, 30)


def probe(stage1_state, data, seed) -> float:
    """A linear probe (``nn.Linear(128, 10)``) on the frozen stage 1, 10 labelled images per digit."""
    net = ts.TwoStageNetwork()
    net.stage1.load_state_dict(stage1_state)
    net.stage2 = nn.Linear(net.feature_dim, 10)
    labelled = ts.labels_per_class(data.train, 10, seed=seed)
    ts.train_stage2(net, labelled, epochs=100, lr=1e-2, batch_size=100, seed=seed, progress=False)
    return ts.evaluate_model(net, data.test).accuracy


def main() -> int:
    ts.use_cpu_quota()
    data = ts.load_mnist(source="full", verbose=False)
    runs = {str(e): [] for e in EPOCHS}
    start = time.perf_counter()
    for seed in (0, 1, 2):
        ts.seed_everything(seed)
        model = ts.TwoStageNetwork()
        kept = {}

        def keep(record, model=model, kept=kept):
            if record["epoch"] in EPOCHS:
                kept[record["epoch"]] = copy.deepcopy(model.stage1.state_dict())

        ts.train_stage1(
            model,
            data.train,
            objective="contrastive",
            epochs=max(EPOCHS),
            lr=COURSE.lr,
            seed=seed,
            callback=keep,
            progress=False,
        )
        for epochs, state in kept.items():
            runs[str(epochs)].append(probe(state, data, seed))
        print(f"seed {seed}: " + ", ".join(f"{e} epochs {runs[str(e)][-1]:.1%}" for e in EPOCHS), flush=True)
    report = {
        "epochs": list(EPOCHS),
        "seeds": [0, 1, 2],
        "probe_accuracy": runs,
        "lr": COURSE.lr,
        "seconds": time.perf_counter() - start,
        "machine": ts.select_device().type,
    }
    OUT.write_text(json.dumps(report, indent=1))
    print(f"written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A fingerprint of what the library computes: every stage, every objective, fp32 and auto precision,
and the command line's JSON report on full MNIST and on the bundled subset.

Run it before and after a change that should not change any number (a refactoring), then compare:

    python tools/fingerprint.py > before.json     # on the old commit
    python tools/fingerprint.py > after.json      # on the new one
    python tools/fingerprint.py --compare before.json after.json

Each entry is a SHA-256 of the trained weights and of the history's numbers (times left out), so
two runs on the same machine agree bit for bit or differ where something really changed. Stages
are called with their defaults apart from a short length, so a changed default shows too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys

TIMES = ("seconds", "total_seconds", "torch_threads", "data_location", "config")


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def weights(model) -> str:
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def numbers(history) -> str:
    return digest([{k: v for k, v in e.items() if k != "seconds"} for e in history.epochs])


def stage_runs(ts, data, given) -> dict:
    """Each stage with its defaults (a short length), for each precision and objective; ``given``:
    {stage: {setting: value}} passed on top (to check a run against the defaults of an older version)."""
    out = {}
    for precision in ("fp32", "auto"):
        common = {"progress": False, "precision": precision}
        for objective in ("autoencoder", "denoising", "contrastive"):
            net = ts.TwoStageNetwork()
            h = ts.train_stage1(net, data, objective=objective, epochs=1, **common, **given.get("stage1", {}))
            out[f"stage1/{objective}/{precision}"] = (weights(net), numbers(h), h.precision)
            h = ts.train_stage2(net, data, epochs=2, **common, **given.get("stage2", {}))
            out[f"stage2/{objective}/{precision}"] = (weights(net), numbers(h), h.precision)
            h = ts.finetune(net, data, epochs=1, **common, **given.get("finetune", {}))
            out[f"finetune/{objective}/{precision}"] = (weights(net), numbers(h), h.precision)
        net = ts.TwoStageNetwork()
        h = ts.train_supervised(net, data, epochs=1, **common, **given.get("supervised", {}))
        out[f"supervised/{precision}"] = (weights(net), numbers(h), h.precision)
        labelled = ts.labels_per_class(data, 5)
        h = ts.selftrain(net, labelled, data, epochs=1, **common)
        out[f"selftrain/{precision}"] = (weights(net), numbers(h), h.precision)
    return out


def cli_run(source: str) -> str:
    """The JSON report of a short ``run`` (times and paths left out)."""
    command = [sys.executable, "-m", "twostage_lib", "run", "--data", source, "--epochs-stage1", "1",
               "--epochs-stage2", "2", "--epochs-finetune", "2", "--no-progress", "--json", "-"]  # fmt: skip
    report = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    for stage in report["stages"].values():
        stage.pop("seconds", None)
        for epoch in stage.get("history", []):
            epoch.pop("seconds", None)
    return digest({k: v for k, v in report.items() if k not in TIMES})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    parser.add_argument(
        "--given",
        type=json.loads,
        default={},
        help='settings passed to the stages, as JSON: {"stage1": {"lr": 0.001}, ...}',
    )
    args = parser.parse_args()
    if args.compare:
        before, after = (json.load(open(p)) for p in args.compare)
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        for key in changed:
            print(f"changed: {key}: {before.get(key)} -> {after.get(key)}")
        print(f"{len(before) - len(changed)} of {len(before)} entries identical")
        return 1 if changed else 0
    import twostage_lib as ts

    ts.seed_everything(0)
    bundled = ts.load_mnist(source="bundled", verbose=False).train
    data = bundled.subset(range(3000))
    out = stage_runs(ts, data, args.given)
    out["cli/bundled"] = cli_run("bundled")
    out["cli/full"] = cli_run("full")
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

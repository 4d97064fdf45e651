"""The label-efficiency study: when does two-stage training beat training from scratch?

For each labels-per-class budget and seed, on the full test set: supervised from scratch (same
network), plain (as in the papers' baselines) and with the fine-tuning augmentation; and for each
stage-1 objective a linear probe, the 128-64-10 head, the head then fine-tuning (LP-FT), and the
head then self-training on the unlabelled images too (``selftrain``, FixMatch-style; by default for
the contrastive objective only: it is the slowest row). Stage 1 is trained once per objective and
seed on every training image, without labels, and reused across budgets.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from dataclasses import replace

import torch.nn as nn

from .evaluation import evaluate_model
from .loop import LoopSettings
from .models import TwoStageNetwork
from .propagation import propagated_labels
from .recipe import PROPAGATE, RUN, SELFTRAIN, STUDY
from .runtime import seed_everything
from .subsets import check_budget, holdout_size, labels_per_class, most_labels_per_class, validation_split
from .training import finetune, selftrain, train_stage1, train_stage2, train_supervised

BUDGETS = (1, 10, 100, 1000, None)  # None: every label
SUPERVISED = ("supervised", "supervised+augment")
TWO_STAGE = ("probe", "head", "finetune", "selftrain", "propagate")
SLOW = ("selftrain", "propagate")  # run by default for the contrastive objective only


def all_methods(objectives) -> list:
    """Every method the study can run for these objectives, in table order."""
    return [*SUPERVISED, *(f"{o}+{kind}" for o in objectives for kind in TWO_STAGE)]


def default_methods(objectives) -> list:
    """What the study runs when no ``methods`` are named: all but the slow rows (self-training,
    propagation) for the reconstruction objectives (their features are weaker)."""
    return [m for m in all_methods(objectives) if m.split("+")[-1] not in SLOW or m.startswith("contrastive+")]


def budget_name(n) -> str:
    return "all" if n is None else str(n)


def epochs_for(n_samples, steps, batch_size):
    """Enough epochs for about ``steps`` updates, at least ``STUDY.min_epochs`` passes over the data."""
    per_epoch = math.ceil(n_samples / batch_size)
    return max(STUDY.min_epochs, math.ceil(steps / per_epoch))


def run_study(
    splits,
    budgets=None,
    seeds=(0, 1, 2),
    objectives=("autoencoder", "denoising", "contrastive"),
    epochs_stage1=None,
    lr=RUN.lr,
    device="cpu",
    precision="auto",
    log=print,
    methods=None,
    stop=None,
) -> dict:
    """Returns {"methods": {method: {budget: {"mean", "std", "runs", "seconds"}}}, "budgets", ...}.
    Ctrl-C (or ``stop``, a ``threading.Event``, once set) stops it after the current step; the
    runs completed so far are returned, marked ``"interrupted": true``. ``budgets`` None:
    ``BUDGETS``, less those the data cannot give (said in the log); a budget named by the caller
    that the data cannot give is an error."""
    methods, objectives = chosen_methods(seeds, objectives, methods)
    epochs_stage1 = {**STUDY.stage1_epochs, **(epochs_stage1 or {})}
    holdout = holdout_size(len(splits.train))
    trains = [validation_split(splits.train, holdout, seed=seed)[0] for seed in seeds]  # as `run` does
    budgets = usable_budgets(splits.train, trains, budgets, log)
    study = Study(
        splits.test, lr, LoopSettings(device=device, progress=False, precision=precision, stop=stop), log, methods
    )
    started = time.perf_counter()
    try:
        for i, (seed, train) in enumerate(zip(seeds, trains)):
            labelled = {n: train if n is None else labels_per_class(train, n, seed=seed) for n in budgets}
            log(progress_line(i, seeds, time.perf_counter() - started))
            for n, data in labelled.items():
                study.supervised(n, data, train.num_features, seed)
            for objective in objectives:
                pretrained, seconds = study.stage1(train, objective, epochs_stage1.get(objective, 3), seed)
                for n, data in labelled.items():
                    study.two_stage(pretrained, objective, n, data, seconds, seed, unlabelled=train)
    except KeyboardInterrupt:
        study.interrupted = True
    config = study_config(epochs_stage1, objectives, lr, precision, study.used)
    return {
        "methods": study.summary(),
        "budgets": [budget_name(n) for n in budgets],
        "seeds": list(seeds),
        "objectives": list(objectives),
        "data_source": splits.source,
        "n_test": len(splits.test),
        "config": config,
        "interrupted": study.interrupted,
    }


def chosen_methods(seeds, objectives, methods) -> tuple[list, list]:
    """The methods to run (``default_methods`` when None) and the objectives they need a stage 1 for;
    a repeated seed or an unknown method is refused."""
    repeated = [s for i, s in enumerate(seeds) if s in seeds[:i]]
    if repeated:
        raise ValueError(
            f"seed {repeated[0]} is given twice: each seed is one independent run, and a repeat would "
            "count one run twice in the mean and standard deviation; use e.g. --seeds 0 1 2"
        )
    methods = default_methods(objectives) if methods is None else list(methods)
    known = all_methods(objectives)
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ValueError(
            f"unknown method {unknown[0]!r} for objectives {list(objectives)}; choose from {', '.join(known)}"
        )
    objectives = [o for o in objectives if any(m.startswith(f"{o}+") for m in methods)]  # a stage 1 only if used
    return methods, objectives


def study_config(epochs_stage1, objectives, lr, precision, used) -> dict:
    """What the report records of how the study trained (the recipe's ``RUN``, ``STUDY`` and ``SELFTRAIN``)."""
    config = {
        "stage1_epochs": {o: epochs_stage1.get(o, 3) for o in objectives},
        "head_steps": STUDY.head_steps,
        "tune_steps": STUDY.tune_steps,
        "min_epochs": STUDY.min_epochs,
        "lr": lr,
        "stage1_lr_scale": RUN.stage1_lr_scale,
        "selftrain": {
            "epochs": SELFTRAIN.epochs,
            "threshold": SELFTRAIN.threshold,
            "unlabelled_weight": SELFTRAIN.unlabelled_weight,
        },
        "propagate": vars(PROPAGATE),
        "precision": precision,
        "precisions_used": used,
    }
    return config


def usable_budgets(images, trains, budgets, log) -> list:
    """The budgets to run: as given, each checked against what every seed's training part
    (``trains``, carved out of ``images``) can give (``check_budget`` names the flag and the largest
    value allowed); None: ``BUDGETS`` less those the data cannot give, each left out with a line in
    the log."""
    if budgets is not None:
        for n in budgets:
            for train in trains:
                check_budget(n, train, images)
        return list(budgets)
    most = min(most_labels_per_class(train) for train in trains)
    kept = [n for n in BUDGETS if n is None or n <= most]
    for n in BUDGETS:
        if n not in kept:
            log(
                f"labels per class {n} left out: after the validation holdout this data has at most {most} per "
                "class (choose budgets with --labels-per-class)"
            )
    return kept


def progress_line(i, seeds, seconds) -> str:
    """Where a long study is and how long it has to go: seed 1 (2 of 3; 1 done in 7.7 min, about 15 min left)."""
    line = f"seed {seeds[i]} ({i + 1} of {len(seeds)}"
    if i:
        left = seconds / i * (len(seeds) - i)
        line += f"; {i} done in {seconds / 60:.1f} min, about {left / 60:.0f} min left"
    return line + ")"


class Study:
    """The study's runs: each trains one method at one label budget and records its test accuracy."""

    def __init__(self, test, lr, loop, log, methods):
        self.test = test
        self.lr = lr
        self.loop = loop  # the LoopSettings every run shares (device, precision, no progress bar, stop)
        self.log = log
        self.methods = set(methods)
        self.runs = {}  # (method, budget) -> list of (accuracy, seconds)
        self.used = {}  # what each kind of training ran in, per label budget, from the histories
        self.interrupted = False

    @staticmethod
    def done(history):
        """Every run's History passes here: an interrupted one is no result, so the study stops."""
        if history.interrupted:
            raise KeyboardInterrupt
        return history

    def record(self, method, n, model, seconds):
        accuracy = evaluate_model(model, self.test).accuracy
        self.runs.setdefault((method, budget_name(n)), []).append((accuracy, seconds))
        self.log(f"  {method:<24} labels/class {budget_name(n):>4}: {accuracy:.2%} ({seconds:.1f} s)")

    def supervised(self, n, data, num_features, seed):
        """Supervised from scratch, plain and with the fine-tuning augmentation."""
        s = self.settings(len(data), STUDY.tune_steps)
        for method, augment in (("supervised", False), ("supervised+augment", True)):
            if method not in self.methods:
                continue
            start = time.perf_counter()
            seed_everything(seed)
            net = TwoStageNetwork(in_features=num_features)
            h = self.done(train_supervised(net, data, lr=self.lr, augment=augment, seed=seed, settings=s))
            self.used.setdefault("supervised", {})[budget_name(n)] = h.precision
            self.record(method, n, net, time.perf_counter() - start)

    def stage1(self, train, objective, epochs, seed):
        """Stage 1 on every training image, without labels; returns it and the seconds it took."""
        start = time.perf_counter()
        seed_everything(seed)
        pretrained = TwoStageNetwork(in_features=train.num_features)
        s = replace(self.loop, epochs=epochs, batch_size=RUN.batch_size, scheduler=RUN.scheduler)
        h = self.done(train_stage1(pretrained, train, objective=objective, lr=self.lr, seed=seed, settings=s))
        self.used["stage1"] = h.precision
        return pretrained, time.perf_counter() - start

    def two_stage(self, pretrained, objective, n, data, stage1_seconds, seed, unlabelled):
        """On copies of the pretrained stage 1: a linear probe; the head; from the head, fine-tuning and
        self-training (each only when asked for)."""
        wanted = {kind for kind in TWO_STAGE if f"{objective}+{kind}" in self.methods}
        head = dict(lr=self.lr, seed=seed, settings=self.settings(len(data), STUDY.head_steps, scheduler=None))
        if "probe" in wanted:
            start = time.perf_counter()
            probe = copy.deepcopy(pretrained)
            probe.stage2 = nn.Linear(probe.feature_dim, probe.config["num_classes"])
            self.done(train_stage2(probe, data, **head))
            self.record(f"{objective}+probe", n, probe, stage1_seconds + time.perf_counter() - start)
        if "propagate" in wanted and n is not None:  # with every label there is nothing to spread
            self.propagate(copy.deepcopy(pretrained), objective, n, data, unlabelled, stage1_seconds, seed)
        if not wanted & {"head", "finetune", "selftrain"}:
            return
        start = time.perf_counter()
        model = copy.deepcopy(pretrained)
        h = self.done(train_stage2(model, data, **head))
        self.used.setdefault("head", {})[budget_name(n)] = h.precision
        head_seconds = stage1_seconds + time.perf_counter() - start
        if "head" in wanted:
            self.record(f"{objective}+head", n, model, head_seconds)
        if "finetune" in wanted:
            self.finetune(copy.deepcopy(model), objective, n, data, head_seconds, seed)
        if "selftrain" in wanted:
            self.selftrain(copy.deepcopy(model), objective, n, data, unlabelled, head_seconds, seed)

    def finetune(self, model, objective, n, data, head_seconds, seed):
        """The head then the whole network, on the labelled images, with augmentation (LP-FT)."""
        start = time.perf_counter()
        s = self.settings(len(data), STUDY.tune_steps)
        h = self.done(
            finetune(
                model, data, lr=self.lr, stage1_lr_scale=RUN.stage1_lr_scale, augment=RUN.augment, seed=seed, settings=s
            )
        )
        self.used.setdefault("finetune", {})[budget_name(n)] = h.precision
        self.record(f"{objective}+finetune", n, model, head_seconds + time.perf_counter() - start)

    def selftrain(self, model, objective, n, data, unlabelled, head_seconds, seed):
        """The head then the whole network on the labelled images and, by pseudo-labels, the unlabelled."""
        start = time.perf_counter()
        s = replace(self.loop, epochs=SELFTRAIN.epochs, scheduler=RUN.scheduler)
        h = self.done(
            selftrain(model, data, unlabelled, lr=self.lr, stage1_lr_scale=RUN.stage1_lr_scale, seed=seed, settings=s)
        )
        self.used.setdefault("selftrain", {})[budget_name(n)] = h.precision
        self.record(f"{objective}+selftrain", n, model, head_seconds + time.perf_counter() - start)

    def propagate(self, model, objective, n, data, unlabelled, stage1_seconds, seed):
        """The labels spread over stage 1's neighbour graph and its clusters (``propagation.py``),
        the head on them, then self-training with them as its labelled set, where the network may
        overrule a spread label it confidently contradicts (``PROPAGATE.overrule``), the given labels
        weigh more (``PROPAGATE.repeats``), and virtual adversarial training smooths its answers
        around every image (``PROPAGATE.vat``)."""
        start = time.perf_counter()
        spread = propagated_labels(model, data, unlabelled, seed=seed, device=self.loop.device)
        given = PROPAGATE.repeats * len(data)  # the given labels come first, repeated (kept_images)
        self.log(f"  labels spread to {len(spread) - given:,} of {len(unlabelled):,} unlabelled images")
        h = self.train_on_spread(
            model,
            spread,
            unlabelled,
            seed,
            overrule=PROPAGATE.overrule,
            threshold=SELFTRAIN.threshold,
            vat=PROPAGATE.vat,
        )
        self.used.setdefault("propagate", {})[budget_name(n)] = h.precision
        self.record(f"{objective}+propagate", n, model, stage1_seconds + time.perf_counter() - start)

    def train_on_spread(self, model, spread, unlabelled, seed, *, overrule, threshold, vat):
        """The head on the spread labels, then self-training with them as the labelled set; returns
        self-training's History. ``overrule``, ``threshold`` and ``vat`` are ``selftrain``'s, given by each
        caller when it calls (the row passes the recipe's, read then; ``tools/spread_ceiling.py``
        its variants'), not bound when this module loads."""
        head = self.settings(len(spread), STUDY.head_steps, scheduler=None)
        self.done(train_stage2(model, spread, lr=self.lr, seed=seed, settings=head))
        s = replace(self.loop, epochs=PROPAGATE.epochs, scheduler=RUN.scheduler)
        return self.done(
            selftrain(
                model,
                spread,
                unlabelled,
                lr=self.lr,
                stage1_lr_scale=RUN.stage1_lr_scale,
                overrule=overrule,
                threshold=threshold,
                vat=vat,
                seed=seed,
                settings=s,
            )
        )

    def settings(self, n, steps, scheduler=RUN.scheduler) -> LoopSettings:
        """The shared loop settings for a run on ``n`` labelled images: a batch of at most the recipe's,
        enough epochs for about ``steps`` updates, the recipe's schedule."""
        batch_size = min(RUN.batch_size, n)
        return replace(self.loop, epochs=epochs_for(n, steps, batch_size), batch_size=batch_size, scheduler=scheduler)

    def summary(self) -> dict:
        """{method: {budget: mean, std, runs, seconds}} over the random seeds."""
        methods = {}
        for (method, budget), values in self.runs.items():
            accs = [a for a, _ in values]
            methods.setdefault(method, {})[budget] = {
                "mean": statistics.fmean(accs),
                "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "runs": accs,
                "seconds": statistics.fmean(s for _, s in values),
            }
        return methods


def merge_studies(*studies) -> dict:
    """One report from several runs of the study: each (method, budget) cell from the last report
    that holds it, each budget's seed list (``seeds_by_budget``) and machine (``machine_by_budget``:
    the machine most of its cells ran on), the times summed. A cell that ran elsewhere (one row
    re-run on another machine) is named in ``machine_by_row``, ``{method: {budget: machine}}``. For a
    study re-run at some budgets with more seeds (``--labels-per-class 1 10 --seeds 0 ... 9``)."""
    merged = {**studies[-1], "methods": {}, "seeds_by_budget": {}, "total_seconds": 0.0}
    order = [budget_name(n) for n in BUDGETS]
    budgets = {b for study in studies for b in study["budgets"]}
    merged["budgets"] = sorted(budgets, key=lambda b: order.index(b) if b in order else int(b))
    used, ran_on = {}, {}  # ran_on: {(method, budget): machine}
    for study in studies:
        machines = {b: study.get("machine_by_budget", {}).get(b, study.get("machine")) for b in study["budgets"]}
        for method, row in study["methods"].items():
            merged["methods"].setdefault(method, {}).update(row)
            for b in row:
                ran_on[method, b] = study.get("machine_by_row", {}).get(method, {}).get(b, machines[b])
        for b in study["budgets"]:
            merged["seeds_by_budget"][b] = study.get("seeds_by_budget", {}).get(b, study["seeds"])
        for kind, value in study["config"]["precisions_used"].items():
            used[kind] = {**used.get(kind, {}), **value} if isinstance(value, dict) else value
        merged["total_seconds"] += study.get("total_seconds", 0.0)
        merged["interrupted"] = merged.get("interrupted", False) or study["interrupted"]
    merged["machine_by_budget"], merged["machine_by_row"] = {}, {}
    for b in merged["budgets"]:
        cells = [ran_on[m, b] for m in merged["methods"] if (m, b) in ran_on]
        most = max(cells, key=cells.count)  # the first of the most common: rows keep their order
        merged["machine_by_budget"][b] = most
        for m in merged["methods"]:
            if (m, b) in ran_on and ran_on[m, b] != most:
                merged["machine_by_row"].setdefault(m, {})[b] = ran_on[m, b]
    merged["seeds"] = sorted({s for seeds in merged["seeds_by_budget"].values() for s in seeds})
    merged["config"] = {**studies[-1]["config"], "precisions_used": used}
    merged.pop("machine", None)  # one per budget now
    for method, row in merged["methods"].items():  # budgets in order
        merged["methods"][method] = {b: row[b] for b in merged["budgets"] if b in row}
    return merged


def format_spread(study, budget) -> str:
    """Each method's runs at one budget: how many, the mean, the worst and the best. Where the
    draw of the labelled images matters, the spread says more than the standard deviation."""
    lines = [f"{budget + '/class':<24}{'runs':>6}{'mean':>9}{'std':>7}{'worst':>8}{'best':>8}"]
    for method, row in study["methods"].items():
        if budget in row:
            runs = row[budget]["runs"]
            cells = [100 * row[budget]["mean"], 100 * row[budget]["std"], 100 * min(runs), 100 * max(runs)]
            lines.append(f"{method:<24}{len(runs):>6}" + "".join(f"{c:{w}.1f}" for c, w in zip(cells, (9, 7, 8, 8))))
    return "\n".join(lines)


def format_study(study) -> str:
    budgets = study["budgets"]
    lines = [f"{'method':<24}" + "".join(f"{b + '/class':>16}" for b in budgets)]
    for method, row in study["methods"].items():
        cells = [f"{100 * row[b]['mean']:6.2f} ± {100 * row[b]['std']:4.2f}" if b in row else "-" for b in budgets]
        lines.append(f"{method:<24}" + "".join(f"{c:>16}" for c in cells))
    return "\n".join(lines)

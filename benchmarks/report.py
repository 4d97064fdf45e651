"""The benchmark's report: its table, the plot, and the block between the markers in benchmarks/README.md."""

from __future__ import annotations

from .common import BLOG_BATCH, ROOT, path_key


def table(saved) -> str:
    """The README's table from a saved run (results.json): its numbers, its machine, its command."""
    results, machine = saved["results"], saved["machine"]
    lines = [
        header(saved),
        "",
        "| path | stage | batch | precision | samples/s | vs blog | FLOPs/sample (fwd+bwd) | of ceiling "
        "| of GEMM-only | peak RSS |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for stage in ("stage1", "stage2", "finetune"):
        lines += [speed_row(saved, stage, *row) for row in stage_rows(saved, stage)]
    lines += ["", RATES_NOTE, "", cache_line(results, machine["default_batch"]["stage2"])]
    lines += ["", *to98_table(results)]
    cli = results["cli"]
    lines += [
        "",
        f"Whole `python -m twostage_lib run` process (defaults, full MNIST): "
        f"**{cli['wall_seconds']:.1f} s** wall, final test accuracy {cli['final_accuracy']:.2%}.",
    ]
    return "\n".join(lines)


RATES_NOTE = (
    "Rates are medians of 5 interleaved rounds in one process (1.5 s of the blog's loop, then "
    'about 1.5 s of each library path); "vs blog" is the median of the per-round ratios, '
    'with their range. "Of ceiling" divides by the matmul ceiling of the path\'s own precision '
    '(large square matrices); "of GEMM-only" divides by the rate the same step would run at if it '
    "were only its own matrix products, at their own shapes and precision (`gemm_only_rates`). "
    "Peak RSS comes from each path run alone in its own process, at the default precision."
)


def defaults_of(machine) -> dict:
    """{batch size: {stage: the precision precision="auto" picked there}}."""
    return {int(bs): d for bs, d in machine["defaults"].items()}


def header(saved) -> str:
    """The sentence above the table: command, machine, ceilings and the default precisions."""
    machine, command = saved["machine"], saved["command"]
    peak = saved["results"]["ceiling"]["flops"]
    ceilings = ", ".join(f"{p} {peak[p] / 1e9:.0f}" for p in machine["precisions"])
    defaults = defaults_of(machine)
    default = (
        f"batch {BLOG_BATCH}: "
        + ", ".join(f"{stage} {p}" for stage, p in defaults[BLOG_BATCH].items())
        + "; default batch: "
        + ", ".join(f"{stage} {defaults[bs][stage]} ({bs})" for stage, bs in machine["default_batch"].items())
    )
    cpu = f" ({machine['cpu']})" if machine.get("cpu") else ""
    return (
        f"Measured with `{command}` on {machine['machine']}{cpu}, {machine['cores']} cores, "
        f"torch {machine['torch']}, {machine['threads']} threads; "
        f"matmul ceiling (GFLOP/s): {ceilings}. The library's default precision there "
        f'(`precision="auto"`): {default}.'
    )


def stage_rows(saved, stage) -> list:
    """(label, RSS key, batch, precision, FLOPs/sample, samples/s, path key or None) for one stage."""
    results, flops = saved["results"], saved["flops_per_sample"]
    paired = results[f"paired/{stage}"]  # rates and ratios from one process, interleaved
    blog_flops = flops.get(f"blog_{stage}", flops[stage])
    rows = [("blog: per-sample DataLoader", f"blog/{stage}", BLOG_BATCH, "fp32", blog_flops, paired["blog"], None)]
    if stage == "stage1":
        rows[0] = ("blog: per-sample DataLoader, loss fixed (autoencoder)", *rows[0][1:])
        as_written = results["blog/stage1-as-written"]["samples_per_s"]
        rows.insert(0, ("blog: as written (zero loss, no decoder), own process", "blog/stage1-as-written",
                        BLOG_BATCH, "fp32", flops["blog_stage1-as-written"], as_written, None))  # fmt: skip
    for bs in (BLOG_BATCH, saved["machine"]["default_batch"][stage]):
        solo = f"library32/{stage}" if bs == BLOG_BATCH else f"library/{stage}"
        for precision in saved["machine"]["precisions"]:
            key = path_key(bs, precision)
            rows.append(("library: in-memory", solo, bs, precision, flops[stage], paired[f"library{key}"], key))
    return rows


def speed_row(saved, stage, label, rss_key, batch, precision, flops, rate, key) -> str:
    """One row of the speed table."""
    results = saved["results"]
    paired, gemm = results[f"paired/{stage}"], results["ceiling"].get("gemm_only", {})
    ratio = f"{rate / paired['blog']:.1f}x"
    if key is not None:
        low, high = paired[f"ratio{key}_range"]
        ratio = f"**{paired[f'ratio{key}']:.1f}x** ({low:.1f}-{high:.1f})"
    is_default = key is not None and precision == defaults_of(saved["machine"])[batch][stage]
    shown = f"{precision} (default)" if is_default else precision
    of_gemm = f"{rate / gemm[f'{stage}/{key}']:.0%}" if key is not None and f"{stage}/{key}" in gemm else ""
    peak = results["ceiling"]["flops"][precision]
    return (
        f"| {label} | {stage} | {batch} | {shown} | {rate:,.0f} | {ratio} | {flops / 1e6:.3f} M | "
        f"{rate * flops / peak:.0%} | {of_gemm} | {results[rss_key]['peak_rss_mb']:.0f} MB |"
    )


def cache_line(results, batch) -> str:
    """Stage 2 recomputing stage 1 against cached features, for the MLP and ResNet-18."""
    c = results["cache"]
    line = (
        f"Stage 2, one epoch at its default batch ({batch}): recomputing stage 1 {c['recomputed']:.3f} s, "
        f"cached features {c['cached']:.3f} s: **{c['speedup']:.1f}x** faster; building the cache once "
        f"takes {c['build']:.3f} s."
    )
    if "cache/resnet18" in results:
        r = results["cache/resnet18"]
        line += (
            f" With the transfer network's ResNet-18 as stage 1 (slide 12; random weights, 64 pixels; "
            f"timed on {r['measured_images']:,} images and scaled to 60,000): recomputing "
            f"{r['recomputed']:.0f} s, cached {r['cached']:.2f} s, **{r['speedup']:.0f}x**; "
            f"building the cache {r['build']:.0f} s."
        )
    return line


def to98_table(results) -> list:
    """The time-to-98% table, one line each."""
    lines = [
        "| time to 98% test accuracy (training only) | reached after | final test accuracy | training time "
        "| peak RSS |",
        "|---|---:|---:|---:|---:|",
    ]
    names = {
        "to98/blog": "seed blog's script as written (batch 32, 5 + 5 epochs)",
        "to98/supervised": "library, supervised from scratch (15 epochs, cosine)",
        "to98/pipeline": "library, two-stage defaults (`python -m twostage_lib run`)",
        "to98/pipeline-fp32": "library, two-stage defaults with `--precision fp32`",
    }
    for key, label in names.items():
        if key not in results:
            continue
        r = results[key]
        reached = f"{r['seconds_to_98']:.1f} s" if r["seconds_to_98"] is not None else "never"
        lines.append(
            f"| {label} | {reached} | {r['final_accuracy']:.2%} | {r['training_seconds']:.1f} s | "
            f"{r['peak_rss_mb']:.0f} MB |"
        )
    return lines


def plot(results, path, precisions, default_batch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    stages = ["stage1", "stage2", "finetune"]
    # each bar: its label and, per stage, the key of its rate in that stage's paired results
    bars = [("blog's loop, batch 32", {s: "blog" for s in stages})]
    bars += [(f"library, batch 32, {p}", {s: f"library{path_key(BLOG_BATCH, p)}" for s in stages}) for p in precisions]
    bars += [
        (f"library, default batch, {p}", {s: f"library{path_key(default_batch[s], p)}" for s in stages})
        for p in precisions
    ]
    width = 0.8 / len(bars)
    for i, (label, keys) in enumerate(bars):
        left.bar(
            [s + i * width for s in range(3)], [results[f"paired/{s}"][keys[s]] for s in stages], width, label=label
        )
    left.set_xticks([s + 0.4 - width / 2 for s in range(3)], stages)
    left.set_yscale("log")
    left.set_ylabel("training samples / s")
    left.legend()
    for key in ("to98/blog", "to98/supervised", "to98/pipeline", "to98/pipeline-fp32"):
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


def update_readme(text, marker="bench", readme=ROOT / "benchmarks" / "README.md"):
    """Put ``text`` between ``readme``'s ``<!-- {marker}:start -->`` and ``:end -->`` lines: the benchmark's
    table in benchmarks/README.md; tools/notebook_budget.py's in README.md (marker "budget")."""
    content = readme.read_text()
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    if start not in content or end not in content:
        raise ValueError(f"{readme} has no {start} ... {end} block to write into; add the two marker lines")
    head, rest = content.split(start, 1)
    readme.write_text(head + start + "\n" + text + "\n" + end + rest.split(end, 1)[1])

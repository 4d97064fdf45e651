"""The speed benchmark's arithmetic and report (the measurements themselves live in benchmarks/)."""

import json
from pathlib import Path

import torch.nn as nn

from benchmarks import hardware, report

ROOT = Path(__file__).resolve().parent.parent


def test_flops_count_forward_and_both_backward_products():
    first, second = nn.Linear(784, 256), nn.Linear(256, 10)
    # the first layer's input (the images) needs no gradient: forward + weight gradient only
    assert hardware.linear_flops([first]) == 2 * 2 * 784 * 256
    assert hardware.linear_flops([first], input_needs_grad=True) == 3 * 2 * 784 * 256
    assert hardware.linear_flops([first, second]) == 2 * 2 * 784 * 256 + 3 * 2 * 256 * 10


def test_the_original_network_costs_what_the_readme_says():
    flops = hardware.flops_per_sample()
    assert round(flops["stage1"] / 1e6, 3) == 2.400  # autoencoder step: 784-256-128-256-784
    assert round(flops["finetune"] / 1e6, 3) == 1.052
    assert round(flops["stage2"] / 1e6, 3) == 0.037


def test_the_committed_results_redraw_the_readme_table():
    saved = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    text = report.table(saved)
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    block = readme.split("<!-- bench:start -->\n", 1)[1].split("\n<!-- bench:end -->", 1)[0]
    assert text == block  # benchmarks/README.md shows exactly what results.json holds: nothing edited by hand

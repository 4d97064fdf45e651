"""The machine's side: FLOPs a step costs, the matmul ceilings, and what precision="auto" picks."""

from __future__ import annotations

import os
import platform
import time

import torch
import torch.nn as nn

from .common import BLOG_BATCH, DEFAULT_BATCH, PRECISIONS, path_key


def linear_flops(layers, input_needs_grad=False) -> float:
    """Forward + backward FLOPs per sample of a stack of Linear layers (multiply-add = 2 FLOPs).

    Forward: 2·in·out per layer. Backward: 2·in·out for the weight gradient, and 2·in·out for the
    input gradient of every layer except the first when its input needs no gradient.
    """
    total = 0.0
    for i, layer in enumerate(layers):
        macs = layer.in_features * layer.out_features
        total += 2 * macs + 2 * macs + (2 * macs if (i > 0 or input_needs_grad) else 0)
    return total


def linears(*modules):
    return [m for module in modules for m in module.modules() if isinstance(m, nn.Linear)]


def worker_ceiling():
    """Measured matmul throughput of this machine (FLOP/s) in each precision, at its best square size."""
    torch.manual_seed(0)
    out = {}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if precision not in PRECISIONS:
            continue
        best = 0.0
        for n in (512, 1024, 2048):
            a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
            for _ in range(3):
                a @ b
            reps = max(3, int(4e10 / (2 * n**3)))
            start = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = max(best, 2 * n**3 * reps / (time.perf_counter() - start))
        out[precision] = best
    return {"flops": out, "gemm_only": gemm_only_rates()}


def stage_layers(net=None):
    """The Linear layers each stage trains: stage 1 with its decoder (the autoencoder step), the
    head alone on cached features, the whole network when fine-tuning."""
    import twostage_lib as ts
    from twostage_lib.models import decoder_for

    net = net or ts.TwoStageNetwork()
    return {"stage1": linears(net.stage1, decoder_for(net)), "stage2": linears(net.stage2), "finetune": linears(net)}


def gemm_only_rates(repeats=5):
    """The other ceiling: samples/s if a training step were nothing but its own matrix products.

    For each stage, batch size and precision, the step's forward and backward products (the shapes
    ``linear_flops`` counts) run back to back on ready tensors, with nothing else between them.
    Small matrices run below the square-matrix ceiling; this measures how far, on this machine.
    """
    import torch.nn.functional as F

    torch.manual_seed(0)
    rates = {}
    for stage, layers in stage_layers().items():
        shapes = [(layer.in_features, layer.out_features) for layer in layers]
        for bs in (BLOG_BATCH, DEFAULT_BATCH[stage]):
            for precision in PRECISIONS:
                dtype = torch.bfloat16 if precision == "bf16" else torch.float32
                xs = [torch.randn(bs, i, dtype=dtype) for i, _ in shapes]
                ws = [torch.randn(o, i, dtype=dtype) for i, o in shapes]
                gs = [torch.randn(bs, o, dtype=dtype) for _, o in shapes]

                def step():
                    for x, w in zip(xs, ws):
                        F.linear(x, w)  # forward
                    for k, (x, w, g) in enumerate(zip(xs, ws, gs)):
                        g.t().mm(x)  # weight gradient
                        if k > 0:
                            g.mm(w)  # input gradient (the first layer's input needs none)

                for _ in range(20):
                    step()
                reps = max(20, int(2e9 / (bs * linear_flops(layers))))  # about 2 GFLOP a timing
                best = float("inf")
                for _ in range(repeats):
                    start = time.perf_counter()
                    for _ in range(reps):
                        step()
                    best = min(best, (time.perf_counter() - start) / reps)
                rates[f"{stage}/{path_key(bs, precision)}"] = bs / best
    return rates


def default_precisions(batch_size):
    """What precision="auto" picks on this machine for each stage at ``batch_size``: the library's own rule."""
    from twostage_lib.runtime import precision_for

    cpu = torch.device("cpu")
    return {
        stage: precision_for([p for layer in layers for p in layer.parameters()], batch_size, cpu)
        for stage, layers in stage_layers().items()
    }


def flops_per_sample():
    import twostage_lib as ts

    net = ts.TwoStageNetwork()
    return {
        **{stage: linear_flops(layers) for stage, layers in stage_layers(net).items()},
        "blog_stage1-as-written": linear_flops(linears(net.stage1)),
        "blog_stage2": 2 * sum(layer.in_features * layer.out_features for layer in linears(net.stage1))
        + linear_flops(linears(net.stage2)),
    }


def machine_info() -> dict:
    """The machine a run measures, saved with its results so that a redrawn table names it."""
    from twostage_lib.runtime import describe_machine

    cpu = describe_machine(torch.device("cpu"))["cpu"]  # the one place that reads the CPU's name
    return {
        "machine": platform.machine(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "precisions": list(PRECISIONS),
        "default_batch": DEFAULT_BATCH,
        "defaults": {str(bs): default_precisions(bs) for bs in sorted({BLOG_BATCH, *DEFAULT_BATCH.values()})},
    }

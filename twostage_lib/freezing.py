"""Freezing stage 1 (notebook 03), done so that frozen really means unchanged."""

from __future__ import annotations

import torch


def freeze_stage1(model) -> None:
    """Stop stage 1 from learning: no gradients, no stale gradients, eval mode.

    ``requires_grad=False`` alone is not enough when an optimizer already holds state for these
    parameters and their old ``.grad`` tensors are kept (``zero_grad(set_to_none=False)``): Adam's
    momentum then keeps moving them. Setting ``.grad`` to None makes every optimizer skip them.
    """
    for p in model.stage1.parameters():
        p.requires_grad_(False)
        p.grad = None
    model.stage1.eval()


def unfreeze_stage1(model) -> None:
    for p in model.stage1.parameters():
        p.requires_grad_(True)
    model.stage1.train()


def is_frozen(module) -> bool:
    return all(not p.requires_grad for p in module.parameters())


def snapshot(module) -> dict:
    """A copy of every parameter and buffer, to check later that nothing moved. The copy is kept on
    the CPU: training may move the module to a GPU, and the copy must still compare with it."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def unchanged(module, before: dict) -> bool:
    """True when every tensor is bit-for-bit equal to ``before`` (``torch.equal``, not a tolerance),
    wherever each one lives (copying between devices changes no bit)."""
    now = module.state_dict()
    return now.keys() == before.keys() and all(torch.equal(now[k].cpu(), before[k].cpu()) for k in now)

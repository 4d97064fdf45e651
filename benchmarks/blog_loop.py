"""The original blog post's training loop, as written: a per-sample DataLoader, batch 32."""

from __future__ import annotations

import time

import torch
import torch.nn as nn

from .common import BLOG_BATCH, data_root

WINDOW, WINDOWS = 1.5, 3  # the blog post's code' loader: best of 3 windows of 1.5 s of stepping


def blog_loader(batch_size=BLOG_BATCH):
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    train = datasets.MNIST(str(data_root()), train=True, transform=transform, download=False)
    return torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True)


def blog_step(stage, model, optimizer, decoder=None):
    """One training step as the blog post's code write it, for stage1, stage2 or finetune (slide 5).

    With a ``decoder``, stage 1 uses a real reconstruction loss in the blog's loop (the same work
    as the library's autoencoder step); without one, the blog post's code' zero loss as written.
    """
    mse, ce = nn.MSELoss(), nn.CrossEntropyLoss()

    def step(inputs, labels):
        inputs = inputs.view(inputs.size(0), -1)
        optimizer.zero_grad()
        if stage == "stage1" and decoder is not None:
            loss = mse(decoder(model.stage1(inputs)), inputs)
        elif stage == "stage1":
            features = model.stage1(inputs)
            loss = mse(features, features.detach())
        elif stage == "stage2":
            loss = ce(model.stage2(model.stage1(inputs).detach()), labels)
        else:
            loss = ce(model(inputs), labels)
        loss.backward()
        optimizer.step()
        return loss.item()  # the blog post's code' running_loss += loss.item()

    return step


class BlogLoop:
    """The the blog's training loop for one stage, timed in windows of stepping (epochs restart as needed)."""

    def __init__(self, stage, fixed_loss):
        import twostage_lib as ts
        from twostage_lib.models import decoder_for

        ts.seed_everything(0)
        model = ts.TwoStageNetwork()
        decoder = decoder_for(model) if fixed_loss else None
        params = list(model.parameters()) + (list(decoder.parameters()) if decoder else [])
        self.step = blog_step(stage, model, torch.optim.Adam(params, lr=1e-3), decoder)
        self.loader = blog_loader()
        self.batches = iter(self.loader)

    def next_batch(self):
        try:
            return next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            return next(self.batches)

    def window(self, seconds=WINDOW):
        """Samples per second over ``seconds`` of stepping."""
        seen, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            inputs, labels = self.next_batch()
            self.step(inputs, labels)
            seen += len(labels)
        return seen / (time.perf_counter() - start)


def worker_blog(stage, fixed_loss=False):
    loop = BlogLoop(stage, fixed_loss)
    for _ in range(20):  # warm-up
        loop.step(*loop.next_batch())
    return {"samples_per_s": max(loop.window() for _ in range(WINDOWS))}

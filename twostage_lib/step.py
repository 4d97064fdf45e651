"""One training step (forward, backward, update), and on a GPU its replay from a CUDA graph
(docs/decisions.md, "The GPU at its limit").

``make_step`` builds the step every stage runs; ``fit`` calls it once a batch. On a GPU,
``StepGraph`` replays each batch's step from a CUDA graph recorded for its shape. This network is
too small to keep a GPU busy: a step is a few hundred kernels of a few microseconds each, and Python
takes longer to launch them than the GPU takes to run them. A CUDA graph records a step's kernels once and then
launches them all at once. What a replay uses is fixed when it is recorded, so:

- each batch is copied into the same buffers, so a graph is recorded for each batch shape: one for
  the full batches, one for the smaller last batch (no image is dropped, nothing padded); numbers
  that change from step to step (self-training's ramps) are copied into tensors the same way;
- the random number generators are registered with the graph, so each replay draws new numbers;
- the learning rates are read from tensors, into which a scheduler's value is copied before each
  replay;
- what the step does in Python runs once, while recording: only steps that keep no state in Python
  between steps can be replayed (the library's own stages say so: ``fit(replayable=...)``).

Recording needs a CUDA device and the library's fused Adam. Where it fails (a step that reads a
value on the host, an operation a graph cannot hold), a warning says why and training goes on step
by step: the same training, only slower.
"""

from __future__ import annotations

import warnings

import torch

from .checks import scalar_loss

WARMUP_STEPS = 3  # eager steps first, on a side stream: Adam's state and the libraries' lazy set-up happen there
MAX_SHAPES = 4  # graphs recorded at most in one run, one for each batch shape (full, last, self-training's pairs)


def reads_every_step(settings, device) -> bool:
    """Whether the loop reads each step's loss on the host before the update (a NaN then never moves a
    weight). On a CPU the value is there, free; on a GPU each read waits for the GPU to finish the
    step, so the loss is kept on the device and read once, after the epoch (docs/decisions.md)."""
    if settings.read_every_step is not None:
        return bool(settings.read_every_step)
    return device.type == "cpu"


def make_step(optimizer, loss_fn, guard, settings, *, augment=None, mixed=False):
    """One training step, ``step(x, y) -> (loss, gradient norm or None)``: forward (in bfloat16 where
    the precision policy chose it), backward, clipping, update. Where the loss is read every step
    (``reads_every_step``), a NaN loss or gradient stops training before the update; otherwise it
    reads nothing on the host, so a CUDA graph can record it (``StepGraph``)."""
    params = guard.params
    clip = settings.clip_grad_norm
    every_step = reads_every_step(settings, params[0].device)

    def step(x, y):
        # forward. Autocast's cache of cast weights stays on when recorded: it lives and is cleared inside
        # the step, and turning it off changes the numbers where a step uses a weight twice (self-training)
        with torch.autocast(params[0].device.type, dtype=torch.bfloat16, enabled=mixed):
            x = augment(x) if augment is not None else x
            loss = loss_fn(x, y)
        if guard.step == 0:
            scalar_loss(loss, f"{guard.stage}'s loss")
        if every_step:  # read on the host: a NaN never moves a weight (docs/decisions.md)
            guard.check_loss(loss.item(), guard.step, x)
        # backward, clip (a non-finite gradient norm then stops training before the update)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = None
        if clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, clip)  # the norm before clipping
            if every_step:
                guard.check_gradient(norm.item(), x)
        # update
        optimizer.step()
        return loss.detach(), norm

    return step


def training_step(optimizer, loss_fn, guard, settings, augment, precision, generators):
    """The step ``fit`` runs each batch: ``make_step``'s, replayed from a CUDA graph (``StepGraph``) where
    the stage allows it (``generators`` not None), ``settings.cuda_graph`` is on, the loss is not read
    every step and the device and optimizer can record one."""
    device = guard.params[0].device
    graphed = (
        generators is not None
        and settings.cuda_graph
        and not reads_every_step(settings, device)
        and can_record(optimizer, device)
    )
    step = make_step(optimizer, loss_fn, guard, settings, augment=augment, mixed=precision == "bf16")
    return StepGraph(step, optimizer, generators) if graphed else step


def can_record(optimizer, device) -> bool:
    """A CUDA device and Adam's fused update (one kernel; the only optimizer this loop replays)."""
    return (
        device.type == "cuda"
        and isinstance(optimizer, torch.optim.Adam)
        and all(group.get("fused") for group in optimizer.param_groups)
    )


class StepGraph:
    """``step(x, y) -> (loss, gradient norm or None)`` for each batch, replayed from a recorded CUDA
    graph: one graph for each batch shape (the full batches, the last smaller one), recorded after
    ``warmup`` eager steps of that shape, at most ``shapes`` of them; any other batch runs ``step``
    itself. ``y`` may be a tuple of tensors, numbers and None (a step's further inputs: the loop's
    ``feed``); a number is replayed from a tensor holding it. ``generators``: the CUDA generators
    ``step`` draws from besides the default one."""

    def __init__(self, step, optimizer, generators=(), warmup=WARMUP_STEPS, shapes=MAX_SHAPES):
        self.step = step
        self.optimizer = optimizer
        self.generators = [g for g in generators if g is not None and g.device.type == "cuda"]
        self.warmup = warmup
        self.shapes = shapes
        self.seen = {}  # eager steps taken so far, for each batch shape (``signature``)
        self.recordings = {}  # the recorded step, for each batch shape
        self.failed = None  # why recording failed; then every step runs eagerly

    @property
    def replaying(self) -> bool:
        return bool(self.recordings)

    def __call__(self, x, y):
        key = signature((x, y))
        recording = self.recordings.get(key)
        if recording is None:
            if self.failed is not None or len(self.recordings) >= self.shapes:
                return self.step(x, y)
            self.seen[key] = self.seen.get(key, 0) + 1
            if self.seen[key] <= self.warmup:
                return self.on_side_stream(x, y)
            recording = self.record(x, y)
            if recording is None:
                return self.step(x, y)
            self.recordings[key] = recording
        return recording(x, y, self.optimizer)

    def on_side_stream(self, x, y):
        """An eager step on a side stream, as recording wants its warm-up (the CUDA graphs notes)."""
        if x.device.type != "cuda":
            return self.step(x, y)
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            out = self.step(x, y)
        torch.cuda.current_stream(x.device).wait_stream(side)
        return out

    def record(self, x, y):
        """Record one step on buffers holding this batch: a ``Recording``, or None (after a warning) when
        it cannot be recorded. Recording trains nothing: the batch is then replayed like every later one."""
        groups = self.optimizer.param_groups
        floats = [(group["lr"], group.get("capturable", False)) for group in groups]
        inputs = buffers((x, y), x.device)
        lrs = [torch.tensor(float(lr), device=x.device) for lr, _ in floats]
        try:
            for group, lr in zip(groups, lrs):
                group["lr"], group["capturable"] = lr, True  # the update reads its rate from the tensor
            replay, outputs = self.capture(lambda: self.step(*inputs))
        except Exception as error:  # noqa: BLE001 - whatever stops recording, training goes on step by step
            self.failed = f"{type(error).__name__}: {error}"
            self.recordings.clear()
            warnings.warn(
                f"this training step could not be recorded as a CUDA graph ({self.failed}); every step now "
                "runs one by one: the same training, slower. LoopSettings(cuda_graph=False) skips the attempt",
                stacklevel=4,
            )
            return None
        finally:
            for group, (lr, capturable) in zip(groups, floats):
                group["lr"], group["capturable"] = lr, capturable
        return Recording(inputs, lrs, replay, outputs)

    def capture(self, run):
        """Record ``run()`` into a CUDA graph: (its replay, its outputs as each replay rewrites them)."""
        graph = torch.cuda.CUDAGraph()
        for generator in self.generators:
            graph.register_generator_state(generator)
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):  # other threads (a notebook's) may use CUDA
            outputs = run()
        return graph.replay, outputs  # the bound replay keeps the graph, and its memory, alive


class Recording:
    """One recorded step: the buffers it reads (the batch, the learning rates) and what it writes."""

    def __init__(self, inputs, lrs, replay, outputs):
        self.inputs = inputs
        self.lrs = lrs
        self.replay = replay
        self.outputs = outputs

    def __call__(self, x, y, optimizer):
        """This batch and the optimizer's rates copied into the buffers, then the step replayed."""
        for buffer, value in zip(leaves(self.inputs), leaves((x, y))):
            if isinstance(value, torch.Tensor):
                buffer.copy_(value)
            elif value is not None:
                buffer.fill_(value)  # a number from the host: no synchronisation
        for lr, group in zip(self.lrs, optimizer.param_groups):
            lr.fill_(group["lr"])  # a scheduler's latest value: a host number, no synchronisation
        self.replay()
        return tuple(self.outputs)


def leaves(inputs) -> list:
    """(x, y) as a flat list: ``y`` may be a tuple of a step's inputs."""
    x, y = inputs
    return [x, *y] if isinstance(y, tuple) else [x, y]


def signature(inputs) -> tuple:
    """What must match for a replay: each tensor's shape and dtype, where the numbers and the Nones are."""
    kinds = [(v.shape, v.dtype) if isinstance(v, torch.Tensor) else v is None for v in leaves(inputs)]
    return (isinstance(inputs[1], tuple), *kinds)


def buffers(inputs, device):
    """(x, y) with each tensor copied and each number held in a float32 tensor on ``device``."""
    held = [hold(v, device) for v in leaves(inputs)]
    return (held[0], tuple(held[1:])) if isinstance(inputs[1], tuple) else tuple(held)


def hold(value, device):
    """A buffer for one input: a copy of a tensor, a tensor holding a number, None for None."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value.clone()
    return torch.tensor(float(value), device=device)

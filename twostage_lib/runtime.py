"""Runtime: the CPU quota, seeds, the device, the network, memory, and the precision policy (bfloat16 or float32)."""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import platform
import random
import socket
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from .checks import env_flag, env_threads, whole

PRECISIONS = ("auto", "fp32", "bf16")
# Below this much work a step (trained weights x batch size) bfloat16 casts cost more than they
# save: docs/decisions.md, "bfloat16 threshold".
BF16_MIN_WORK = 12_000_000


def cpu_quota(cgroup=Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup CPU quota (a Binder or
    Docker limit: cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), which the core count ignores."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    for quota_file, period_file in (("cpu.max", None), ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us")):
        try:
            fields = (cgroup / quota_file).read_text().split()
            quota = fields[0]
            period = fields[1] if period_file is None else (cgroup / period_file).read_text()
            if quota not in ("max", "-1"):
                n = min(n, max(1, math.ceil(int(quota) / int(period))))
        except (OSError, ValueError, IndexError):
            continue
    return n


def use_cpu_quota() -> int:
    """Size PyTorch's thread pool to the CPUs this process may really use (``cpu_quota``), not the
    host's cores: on a 1-CPU container it would otherwise oversubscribe. ``TWOSTAGE_THREADS=N``
    sets it, up to that quota. Call it where a process starts (the command line and the notebooks'
    setup do); importing the library changes nothing. Returns the thread count."""
    available = cpu_quota()
    n = env_threads(available) or min(available, torch.get_num_threads())
    if n != torch.get_num_threads():
        torch.set_num_threads(n)
    return n


def online(host="ossci-datasets.s3.amazonaws.com", timeout=2.0) -> bool:
    """Whether ``host`` answers on port 443 within ``timeout`` seconds (the download and the
    pretrained weights ask before trying)."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _libc_trim():
    """glibc's ``malloc_trim``, or None (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _libc_trim()


def release_memory() -> None:
    """Give the memory PyTorch has freed back to the operating system (Linux with glibc; elsewhere
    nothing). glibc keeps freed blocks for reuse, so without this a kernel's memory only grows as
    it trains and evaluates; on a small Binder that is what restarts kernels. Every stage and every
    evaluation ends with it (docs/decisions.md, "Memory")."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def seed_everything(seed=0) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) so a run repeats on the same machine."""
    seed = whole("seed", seed, low=0)  # NumPy takes 0 to 2**32 - 1
    if seed >= 2**32:
        raise ValueError(f"seed must be below 2**32 (NumPy's limit), got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def select_device(device="auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple's MPS, then the CPU; anything else is used as given."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"cannot train on device '{device}'; use 'auto', 'cpu', 'cuda', 'cuda:1' or 'mps'")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{device}' was asked for but no CUDA GPU is available; use device='cpu'")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"no CUDA GPU {device.index}: this machine has {torch.cuda.device_count()} (cuda:0 and up)")
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and not (mps and mps.is_available()):
        raise ValueError("device 'mps' was asked for but there is no Apple MPS device here; use device='cpu'")
    return device


def has_fast_bf16(device) -> bool:
    """True where bfloat16 matrix products run in hardware: CUDA GPUs that support it, and CPUs
    with AVX-512 BF16 or AMX (recent AMD EPYC / Ryzen, Intel Xeon from Sapphire Rapids).
    ``TWOSTAGE_NO_FAST_BF16=1`` (or true, yes, on) answers False, to measure a machine without it on one that has it."""
    if env_flag("TWOSTAGE_NO_FAST_BF16"):
        return False
    if device.type == "cuda":  # Ampere (compute capability 8.0) and later; older GPUs only emulate it
        return torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False


def describe_machine(device) -> dict:
    """What a measurement ran on, saved beside it: the CPU's name, its cores, the device, and
    whether bfloat16 is fast there (timings and bfloat16 results differ between machines)."""
    cpu = ""
    if Path("/proc/cpuinfo").is_file():
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]  # fmt: skip
        cpu = names[0] if names else ""
    if device.type == "cuda":
        cpu = f"{torch.cuda.get_device_name(device)} (GPU) with {cpu or 'a CPU'}"
    return {"cpu": cpu or platform.processor() or platform.machine(), "cores": cpu_quota(),
            "device": device.type, "fast_bf16": has_fast_bf16(device)}  # fmt: skip


def resolve_precision(precision, device, work=None) -> str:
    """``"auto"`` is ``"bf16"`` where the hardware has fast bfloat16 (``has_fast_bf16``) and a step
    does at least ``BF16_MIN_WORK`` (trained weights x batch size; None: assume enough), else ``"fp32"``."""
    if precision not in PRECISIONS:
        raise ValueError(
            f"unknown precision {precision!r}; choose 'auto', 'fp32' (float32 throughout) "
            "or 'bf16' (bfloat16 autocast of the forward pass)"
        )
    if precision == "auto":
        big_enough = work is None or work >= BF16_MIN_WORK
        return "bf16" if big_enough and has_fast_bf16(device) else "fp32"
    if precision == "bf16" and not has_fast_bf16(device):
        warnings.warn(
            f"precision='bf16' on {device}, which has no fast bfloat16: training will likely be "
            "slower than with precision='fp32'",
            stacklevel=2,
        )
    return precision


def precision_for(params, batch_size, device, precision="auto") -> str:
    """The one answer to "bfloat16 for these trained weights at this batch size on this device?"
    (the loop and the benchmark both ask it). ``batch_size`` None: assume a step is big enough."""
    work = sum(p.numel() for p in params) * batch_size if batch_size else None
    return resolve_precision(precision, device, work)

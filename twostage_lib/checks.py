"""Checks at the door: public arguments and environment variables, each refused with the fix.

Every public function checks its own numbers here, before any work starts, so a bad value gets a
message naming the argument instead of an error from inside torch or a wrong result. Every
environment variable the project reads is read here too, and only here (docs/reliability.md).
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from pathlib import Path


def whole(name, value, low=1):
    """``value`` as an int, refused unless it is a whole number >= ``low`` (bools are not numbers)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value != int(value) or value < low:
        raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    return int(value)


def number(name, value, low=None, high=None, *, above=None):
    """``value`` as a float, refused unless finite and within [low, high] (and > ``above``)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value >= low
    if ok and high is not None:
        ok = value <= high
    if ok and above is not None:
        ok = value > above
    if not ok:
        bounds = [f">= {low}" if low is not None else "", f"<= {high}" if high is not None else ""]
        bounds.append(f"> {above}" if above is not None else "")
        wanted = " and ".join(b for b in bounds if b) or "finite"
        raise ValueError(f"{name} must be a finite number {wanted}, got {value!r}")
    return float(value)


def scalar_loss(loss, who="the loss"):
    """A loss must be one number (a 0-d tensor): a per-sample vector would be summed by nothing."""
    shape = tuple(getattr(loss, "shape", ()))
    if not hasattr(loss, "backward") or shape:
        what = f"a tensor of shape {shape}" if hasattr(loss, "backward") else type(loss).__name__
        raise ValueError(
            f"{who} must be a single number (a 0-d tensor), got {what}; average it (loss.mean()) or build "
            "the criterion with reduction='mean'"
        )
    return loss


# ---------------------------------------------------------------- environment variables

VARIABLES = {
    "TWOSTAGE_DATA": "a folder holding MNIST/raw/ (the full files), read by load_mnist",
    "TWOSTAGE_CHECKPOINTS": "the folder where notebooks save and load stage 1 (default: checkpoints/)",
    "TWOSTAGE_THREADS": "how many CPU threads PyTorch uses (default: the CPUs this process may use)",
    "TWOSTAGE_NO_FAST_BF16": "1: act as if the CPU had no fast bfloat16 (to measure such a machine)",
}


def _raw(name):
    """The variable's value with surrounding spaces removed; None when unset or empty (an empty value
    means the same as an unset one, not the current folder)."""
    value = os.environ.get(name, "").strip()
    return value or None


def env_folder(name) -> Path | None:
    """A folder named by an environment variable: ``~`` expanded, a file refused; None when unset."""
    value = _raw(name)
    if value is None:
        return None
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name}={value} names a file, not a folder; set {name} to a folder ({VARIABLES[name]})")
    return path


def env_flag(name) -> bool:
    """A yes/no variable: 1, true, yes, on or 0, false, no, off (any case); unset or empty is no."""
    value = _raw(name)
    if value is None:
        return False
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={value!r} is not a yes or no; set it to 1 or 0, or unset it ({VARIABLES[name]})")


def env_threads(available) -> int | None:
    """``TWOSTAGE_THREADS`` as a thread count, or None when unset. A value that is not a whole number
    >= 1 is ignored with a warning naming it (it is read at import, which must not fail); one above
    the ``available`` CPUs is capped to them, with a warning: more threads than CPUs only wait."""
    name = "TWOSTAGE_THREADS"
    value = _raw("TWOSTAGE_THREADS")
    if value is None:
        return None
    try:
        wanted = int(value)
    except ValueError:
        wanted = 0
    if wanted < 1:
        warnings.warn(
            f"{name}={value!r} is not a whole number of threads >= 1 and is ignored (using {available}); "
            f"set e.g. {name}=1, or unset it",
            stacklevel=3,
        )
        return None
    if wanted > available:
        warnings.warn(
            f"{name}={wanted} is more than the {available} CPUs this process may use; using {available} "
            "(more threads than CPUs only wait for each other)",
            stacklevel=3,
        )
        return available
    return wanted

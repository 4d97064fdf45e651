import os
from pathlib import Path

import pytest
import torch

import twostage_lib as ts

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def full_root():
    """Where the full raw MNIST files are (TWOSTAGE_DATA or ../shared/data), or None."""
    for root in (os.environ.get("TWOSTAGE_DATA"), SHARED):
        if root and ts.data._raw_dir(root, "mnist") is not None:
            return Path(root)
    return None


needs_full = pytest.mark.skipif(full_root() is None, reason="full MNIST raw files not found "
                                "(set TWOSTAGE_DATA to a folder holding MNIST/raw/)")


@pytest.fixture(scope="session")
def bundled():
    return ts.load_mnist(source="bundled", verbose=False)


@pytest.fixture
def small(bundled):
    """2,000 training images (200 per digit) and 1,000 test images: enough to see learning, fast."""
    train = ts.labels_per_class(bundled.train, 200, seed=0)
    return train, bundled.test.subset(torch.arange(1000))


@pytest.fixture
def model():
    torch.manual_seed(0)
    return ts.TwoStageNetwork()

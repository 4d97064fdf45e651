import gzip

import pytest
import torch

import twostage_lib as ts

ts.use_cpu_quota()  # the test process starts here: torch's threads follow the CPU quota, as the CLI's do


def full_root():
    """The folder holding MNIST/raw/ with the full files ($TWOSTAGE_DATA, which `make test` sets), or None."""
    folder = ts.mnist.full_data_dir()
    return None if folder is None else folder.parents[1]


def extracted_full(folder):
    """``folder``, now holding the full MNIST files extracted in ``MNIST/raw/`` (as torchvision reads
    them, and as a test that changes one byte needs them), from the plain or .gz files $TWOSTAGE_DATA
    holds (tools/gpu_data.sh carries the .gz alone)."""
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in (stem for pair in ts.mnist._FILES.values() for stem in pair):
        found = ts.mnist._find(ts.mnist.full_data_dir(), stem)
        (raw / stem).write_bytes(gzip.decompress(found.read_bytes()) if found.suffix == ".gz" else found.read_bytes())
    return folder


needs_full = pytest.mark.skipif(
    full_root() is None,
    reason="full MNIST raw files not found (set TWOSTAGE_DATA to a folder holding MNIST/raw/; `make test` does)",
)


@pytest.fixture(scope="session")
def bundled():
    return ts.load_mnist(source="bundled", verbose=False)


@pytest.fixture(scope="session")
def contrastive_pool(bundled):
    """A contrastive stage 1 (5 epochs of 5,000 bundled images) and those images, trained once a
    session for the tests of what builds on it; copy the network before training it further."""
    pool = bundled.train.subset(torch.arange(5000))
    ts.seed_everything(0)
    net = ts.TwoStageNetwork()
    ts.train_stage1(net, pool, objective="contrastive", epochs=5, lr=3e-3, progress=False)
    return net, pool


@pytest.fixture
def small(bundled):
    """2,000 training images (200 per digit) and 1,000 test images: enough to see learning, fast."""
    train = ts.labels_per_class(bundled.train, 200, seed=0)
    return train, bundled.test.subset(torch.arange(1000))


@pytest.fixture
def model():
    torch.manual_seed(0)
    return ts.TwoStageNetwork()

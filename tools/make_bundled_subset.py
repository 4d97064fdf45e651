"""Generate twostage_lib/bundled/mnist_subset.npz from the raw MNIST files.

The subset: the full 10,000-image test set and a stratified 10,000-image training subset
(1,000 per digit, drawn with a fixed seed). Usage:

    python tools/make_bundled_subset.py ../shared/data
"""

import argparse

import numpy as np
import torch

from twostage_lib.mnist import BUNDLED, find_raw_dir, read_raw
from twostage_lib.subsets import labels_per_class
from twostage_lib.tensors import TensorData


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="folder in torchvision's layout (holding MNIST/raw/)")
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = find_raw_dir(args.root, "mnist")
    if folder is None:
        raise SystemExit(f"no MNIST raw files under {args.root}")
    raw = read_raw(folder)
    train = labels_per_class(TensorData(*raw["train"]), args.per_class, seed=args.seed)
    x_test, y_test = raw["test"]
    BUNDLED.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        BUNDLED,
        x_train=train.images.numpy(),
        y_train=train.labels.numpy().astype(np.uint8),
        x_test=x_test.numpy(),
        y_test=y_test.numpy().astype(np.uint8),
    )
    counts = torch.bincount(train.labels).tolist()
    print(f"wrote {BUNDLED} ({BUNDLED.stat().st_size / 1e6:.1f} MB): train {len(train)} {counts}, test {len(y_test)}")


if __name__ == "__main__":
    main()

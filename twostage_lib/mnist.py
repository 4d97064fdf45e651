"""MNIST's files: finding, checking (header, size, checksum) and reading the raw IDX files in
torchvision's layout, downloading them when online, and the subset bundled in the package."""

from __future__ import annotations

import gzip
import hashlib
import math
import os
from pathlib import Path

import numpy as np
import torch

from .checks import env_folder
from .runtime import online
from .tensors import Splits, TensorData, check_labels, pixel_stats

# torchvision's folder name for each dataset it knows by name
DATASETS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}


SOURCES = ("auto", "full", "bundled")


BUNDLED = Path(__file__).parent / "bundled" / "mnist_subset.npz"


_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


NUM_CLASSES = 10  # every dataset here has ten classes, labelled 0-9


# SHA-256 of the published MNIST files (uncompressed): a wrong pixel byte has no invalid value, so
# only a checksum can catch it. Files of another size (a subset, a variant) are checked by range only.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": (47040016, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train-labels-idx1-ubyte": (60008, "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "t10k-images-idx3-ubyte": (7840016, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "t10k-labels-idx1-ubyte": (10008, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}


class DataNotFoundError(FileNotFoundError):
    """The requested data is not on disk and cannot be downloaded."""


def read_idx(path, checksums=None) -> np.ndarray:
    """Read one IDX file (plain or .gz) as a numpy array, checking its header against its size and,
    when ``checksums`` knows the file's name and size, its SHA-256.

    The array is writable and shares the buffer the file was read into: the images are held once,
    not read and then copied (docs/decisions.md, "Memory")."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            raw = bytearray()
            with gzip.open(path, "rb") as f:
                while chunk := f.read(1 << 22):
                    raw += chunk
        else:
            with open(path, "rb") as f:
                raw = bytearray(os.fstat(f.fileno()).st_size)
                del raw[f.readinto(raw) :]  # in place: a file that shrank while read is then short
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path} is corrupted ({exc}); delete it and copy or download it again") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(
            f"{path} is not an IDX file of unsigned bytes (bad header); delete it and copy or download it again"
        )
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    start = 4 + 4 * ndim
    if len(raw) - start != math.prod(dims):
        raise ValueError(
            f"{path} is corrupted or truncated: header says {dims} "
            f"({math.prod(dims)} bytes) but it holds {len(raw) - start}; "
            "delete it and copy or download it again"
        )
    stem = path.name.removesuffix(".gz")
    size, digest = (checksums or {}).get(stem, (None, None))
    if len(raw) == size and _sha256(path, raw) != digest:
        raise ValueError(
            f"{path} does not match the published MNIST file (SHA-256 differs: some byte is "
            "wrong); delete it and copy or download it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(dims)


_DIGESTS = {}  # (file, size, modified): SHA-256; notebooks and tests load the same files many times


def _sha256(path: Path, raw: bytes) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = hashlib.sha256(raw).hexdigest()
    return _DIGESTS[key]


def find_raw_dir(root, name="mnist") -> Path | None:
    """The folder holding the four raw IDX files of dataset ``name`` under ``root`` (torchvision's
    layout ``root/MNIST/raw/``, or ``root/raw/``, or ``root`` itself); None if there is none."""
    if not root:
        return None
    root = Path(root).expanduser()
    for candidate in (root / DATASETS[name] / "raw", root / "raw", root):
        if all(_find(candidate, f) for pair in _FILES.values() for f in pair):
            return candidate
    return None


def _find(folder: Path, stem: str) -> Path | None:
    for p in (folder / stem, folder / f"{stem}.gz"):
        if p.is_file():
            return p
    return None


def full_data_dir(root=None, name="mnist") -> Path | None:
    """Where the full raw files are: under ``root`` when one is given, else under ``$TWOSTAGE_DATA``;
    None if that folder does not hold them. ``load_mnist``, the tests and the benchmark look here."""
    return find_raw_dir(root or env_folder("TWOSTAGE_DATA"), name)


def read_raw(folder: Path, name="mnist") -> dict:
    """The train and test arrays of one raw folder: {"train": (images, labels), "test": ...}.

    Checks every file: its header against its size (``read_idx``), 28x28 images, one label per
    image, each label in 0-9, and for MNIST the published files' checksums."""
    out = {}
    for split, (img, lab) in _FILES.items():
        img_path = _find(folder, img)
        lab_path = _find(folder, lab)
        checksums = MNIST_SHA256 if name == "mnist" else None
        images = torch.from_numpy(read_idx(img_path, checksums))
        labels = torch.from_numpy(read_idx(lab_path, checksums).astype(np.int64))
        if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise ValueError(
                f"{folder}: {split} images {tuple(images.shape)}, labels {tuple(labels.shape)}: "
                "not 28x28 images with one label each; copy or download the raw files again"
            )
        if len(images) == 0:
            raise ValueError(f"{img_path} holds no images (its header says 0); copy or download the raw files again")
        check_labels(labels, NUM_CLASSES, lab_path, "the classes", "the file is corrupted: copy or download it again")
        out[split] = (images, labels)
    return out


def _make_splits(arrays: dict, name: str, source: str, location: str) -> Splits:
    x_train = arrays["train"][0]
    mean, std = pixel_stats(x_train)
    train = TensorData(x_train, arrays["train"][1], mean, std)
    test = TensorData(arrays["test"][0], arrays["test"][1], mean, std)
    return Splits(train, test, name, source, location)


def _download(name: str, root: Path) -> Path | None:
    from torchvision import datasets

    cls = getattr(datasets, DATASETS[name])
    for train in (True, False):
        cls(str(root), train=train, download=True)
    return find_raw_dir(root, name)


def load_bundled() -> Splits:
    """The MNIST subset shipped in the package: 10k stratified training images, the full test set."""
    if not BUNDLED.is_file():
        raise DataNotFoundError(
            f"the bundled subset {BUNDLED} is missing; reinstall twostage_lib "
            "or regenerate it with tools/make_bundled_subset.py"
        )
    try:
        with np.load(BUNDLED) as z:
            arrays = {
                s: (torch.from_numpy(z[f"x_{s}"]), torch.from_numpy(z[f"y_{s}"]).long()) for s in ("train", "test")
            }
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(
            f"the bundled subset {BUNDLED} is corrupted ({exc}); reinstall twostage_lib "
            "or regenerate it with tools/make_bundled_subset.py"
        ) from exc
    for split, (_, labels) in arrays.items():
        check_labels(labels, NUM_CLASSES, f"{BUNDLED} ({split})", "the classes", "reinstall twostage_lib")
    return _make_splits(arrays, "mnist", "bundled", "bundled 10k-train subset in the package")


def load_mnist(root=None, source="auto", dataset="mnist", download_root=None, verbose=True) -> Splits:
    """Load MNIST (or ``fashion_mnist``, ``kmnist``) into memory.

    ``source="auto"`` tries, in order: the raw files under ``root`` or ``$TWOSTAGE_DATA``
    (torchvision's layout, ``.gz`` alone is enough); torchvision's download when online; the
    bundled MNIST subset. ``"full"`` insists on the whole dataset; ``"bundled"`` on the subset.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if source == "bundled":
        if dataset != "mnist":
            raise ValueError(f"only MNIST is bundled; for {dataset} use source='full' with its files")
        splits = load_bundled()
    else:
        splits = _load_full(
            root, dataset, allow_fallback=(source == "auto" and dataset == "mnist"), download_root=download_root
        )
    if verbose:
        print(f"Data: {splits.describe()}")
    return splits


def _load_full(root, dataset, allow_fallback, download_root) -> Splits:
    folder = full_data_dir(root, dataset)
    if folder is not None:
        return _make_splits(read_raw(folder, dataset), dataset, "full", str(folder))
    named = root or env_folder("TWOSTAGE_DATA")  # a folder the caller chose, or None
    target = Path(download_root or named or Path.home() / ".cache" / "twostage").expanduser()
    if online():
        try:
            folder = _download(dataset, target)
        except Exception as exc:  # noqa: BLE001 - any download failure falls through to the message
            folder = None
            reason = f"the download failed ({exc})"
        else:
            reason = "the download did not produce the raw files"
        if folder is not None:
            return _make_splits(read_raw(folder, dataset), dataset, "download", str(folder))
    else:
        reason = "there is no network to download it"
    if allow_fallback and not named:  # a folder named by the caller that holds nothing is an error, not a fallback
        return load_bundled()
    where = (
        f"{Path(named).expanduser()} holds no {dataset} raw files"
        if named
        else "no folder was given (no root, TWOSTAGE_DATA unset)"
    )
    raise DataNotFoundError(
        f"{dataset} not found: {where}, and {reason}. Put the raw IDX files "
        f"(train-images-idx3-ubyte[.gz] and the other three) in <root>/{DATASETS[dataset]}/raw/ and "
        "pass root=<root> or set TWOSTAGE_DATA=<root>; or use source='bundled' for the MNIST subset"
    )

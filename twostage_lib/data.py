"""Data: MNIST-style datasets as in-memory tensors, a fast batch iterator, and subset helpers.

The original blog post builds a per-sample ``DataLoader`` with ``ToTensor`` + ``Normalize``. For a 47 MB dataset
that is mostly Python overhead, so here the images stay in memory as uint8, are normalized once
on the training device, and batches are slices of a shuffled index.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checks import env_folder, number, whole

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


def class_indices(labels) -> torch.Tensor:
    """Labels as int64 class indices; one-hot rows and fractions are refused."""
    labels = torch.as_tensor(labels)
    if labels.dim() != 1:
        raise ValueError(
            f"labels must be one class index per image (shape (N,)), got shape {tuple(labels.shape)}; "
            "for one-hot or probability rows pass labels.argmax(1)"
        )
    if labels.is_floating_point() and not bool((labels == labels.round()).all()):
        bad = labels[labels != labels.round()][0].item()
        raise ValueError(
            f"labels must be whole class indices, got {bad:g}; round them or map each class to 0, 1, 2, ..."
        )
    return labels.long()  # negative ones (-1 for "unlabelled") pass: stage 1 ignores labels


INTEGER_TYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)


def check_images(images, where="images") -> torch.Tensor:
    """The one check of an image array's layout and type where it enters (``TensorData``): one row or
    image per sample, (N, features), (N, H, W) or (N, C, H, W); channels first; real numbers. Integer
    pixels must be 8-bit (0-255) and are held as uint8, so they mean what uint8 pixels mean; bool
    pixels are read as 0 and 1."""
    images = torch.as_tensor(images)
    shape = tuple(images.shape)
    if images.dim() < 2 or images.dim() > 4:
        raise ValueError(
            f"{where}: shape {shape} is not a stack of images; pass (N, features), (N, H, W) or "
            "(N, C, H, W), one row or image per sample"
        )
    if images.dim() == 4 and shape[3] in (1, 3, 4) and shape[1] not in (1, 3, 4):
        raise ValueError(
            f"{where}: shape {shape} looks channels-last (N, H, W, C); PyTorch reads images "
            "channels-first (N, C, H, W): pass x.permute(0, 3, 1, 2)"
        )
    if images.is_complex() or not (images.is_floating_point() or images.dtype in INTEGER_TYPES):
        raise ValueError(
            f"{where}: pixels of type {images.dtype} are not numbers the network can read; pass "
            "uint8 (0-255) or float images"
        )
    if images.dtype in INTEGER_TYPES and images.dtype not in (torch.uint8, torch.bool):  # bool: 0/1, read as floats
        if len(images) and (int(images.min()) < 0 or int(images.max()) > 255):
            raise ValueError(
                f"{where}: integer pixels must be 0-255 (8-bit), these run from {int(images.min())} "
                f"to {int(images.max())}; scale them to 0-1 floats or to 0-255"
            )
        images = images.to(torch.uint8)
    return images


def check_scaled(images, where="x") -> None:
    """Float images read as they are (an (X, y) pair, a Dataset: no normalization) must be scaled:
    images (3-D or 4-D, or rows of a square number of pixels) of whole numbers from 0 up to 128-255
    are 0-255 pixels that were cast to float and never divided by 255. Tabular rows pass."""
    if not images.is_floating_point() or not len(images):
        return
    row = math.prod(images.shape[1:])
    image_like = images.dim() >= 3 or (row >= 64 and math.isqrt(row) ** 2 == row)
    top = float(images.max())
    if not image_like or not 128 <= top <= 255 or float(images.min()) < 0:
        return
    if bool((images == images.round()).all()):
        raise ValueError(
            f"{where}: float pixels that are whole numbers up to {float(images.max()):g} are 0-255 "
            "pixels never scaled; divide them by 255, pass them as uint8, or use ts.from_tensors, "
            "which normalizes them"
        )


class TensorData:
    """Images (uint8, or float already scaled) and integer labels held in memory.

    ``mean`` and ``std`` are the training split's pixel statistics; the test split carries the
    training values so both are normalized the same way. A ``subset`` shares its parent's images
    and keeps only the indices of its own (docs/decisions.md, "Memory"): ``validation_split`` of
    MNIST's 60,000 images adds 0.4 MB of indices, not a 42 MB copy. ``images`` gives the subset's
    images as a tensor of their own.
    """

    def __init__(self, images, labels, mean=0.0, std=1.0, source="images", *, index=None):
        self.stored = images  # the images as given; a subset's parent's, shared
        self.index = index  # a subset's rows of ``stored`` (a LongTensor), or None: all of them
        self.labels, self.mean, self.std, self.source = labels, mean, std, source
        self._on_device = {}
        self._fingerprint = None
        self._check()

    def _check(self):
        """The one check where images and labels enter: equal lengths, finite pixels, whole labels.
        A subset's images were checked with its parent's."""
        n_images = len(self.stored) if self.index is None else len(self.index)
        if n_images != len(self.labels):
            raise ValueError(
                f"{self.source}: images and labels differ in length ({n_images} vs {len(self.labels)}); "
                "pass one label per image"
            )
        if self.index is None:
            self.stored = check_images(self.stored, self.source)
        if self.index is None and self.stored.is_floating_point() and not bool(torch.isfinite(self.stored).all()):
            bad = int((~torch.isfinite(self.stored)).reshape(len(self.stored), -1).any(1).nonzero()[0])
            raise ValueError(f"{self.source}: image {bad} holds a NaN or infinite pixel; fix or drop it "
                             "before training (one such pixel would make every normalized image NaN)")  # fmt: skip
        self.labels = class_indices(self.labels)

    @property
    def images(self) -> torch.Tensor:
        """The images, one per label (for a subset, gathered from the parent's: a copy)."""
        return self.stored if self.index is None else self.stored[self.index]

    def __repr__(self):
        kind = "subset of " if self.index is not None else ""
        return (f"TensorData({len(self)} images {'x'.join(map(str, self.image_shape))}, {kind}{self.stored.dtype} "
                f"images, {self.num_classes} classes)")  # fmt: skip

    def __len__(self):
        return len(self.labels)

    @property
    def image_shape(self) -> tuple:
        return tuple(self.stored.shape[1:])

    @property
    def num_features(self) -> int:
        """Input size after flattening (784 for MNIST): inferred, never hard-coded."""
        return math.prod(self.image_shape)

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self) else 0

    def fingerprint(self) -> str:
        """A SHA-256 of the images, in order, with their shape and type: equal for the same images
        however they are held (a subset or a copy), different for another data set of the same size
        (MNIST, Fashion-MNIST and KMNIST all have 60,000). Labels are left out: stage 1 never reads
        them. Computed once per object (about 0.1 s for MNIST's 60,000 images)."""
        if self._fingerprint is None:
            digest = hashlib.sha256(f"{self.stored.dtype} {self.image_shape} {len(self)}".encode())
            for start in range(0, len(self), 8192):
                end = start + 8192
                chunk = self.stored[start:end] if self.index is None else self.stored[self.index[start:end]]
                digest.update(chunk.cpu().contiguous().view(torch.uint8).numpy().tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def subset(self, index) -> TensorData:
        """The images at ``index`` (positions in this data), sharing this data's stored images."""
        index = torch.as_tensor(index, dtype=torch.long)
        in_stored = index if self.index is None else self.index[index]
        return TensorData(self.stored, self.labels[index], self.mean, self.std, self.source, index=in_stored)

    def on(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Flattened, normalized float inputs and labels on ``device``, computed once and cached: the
        whole dataset as float32, 4x the memory of uint8 images. Training reads ``rows`` instead."""
        key = str(torch.device(device))
        if key not in self._on_device:
            rows, labels = self.rows(device)
            self._on_device[key] = (rows[:], labels)
        return self._on_device[key]

    def rows(self, device) -> tuple[Rows, torch.Tensor]:
        """The flattened images on ``device`` as stored (uint8 for MNIST), normalized as rows are
        read, and the labels: what every stage trains on (docs/decisions.md, "Normalizing per batch")."""
        key = ("rows", str(torch.device(device)))
        if key not in self._on_device:
            device = torch.device(device)
            if self.index is None or device.type == "cpu":  # on the CPU a subset reads its parent's images
                flat = self.stored.reshape(len(self.stored), self.num_features).to(device)
                index = self.index
            else:  # an accelerator gets the subset's images alone, not its parent's
                flat, index = self.images.reshape(len(self), self.num_features).to(device), None
            self._on_device[key] = (Rows(flat, self.mean, self.std, index), self.labels.to(device))
        return self._on_device[key]


class Rows:
    """Flat images normalized as they are read: ``rows[i:j]`` and ``rows.index_select(0, idx)``
    give float32 rows, ``(x / 255 - mean) / std`` for uint8 images, ``(x - mean) / std`` for float
    ones, the same numbers as normalizing the whole set at once, without holding it as float32.
    Only the reads the library's loops make are offered (length, shape, device, slices, index_select)."""

    def __init__(self, stored, mean=0.0, std=1.0, index=None):
        self.stored, self.mean, self.std, self.index = stored, mean, std, index

    def __len__(self):
        return len(self.stored) if self.index is None else len(self.index)

    @property
    def shape(self):
        return torch.Size((len(self), *self.stored.shape[1:]))

    @property
    def device(self):
        return self.stored.device

    def normalize(self, stored):
        # uint8 / 255 gives float32 in one pass: the numbers of converting first, then dividing
        x = stored.div(255) if stored.dtype == torch.uint8 else stored.to(torch.float32, copy=True)
        return x.sub_(self.mean).div_(self.std)

    def __getitem__(self, index):
        if self.index is None:
            return self.normalize(self.stored[index])
        rows = self.index[index]  # a subset's rows of the parent; index_select gathers them fastest
        return self.normalize(self.stored.index_select(0, rows) if rows.dim() else self.stored[rows])

    def index_select(self, dim, index):
        if self.index is not None:
            index = self.index.index_select(0, index.to(self.index.device))
        return self.normalize(self.stored.index_select(dim, index))

    def __repr__(self):
        return f"Rows({len(self)} x {self.shape[1]}, stored as {self.stored.dtype}, normalized when read)"


@dataclass
class Splits:
    """Train and test splits plus where they came from."""

    train: TensorData
    test: TensorData
    name: str
    source: str  # "full", "download", "bundled" or "tensors"
    location: str

    def describe(self) -> str:
        return (
            f"{self.name}: {len(self.train):,} train / {len(self.test):,} test images "
            f"from {self.source} ({self.location})"
        )


def from_tensors(x_train, y_train, x_test=None, y_test=None, name="tensors") -> Splits:
    """Wrap any (X, y) tensors. uint8 images are scaled by 1/255; the stats come from X_train.

    Checked here, before any training: finite pixels, whole labels, a non-empty training set, test
    images of the training images' size, test labels among the training classes."""
    x_train = torch.as_tensor(x_train)
    if len(x_train) == 0:
        raise ValueError("x_train holds no images; pass at least one training image")
    train = TensorData(x_train, torch.as_tensor(y_train), source="x_train")
    train.mean, train.std = pixel_stats(x_train)
    if x_test is None:
        return Splits(train, train.subset(torch.arange(0)), name, "tensors", "in memory")
    test = TensorData(torch.as_tensor(x_test), torch.as_tensor(y_test), train.mean, train.std, "x_test")
    if test.image_shape != train.image_shape:
        size = lambda shape: "x".join(map(str, shape))  # noqa: E731
        raise ValueError(f"test images are {size(test.image_shape)} but training images are "
                         f"{size(train.image_shape)}; resize one set to match the other")  # fmt: skip
    check_labels(test.labels, train.num_classes, "y_test", "the training classes")
    check_same_scale(train.stored, test.stored)
    return Splits(train, test, name, "tensors", "in memory")


def pixel_range(images) -> float:
    """The largest pixel, on the scale a batch sees it (uint8 divided by 255)."""
    top = float(images.max()) if len(images) else 0.0
    return top / 255 if images.dtype == torch.uint8 else top


def check_same_scale(train, test) -> None:
    """Test pixels are normalized with the training statistics, so both must be on one scale: a
    tenfold difference in their largest pixel is 0-1 against 0-255, never a real difference."""
    a, b = pixel_range(train), pixel_range(test)
    if len(test) and min(a, b) > 0 and max(a, b) / min(a, b) > 10:
        raise ValueError(
            f"training pixels go up to {a:g} but test pixels up to {b:g} (uint8 counted as /255): "
            "one set is on the 0-255 scale and the other on 0-1; scale them alike"
        )


def pixel_stats(images) -> tuple[float, float]:
    """The pixels' mean and standard deviation, on the 0-1 scale for uint8 images (std 1.0 when
    the pixels do not vary, so that normalizing never divides by zero).

    uint8 images are counted, not copied: a histogram of their 256 values, each taken as the
    float32 ``v / 255`` a batch will see, summed in float64. A float copy of MNIST's 60,000
    training images would hold 188 MB for a moment; the histogram holds 2 KB, and gives MNIST's
    published figures (0.1307, 0.3081) to the last float32 bit of the float copy's."""
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8:
        x = images.float()
        mean, std = float(x.mean()), float(x.std()) if x.numel() > 1 else 0.0
        return mean, (std or 1.0)
    counts = torch.bincount(images.reshape(-1), minlength=256).double()
    values = (torch.arange(256, dtype=torch.float32) / 255).double()
    n = float(counts.sum())
    if n == 0:
        return 0.0, 1.0
    mean = float((counts * values).sum()) / n
    var = float((counts * (values - mean) ** 2).sum()) / (n - 1) if n > 1 else 0.0
    as_float32 = lambda v: float(np.float32(v))  # noqa: E731 - what the float copy would give
    return as_float32(mean), (as_float32(math.sqrt(var)) or 1.0)


def check_labels(labels, num_classes, where, what, fix="relabel the data or add training images of that class"):
    """Every label is a class index in 0..num_classes-1; the first that is not is named with its index."""
    bad = ((labels < 0) | (labels >= num_classes)).nonzero()
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"{where}: label {int(labels[i])} at index {i} is not one of {what} "
                         f"0-{num_classes - 1}; {fix}")  # fmt: skip


def image_shape_of(data, x) -> tuple:
    """(channels, height, width) of the images behind the flat rows ``x``: from a TensorData's
    images, else a square single-channel image."""
    if isinstance(data, TensorData) and len(data.image_shape) >= 2:
        shape = data.image_shape
        return shape if len(shape) == 3 else (1, *shape)
    side = math.isqrt(x.shape[1])
    if side * side != x.shape[1]:
        raise ValueError(
            f"{x.shape[1]} features are not an image: contrastive views and augmentation are 2-D transforms. "
            "For tabular data use objective='autoencoder' or 'denoising' in stage 1 and augment=False when "
            "fine-tuning; for images of another shape pass a TensorData (from_tensors keeps their shape)"
        )
    return (1, side, side)


# ---------------------------------------------------------------- reading files


def read_idx(path, checksums=None) -> np.ndarray:
    """Read one IDX file (plain or .gz) as a numpy array, checking its header against its size and,
    when ``checksums`` knows the file's name and size, its SHA-256.

    The array is writable and shares the buffer the file was read into: the images are held once,
    not read and then copied (47 MB more for MNIST's training images at load)."""
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
        raise ValueError(f"{path} does not match the published MNIST file (SHA-256 differs: some byte is "
                         "wrong); delete it and copy or download it again")  # fmt: skip
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
        img_path, lab_path = _find(folder, img), _find(folder, lab)
        checksums = MNIST_SHA256 if name == "mnist" else None
        images = torch.from_numpy(read_idx(img_path, checksums))
        labels = torch.from_numpy(read_idx(lab_path, checksums).astype(np.int64))
        if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise ValueError(f"{folder}: {split} images {tuple(images.shape)}, labels {tuple(labels.shape)}: "
                             "not 28x28 images with one label each; copy or download the raw files again")  # fmt: skip
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


def _online(host="ossci-datasets.s3.amazonaws.com", timeout=2.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


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
            "or regenerate it with scripts/make_bundled_subset.py"
        )
    try:
        with np.load(BUNDLED) as z:
            arrays = {
                s: (torch.from_numpy(z[f"x_{s}"]), torch.from_numpy(z[f"y_{s}"]).long()) for s in ("train", "test")
            }
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(
            f"the bundled subset {BUNDLED} is corrupted ({exc}); reinstall twostage_lib "
            "or regenerate it with scripts/make_bundled_subset.py"
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
    if _online():
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


# ---------------------------------------------------------------- batches


class Batches:
    """Seeded mini-batches over in-memory tensors: a shuffled index, then slices.

    Each pass draws a new permutation from its own generator, so the same seed gives the same
    batches on every run. ``x`` and ``y`` stay on their device; only indices are created.
    With ``sample_weights`` each pass instead draws ``len(x)`` indices with replacement, in
    proportion to the weights (what ``WeightedRandomSampler`` does, for rebalancing classes).
    """

    def __init__(self, x, y, batch_size=256, shuffle=True, seed=0, drop_last=False, sample_weights=None):
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length ({len(x)} vs {len(y)})")
        batch_size = whole("batch_size", batch_size)
        seed = whole("seed", seed, low=0)
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.generator = torch.Generator().manual_seed(seed)
        self.sample_weights = None
        if sample_weights is not None:
            self.sample_weights = check_sample_weights(sample_weights, len(x))

    def __len__(self):
        n = len(self.x)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n, order = len(self.x), None
        if self.sample_weights is not None:
            order = torch.multinomial(self.sample_weights, n, replacement=True, generator=self.generator)
        elif self.shuffle:
            order = torch.randperm(n, generator=self.generator)
        if order is not None:
            order = order.to(self.x.device)  # one copy per epoch, none per step
        for i in range(len(self)):
            lo, hi = i * self.batch_size, min((i + 1) * self.batch_size, n)
            if order is None:
                yield self.x[lo:hi], self.y[lo:hi]
            else:
                idx = order[lo:hi]  # index_select: the rows of x[idx], faster (docs/decisions.md)
                yield self.x.index_select(0, idx), self.y.index_select(0, idx)


def check_sample_weights(weights, n) -> torch.Tensor:
    """One finite, non-negative weight per sample, not all zero (batches are drawn in proportion)."""
    w = torch.as_tensor(weights, dtype=torch.double).cpu().flatten()
    problem = None
    if len(w) != n:
        problem = f"has {len(w)} weights for {n} samples"
    elif not bool(torch.isfinite(w).all()):
        problem = f"holds NaN or infinity (index {int((~torch.isfinite(w)).nonzero()[0])})"
    elif bool((w < 0).any()):
        problem = f"holds negative weights (index {int((w < 0).nonzero()[0])})"
    elif not bool((w > 0).any()):
        problem = "is all zero, so no sample could be drawn"
    if problem:
        raise ValueError(f"sample_weights {problem}; pass one finite weight >= 0 per sample, e.g. "
                         "ts.class_weights(labels)[labels]")  # fmt: skip
    return w


# ---------------------------------------------------------------- subsets


def holdout_size(n_train, preferred=5000):
    """How many training images to hold out for validation: ``preferred`` when the data has more
    than 4x that, else a tenth of it. The pipeline and the label study share this rule."""
    return preferred if n_train > 4 * preferred else 0.1


def validation_split(data: TensorData, n_val=5000, seed=0) -> tuple[TensorData, TensorData]:
    """Carve a validation set out of the *training* data (never the test set).

    ``n_val`` is a count or, below 1, a fraction. Stratified so every class keeps its share.
    """
    if len(data) < 2:
        raise ValueError(f"validation_split needs at least 2 training images to hold some out, got {len(data)}")
    n_val = int(round(n_val * len(data))) if 0 < n_val < 1 else int(n_val)
    if not 0 < n_val < len(data):
        raise ValueError(f"n_val must be between 1 and {len(data) - 1} (or a fraction), got {n_val}")
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=g)
    # sort the shuffled order by label (stable), then deal every k-th image to validation
    by_class = order[torch.argsort(data.labels[order], stable=True)]
    step = len(data) / n_val
    pick = torch.zeros(len(data), dtype=torch.bool)
    pick[(torch.arange(n_val) * step).long()] = True
    val_idx, train_idx = by_class[pick], by_class[~pick]
    return data.subset(train_idx.sort().values), data.subset(val_idx.sort().values)


def labels_per_class(data: TensorData, n: int, seed=0) -> TensorData:
    """A subset with exactly ``n`` labelled images of every class."""
    if isinstance(n, bool) or not float(n).is_integer() or n < 1:
        raise ValueError(f"labels_per_class needs n >= 1 whole labels per class, got {n}; for every label "
                         "use the data as it is")  # fmt: skip
    n = int(n)
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(data.num_classes):
        idx = (data.labels == c).nonzero().squeeze(1)
        if len(idx) < n:
            raise ValueError(
                f"class {c} has only {len(idx)} images, fewer than the {n} asked for; ask for at "
                f"most {most_labels_per_class(data)} per class here"
            )
        picks.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    return data.subset(torch.cat(picks).sort().values)


def most_labels_per_class(data: TensorData) -> int:
    """The largest ``n`` that ``labels_per_class(data, n)`` can give: the smallest class's count."""
    if not len(data):
        return 0
    return int(torch.bincount(data.labels.clamp(min=0), minlength=data.num_classes).min())


def check_budget(n, train: TensorData, parent: TensorData, flag="--labels-per-class") -> None:
    """A labels-per-class budget the training part can meet, or an error that says why not: the
    validation holdout took the rest of ``parent``, and the largest value allowed."""
    most = most_labels_per_class(train)
    if n is None or n <= most:
        return
    per_class = most_labels_per_class(parent)
    held = len(parent) - len(train)
    raise ValueError(
        f"{flag} {n} is more than this data can give: it has {per_class:,} images per class (at "
        f"least), and {held:,} of its {len(parent):,} training images are held out for validation, "
        f"which leaves at most {most:,} per class; use {flag} {most} or less"
    )


def imbalanced(data: TensorData, ratio=100.0, kind="longtail", seed=0) -> TensorData:
    """An imbalanced subset: the largest class keeps all its images, the smallest 1/``ratio``.

    ``longtail``: counts fall geometrically from class 0 to the last class.
    ``step``: the first half of the classes keep everything, the second half 1/``ratio``.
    """
    if kind not in ("longtail", "step"):
        raise ValueError(f"unknown kind {kind!r}; choose 'longtail' or 'step'")
    ratio = number("ratio (largest / smallest class size)", ratio, low=1.0)
    k = data.num_classes
    n_max = int(torch.bincount(data.labels, minlength=k).min())
    if kind == "longtail":
        counts = [n_max * ratio ** (-c / (k - 1)) for c in range(k)]
    else:
        counts = [n_max if c < k // 2 else n_max / ratio for c in range(k)]
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c, n in enumerate(counts):
        idx = (data.labels == c).nonzero().squeeze(1)
        picks.append(idx[torch.randperm(len(idx), generator=g)[: max(1, int(round(n)))]])
    return data.subset(torch.cat(picks).sort().values)

"""Data as tensors: images and labels checked where they enter (``TensorData``), normalized as
they are read (``Rows``), and any (X, y) pair, Dataset or DataLoader turned into them (``as_tensors``).

The original blog post builds a per-sample ``DataLoader`` with ``ToTensor`` + ``Normalize``. For a
dataset this small that is mostly Python overhead, so here the images stay in memory as uint8, are
normalized on the training device as batches are read, and batches are slices of a shuffled index
(``batches.Batches``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch


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


def first_nonfinite(images, rows=1024) -> int | None:
    """The first image holding a NaN or infinite pixel, or None, read ``rows`` images at a time:
    ``torch.isfinite`` on a whole float set makes temporaries 1.5 times its size (docs/decisions.md, "Memory")."""
    for start in range(0, len(images), rows):
        chunk = images[start : start + rows]
        finite = torch.isfinite(chunk).reshape(len(chunk), -1).all(1)
        if not bool(finite.all()):
            return start + int((~finite).nonzero()[0])
    return None


class TensorData:
    """Images (uint8, or float already scaled) and integer labels held in memory.

    ``mean`` and ``std`` are the training split's pixel statistics; the test split carries the
    training values so both are normalized the same way. A ``subset`` shares its parent's images
    and keeps only the indices of its own, not a copy of them (docs/decisions.md, "Memory").
    ``images`` gives the subset's images as a tensor of their own.
    """

    def __init__(self, images, labels, mean=0.0, std=1.0, source="images", *, index=None):
        self.stored = images  # the images as given; a subset's parent's, shared
        self.index = index  # a subset's rows of ``stored`` (a LongTensor), or None: all of them
        self.labels = labels
        self.mean = mean
        self.std = std
        self.source = source
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
        if self.index is None and self.stored.is_floating_point() and (bad := first_nonfinite(self.stored)) is not None:
            raise ValueError(
                f"{self.source}: image {bad} holds a NaN or infinite pixel; fix or drop it "
                "before training (one such pixel would make every normalized image NaN)"
            )
        self.labels = class_indices(self.labels)

    @property
    def images(self) -> torch.Tensor:
        """The images, one per label (for a subset, gathered from the parent's: a copy)."""
        return self.stored if self.index is None else self.stored[self.index]

    def __repr__(self):
        kind = "subset of " if self.index is not None else ""
        return (
            f"TensorData({len(self)} images {'x'.join(map(str, self.image_shape))}, {kind}{self.stored.dtype} "
            f"images, {self.num_classes} classes)"
        )

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
        them. Computed once per object."""
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
                flat = self.images.reshape(len(self), self.num_features).to(device)
                index = None
            self._on_device[key] = (Rows(flat, self.mean, self.std, index), self.labels.to(device))
        return self._on_device[key]


class Rows:
    """Flat images normalized as they are read: ``rows[i:j]`` and ``rows.index_select(0, idx)``
    give float32 rows, ``(x / 255 - mean) / std`` for uint8 images, ``(x - mean) / std`` for float
    ones, the same numbers as normalizing the whole set at once, without holding it as float32.
    Only the reads the library's loops make are offered (length, shape, device, slices, index_select)."""

    def __init__(self, stored, mean=0.0, std=1.0, index=None):
        self.stored = stored
        self.mean = mean
        self.std = std
        self.index = index

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
        raise ValueError(
            f"test images are {size(test.image_shape)} but training images are "
            f"{size(train.image_shape)}; resize one set to match the other"
        )
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
    a = pixel_range(train)
    b = pixel_range(test)
    if len(test) and min(a, b) > 0 and max(a, b) / min(a, b) > 10:
        raise ValueError(
            f"training pixels go up to {a:g} but test pixels up to {b:g} (uint8 counted as /255): "
            "one set is on the 0-255 scale and the other on 0-1; scale them alike"
        )


def pixel_stats(images) -> tuple[float, float]:
    """The pixels' mean and standard deviation, on the 0-1 scale for uint8 images (std 1.0 when
    the pixels do not vary, so that normalizing never divides by zero).

    uint8 images are counted, not copied: a histogram of their 256 values, each taken as the
    float32 ``v / 255`` a batch will see, summed in float64: no float copy of the images, and
    MNIST's published figures (0.1307, 0.3081) to the last float32 bit of that copy's
    (docs/decisions.md, "Memory")."""
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8:
        x = images.float()
        mean = float(x.mean())
        std = float(x.std()) if x.numel() > 1 else 0.0
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
        raise ValueError(
            f"{where}: label {int(labels[i])} at index {i} is not one of {what} 0-{num_classes - 1}; {fix}"
        )


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


def as_tensors(data, device, batch_size=4096):
    """Flattened inputs (``data.Rows``: normalized float rows as they are read) and labels on
    ``device`` from a TensorData, an (X, y) pair, or a torch ``Dataset`` / ``DataLoader`` (read once
    into memory)."""
    if isinstance(data, TensorData):
        return data.rows(device)
    if isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[0]):
        check_scaled(data[0], "x of the (X, y) pair")  # read as given: floats must already be scaled
        return TensorData(data[0], data[1], source="x of the (X, y) pair").rows(device)
    if isinstance(data, torch.utils.data.Dataset):
        data = torch.utils.data.DataLoader(data, batch_size=batch_size)
    if isinstance(data, torch.utils.data.DataLoader):  # images keep their shape and type: uint8 is scaled
        xs, ys = zip(*((torch.as_tensor(x), torch.as_tensor(y)) for x, y in data))
        x = torch.cat(xs)
        check_scaled(x, "the dataset's images")
        return TensorData(x, torch.cat(ys), source="the dataset's images").rows(device)
    raise TypeError(
        f"cannot train on {type(data).__name__}: pass a TensorData (from load_mnist), "
        "an (X, y) pair of tensors, or a torch Dataset / DataLoader"
    )

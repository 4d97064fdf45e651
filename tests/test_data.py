import gzip
import shutil

import numpy as np
import pytest
import torch
from conftest import extracted_full, full_root, needs_full

import twostage_lib as ts
from twostage_lib import mnist as M
from twostage_lib import tensors as D


def write_idx(path, array):
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def fake_dataset(root, folder="MNIST", n=(60, 20), side=28, gz=False):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, count in zip(("train", "test"), n):
        img, lab = M._FILES[split]
        suffix = ".gz" if gz else ""
        write_idx(raw / (img + suffix), rng.integers(0, 256, (count, side, side)))
        write_idx(raw / (lab + suffix), np.arange(count) % 10)
    return raw


def test_bundled_subset_is_stratified_real_mnist(bundled):
    assert bundled.source == "bundled"
    assert bundled.train.images.dtype == torch.uint8 and bundled.train.images.shape == (10000, 28, 28)
    assert bundled.test.images.shape == (10000, 28, 28)
    assert torch.bincount(bundled.train.labels).tolist() == [1000] * 10
    assert bundled.train.num_features == 784
    # pixel statistics of real MNIST digits, not noise
    assert 0.12 < bundled.train.mean < 0.14 and 0.29 < bundled.train.std < 0.32


@needs_full
def test_full_loader_matches_torchvision_exactly(tmp_path):
    """Our reader against torchvision's, which reads only extracted files (extracted_full)."""
    from torchvision import datasets

    splits = ts.load_mnist(full_root(), source="full", verbose=False)
    assert splits.source == "full"
    reference = extracted_full(tmp_path)
    for train, ours in ((True, splits.train), (False, splits.test)):
        ref = datasets.MNIST(str(reference), train=train, download=False)
        assert torch.equal(ours.images, ref.data)
        assert torch.equal(ours.labels, ref.targets)


@needs_full
def test_gz_files_alone_are_enough(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    src = full_root() / "MNIST" / "raw"
    for pair in M._FILES.values():
        for stem in pair:
            shutil.copy(src / f"{stem}.gz", raw)
    gz = ts.load_mnist(tmp_path, source="full", verbose=False)
    plain = ts.load_mnist(full_root(), source="full", verbose=False)
    assert torch.equal(gz.test.images, plain.test.images) and torch.equal(gz.train.labels, plain.train.labels)


def test_env_variable_is_a_root(tmp_path, monkeypatch):
    fake_dataset(tmp_path)
    monkeypatch.setenv("TWOSTAGE_DATA", str(tmp_path))
    splits = ts.load_mnist(verbose=False)
    assert splits.source == "full" and len(splits.train) == 60 and len(splits.test) == 20


def test_says_which_source_it_used(tmp_path, capsys):
    fake_dataset(tmp_path)
    ts.load_mnist(tmp_path)
    assert "from full" in capsys.readouterr().out


def test_full_offline_without_files_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.delenv("TWOSTAGE_DATA", raising=False)
    monkeypatch.setattr(M, "online", lambda *a, **k: False)
    with pytest.raises(ts.DataNotFoundError, match=r"no network.*MNIST/raw/.*TWOSTAGE_DATA"):
        ts.load_mnist(tmp_path, source="full", verbose=False)


def test_auto_offline_without_files_falls_back_to_bundled(tmp_path, monkeypatch):
    """No folder named anywhere and no network: the bundled subset. A named folder that holds nothing
    is an error instead (tests/test_reliability.py)."""
    monkeypatch.delenv("TWOSTAGE_DATA", raising=False)
    monkeypatch.setattr(M, "online", lambda *a, **k: False)
    assert ts.load_mnist(download_root=tmp_path, verbose=False).source == "bundled"


def test_auto_online_downloads_through_torchvision(tmp_path, monkeypatch):
    monkeypatch.delenv("TWOSTAGE_DATA", raising=False)
    monkeypatch.setattr(M, "online", lambda *a, **k: True)
    monkeypatch.setattr(M, "_download", lambda name, root: fake_dataset(root))
    splits = ts.load_mnist(tmp_path, verbose=False)
    assert splits.source == "download" and len(splits.train) == 60


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(source="web"), "unknown source 'web'"),
        (dict(dataset="cifar"), "unknown dataset 'cifar'"),
        (dict(source="bundled", dataset="kmnist"), "only MNIST is bundled"),
    ],
)
def test_bad_options_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ts.load_mnist(verbose=False, **kwargs)


def test_corrupted_file_is_reported(tmp_path):
    raw = fake_dataset(tmp_path)
    path = raw / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte is corrupted or truncated"):
        ts.load_mnist(tmp_path, source="full", verbose=False)
    path.write_bytes(b"not an idx file at all")
    with pytest.raises(ValueError, match="not an IDX file"):
        ts.load_mnist(tmp_path, source="full", verbose=False)


@pytest.mark.parametrize("name, folder", [("fashion_mnist", "FashionMNIST"), ("kmnist", "KMNIST")])
def test_other_datasets_by_name(tmp_path, name, folder):
    fake_dataset(tmp_path, folder, gz=True)
    splits = ts.load_mnist(tmp_path, source="full", dataset=name, verbose=False)
    assert splits.name == name and splits.train.images.shape == (60, 28, 28)


def test_input_size_is_inferred_from_any_tensors():
    x = torch.randint(0, 256, (200, 12, 12), dtype=torch.uint8)
    y = torch.arange(200) % 4
    splits = ts.from_tensors(x, y, x[:40], y[:40])
    assert splits.train.num_features == 144 and splits.train.num_classes == 4
    net = ts.TwoStageNetwork(in_features=splits.train.num_features, num_classes=4)
    h = ts.train_stage2(net, splits.train, epochs=1, batch_size=50, progress=False, device="cpu")
    assert len(h) == 1


def test_normalized_once_with_training_statistics(bundled):
    x, y = bundled.train.on("cpu")
    assert x.dtype == torch.float32 and x.shape == (10000, 784)
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-3
    assert bundled.train.on("cpu")[0] is x  # cached, not recomputed
    xt, _ = bundled.test.on("cpu")
    expected = (bundled.test.images[0].flatten().float() / 255 - bundled.train.mean) / bundled.train.std
    assert torch.allclose(xt[0], expected)


def test_rows_normalize_as_read_with_the_numbers_of_a_whole_float_copy(bundled):
    rows, y = bundled.train.rows("cpu")
    assert rows.stored.dtype == torch.uint8 and rows.stored.data_ptr() == bundled.train.images.data_ptr()  # no copy
    x, _ = bundled.train.on("cpu")
    idx = torch.tensor([7, 0, 9999, 7])
    assert torch.equal(rows[:300], x[:300]) and torch.equal(rows.index_select(0, idx), x.index_select(0, idx))
    assert rows[5:6].dtype == torch.float32 and len(rows) == 10000 and rows.shape == (10000, 784)
    floats = ts.from_tensors(torch.rand(50, 4, 4) * 3, torch.arange(50) % 2).train
    assert torch.equal(floats.rows("cpu")[0][:], floats.on("cpu")[0])


def test_training_keeps_the_images_as_stored(bundled):
    """Every stage reads normalized rows a batch at a time: no float32 copy of the dataset is made
    (4x the uint8 images: 170 MB for MNIST's training split)."""
    data = bundled.train.subset(torch.arange(600))
    net = ts.TwoStageNetwork()
    ts.train_stage1(net, data, epochs=1, batch_size=200, progress=False, device="cpu")
    ts.finetune(net, data, epochs=1, batch_size=200, progress=False, device="cpu", augment=True, val=data)
    ts.evaluate_model(net, data)
    assert list(data._on_device) == [("rows", "cpu")]


def test_batches_are_seeded_and_cover_every_sample_once():
    x, y = torch.arange(103).float().unsqueeze(1), torch.arange(103)
    first = [b[1] for b in ts.Batches(x, y, batch_size=10, seed=3)]
    again = [b[1] for b in ts.Batches(x, y, batch_size=10, seed=3)]
    assert len(first) == 11 and all(torch.equal(a, b) for a, b in zip(first, again))
    assert torch.equal(torch.cat(first).sort().values, y)
    batches = ts.Batches(x, y, batch_size=10, seed=3)
    epoch1, epoch2 = torch.cat([b[1] for b in batches]), torch.cat([b[1] for b in batches])
    assert not torch.equal(epoch1, epoch2)  # a fresh order each epoch
    assert len(ts.Batches(x, y, batch_size=10, drop_last=True)) == 10


def test_validation_split_is_disjoint_and_stratified(bundled):
    train, val = ts.validation_split(bundled.train, 1000, seed=0)
    assert len(train) == 9000 and len(val) == 1000
    assert torch.bincount(val.labels).tolist() == [100] * 10
    seen = {bytes(img.numpy()) for img in val.images}
    assert not any(bytes(img.numpy()) in seen for img in train.images[:2000])
    assert len(ts.validation_split(bundled.train, 0.2)[1]) == 2000
    with pytest.raises(ValueError, match="n_val must be between"):
        ts.validation_split(bundled.train, 0)


def test_labels_per_class_and_imbalance(bundled):
    few = ts.labels_per_class(bundled.train, 7, seed=1)
    assert torch.bincount(few.labels).tolist() == [7] * 10
    with pytest.raises(ValueError, match="class 0 has only 7 images"):
        ts.labels_per_class(few, 8)
    tail = torch.bincount(ts.imbalanced(bundled.train, ratio=100, kind="longtail").labels)
    assert tail[0] == 1000 and tail[-1] == 10 and bool((tail[:-1] >= tail[1:]).all())
    step = torch.bincount(ts.imbalanced(bundled.train, ratio=10, kind="step").labels)
    assert step.tolist() == [1000] * 5 + [100] * 5
    with pytest.raises(ValueError, match="unknown kind"):
        ts.imbalanced(bundled.train, kind="zipf")


def test_augmentation_is_small_and_never_flips(bundled):
    x, _ = bundled.train.on("cpu")
    batch = x[:256]
    same = ts.augment(batch, rotation=0, shift=0, scale=(1, 1))
    assert torch.allclose(same, batch, atol=1e-4)
    moved = ts.augment(batch, generator=torch.Generator().manual_seed(0))
    assert moved.shape == batch.shape and not torch.allclose(moved, batch)
    assert abs(float(moved.min()) - float(batch.min())) < 1e-4  # background stays background
    # a bar in the left quarter stays on the left: no flips, only small moves
    bar = torch.zeros(500, 1, 28, 28)
    bar[:, :, 6:22, 3:7] = 1.0
    out = ts.augment(bar, generator=torch.Generator().manual_seed(1)).clamp(min=0)
    cols = torch.arange(28.0)
    centre = (out.sum(dim=(1, 2)) * cols).sum(1) / out.sum(dim=(1, 2, 3))
    assert float(centre.max()) < 8.5 and float(centre.min()) > 0.5  # starts at 4.5; a flip gives 22.5


def test_the_sampling_grid_is_affine_grids():
    """augment writes F.affine_grid's grid out by hand (two planes, handed over as a view): the same
    points, for every rotation, zoom and shift, with a field added where there is one."""
    import torch.nn.functional as F

    from twostage_lib.augmentations import _sampling_grid

    g = torch.Generator().manual_seed(0)
    n, h, w = 6, 28, 20
    angle, zoom = torch.rand(n, generator=g) * 2 - 1, torch.rand(n, generator=g) + 0.5
    tx, ty = torch.rand(n, generator=g) - 0.5, torch.rand(n, generator=g) - 0.5
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)  # (n, 2, 3)
    expected = F.affine_grid(theta, (n, 1, h, w), align_corners=False)
    grid = _sampling_grid(cos.view(n, 1, 1), sin.view(n, 1, 1), tx.view(n, 1, 1), ty.view(n, 1, 1), None, h, w)
    assert grid.shape == (n, h, w, 2) and torch.allclose(grid, expected, atol=1e-6)
    field = torch.randn(n, 2, h, w, generator=g)
    bent = _sampling_grid(cos.view(n, 1, 1), sin.view(n, 1, 1), tx.view(n, 1, 1), ty.view(n, 1, 1), field, h, w)
    assert torch.allclose(bent, expected + field.permute(0, 2, 3, 1), atol=1e-6)


def test_elastic_distortion_is_smooth_and_small():
    x = torch.rand(64, 784)
    plain = ts.augment(x, generator=torch.Generator().manual_seed(3))
    same = ts.augment(x, elastic=0.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(plain, same)
    # a field of exactly one pixel spacing: a 1-pixel-wide grid line moves by about a pixel, not more
    lines = torch.zeros(200, 1, 28, 28)
    lines[:, :, :, 14] = 1.0
    bent = ts.augment(
        lines, rotation=0, shift=0, scale=(1, 1), elastic=0.08, generator=torch.Generator().manual_seed(4)
    )
    assert not torch.allclose(bent, lines, atol=1e-3)
    cols = torch.arange(28.0)
    mass = bent[:, 0].sum(2)
    centre = (bent[:, 0] * cols).sum(2) / mass.clamp(min=1e-6)  # the line's column, row by row
    seen = mass > 0.5  # rows the line still crosses (a field may pull the ends out of the image)
    offset = (centre - 14).abs()[seen]
    assert float(offset.mean()) < 2.0 and float(offset.max()) < 6.0
    both = seen[:, 1:] & seen[:, :-1]
    step = (centre[:, 1:] - centre[:, :-1]).abs()[both]  # neighbouring rows move together: smooth
    assert float(step.mean()) < 0.5


def test_erase_paints_one_background_square(bundled):
    x, _ = bundled.train.on("cpu")
    batch = x[:500]
    out = ts.erase(batch, size=0.4, generator=torch.Generator().manual_seed(0))
    assert out.shape == batch.shape
    changed = (out != batch).reshape(500, 28, 28)
    background = batch.min()
    assert torch.all(out[out != batch] == background)
    painted = ((out == background) & (batch != background)).reshape(500, -1).sum(1)
    assert float(painted.float().mean()) > 5  # it covers strokes, not just blank corners
    # the painted area is at most an 11 x 11 square (0.4 of 28 pixels)
    rows, cols = changed.any(2).sum(1), changed.any(1).sum(1)
    assert int(rows.max()) <= 12 and int(cols.max()) <= 12
    assert torch.equal(ts.erase(batch, size=0.0), batch)


def test_strong_augment_is_reproducible_and_keeps_the_background(bundled):
    x, _ = bundled.train.on("cpu")
    batch = x[:128]
    a = ts.strong_augment(batch, generator=torch.Generator().manual_seed(7))
    b = ts.strong_augment(batch, generator=torch.Generator().manual_seed(7))
    c = ts.strong_augment(batch, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert abs(float(a.min()) - float(batch.min())) < 1e-4
    gentle = ts.augment(batch, generator=torch.Generator().manual_seed(7))
    assert float((a - batch).abs().mean()) > float((gentle - batch).abs().mean())  # stronger than fine-tuning's


def test_weighted_batches_rebalance_classes():
    y = torch.tensor([0] * 900 + [1] * 100)
    x = torch.zeros(1000, 1)
    weights = ts.class_weights(y)[y]
    drawn = torch.cat([b[1] for b in ts.Batches(x, y, batch_size=100, seed=0, sample_weights=weights)])
    share = float((drawn == 1).float().mean())
    assert len(drawn) == 1000 and 0.42 < share < 0.58  # about half, not 10%
    with pytest.raises(ValueError, match="sample_weights has 3 weights for 1000 samples"):
        ts.Batches(x, y, sample_weights=torch.ones(3))


def test_pixel_stats_count_the_values_and_give_the_float_copys_numbers(bundled):
    """The mean and std come from a histogram of the 256 pixel values (no float copy of the
    images): bit for bit what the bundled subset's float copy gives, and within one float32 step of
    it on any uint8 images (the copy's float32 sum is the one that rounds)."""
    scaled = bundled.train.images.float() / 255
    assert D.pixel_stats(bundled.train.images) == (float(scaled.mean()), float(scaled.std()))
    images = torch.randint(0, 256, (333, 7, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = D.pixel_stats(images)
    copy = images.float() / 255
    assert std == float(copy.std()) and abs(mean - float(copy.mean())) <= 2**-24
    flat = torch.full((4, 3, 3), 7, dtype=torch.uint8)
    assert D.pixel_stats(flat) == (float(torch.tensor(7 / 255)), 1.0)  # no spread: std 1, never a division by 0
    floats = torch.rand(20, 3) * 5
    assert D.pixel_stats(floats) == (float(floats.mean()), float(floats.std()))


def test_a_subset_shares_its_parents_images_and_reads_the_same_rows(bundled):
    """validation_split and labels_per_class keep indices, not copies of the images; the rows a
    subset gives, its images and its training are those of a copy holding the same images."""
    train, val = ts.validation_split(bundled.train, 0.1)
    assert train.stored.data_ptr() == bundled.train.images.data_ptr() and len(train) == 9000
    picks = ts.labels_per_class(train, 3, seed=1)  # a subset of a subset
    assert picks.stored.data_ptr() == bundled.train.images.data_ptr()
    assert torch.equal(picks.images, bundled.train.images[picks.index]) and picks.image_shape == (28, 28)
    copy = D.TensorData(picks.images.clone(), picks.labels, bundled.train.mean, bundled.train.std)
    rows, copy_rows = picks.rows("cpu")[0], copy.rows("cpu")[0]
    idx = torch.tensor([29, 0, 5, 5])
    assert len(rows) == 30 and rows.shape == (30, 784)
    assert torch.equal(rows[:], copy_rows[:]) and torch.equal(rows[3:9], copy_rows[3:9])
    assert torch.equal(rows.index_select(0, idx), copy_rows.index_select(0, idx))
    weights = []
    for data in (picks, copy):
        torch.manual_seed(0)
        net = ts.TwoStageNetwork()
        ts.train_stage1(net, data, epochs=2, batch_size=8, progress=False, device="cpu")
        weights.append(ts.snapshot(net.stage1))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])

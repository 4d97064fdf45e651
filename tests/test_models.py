import socket
import urllib.error

import pytest
import torch

import twostage_lib as ts
from twostage_lib.models import decoder_for


def test_seed_architecture_and_parameter_counts(model):
    assert ts.count_parameters(model) == 242_762
    assert ts.count_parameters(model.stage1) == 784 * 256 + 256 + 256 * 128 + 128
    assert ts.count_parameters(model.stage2) == 128 * 64 + 64 + 64 * 10 + 10
    assert [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)] == [256, 128, 64, 10]


def test_forward_shapes_flatten_images(model):
    images = torch.randn(5, 1, 28, 28)
    assert model.features(images).shape == (5, 128)
    assert model(images).shape == (5, 10)
    assert torch.equal(model(images), model(images.reshape(5, 784)))


def test_wrong_input_size_names_the_fix(model):
    with pytest.raises(ValueError, match=r"expected inputs with 784 features.*\(3, 100\).*in_features=100"):
        model(torch.randn(3, 100))


def test_configurable_sizes_and_decoder():
    net = ts.TwoStageNetwork(in_features=100, stage1_sizes=(64, 32, 16), stage2_sizes=(8,), num_classes=3)
    assert net(torch.randn(2, 100)).shape == (2, 3) and net.feature_dim == 16
    decoder = decoder_for(net)
    assert decoder(net.features(torch.randn(2, 100))).shape == (2, 100)
    assert [m.out_features for m in decoder if isinstance(m, torch.nn.Linear)] == [32, 64, 100]


def test_transfer_network_without_weights_runs_on_mnist_inputs():
    torch.manual_seed(0)
    net = ts.TransferTwoStageNetwork(num_classes=10, weights=None, image_size=32)
    x = torch.randn(4, 784)
    assert net.features(x).shape == (4, 512) and net(x).shape == (4, 10)
    assert net.adapt(x).shape == (4, 3, 32, 32)
    assert isinstance(net.stage2, torch.nn.Linear) and net.stage2.in_features == 512
    assert net.in_features == 784 and net.feature_dim == 512
    assert ts.models.decoder_for(net)(net.features(x)).shape == (4, 784)  # the autoencoder's decoder


def test_transfer_network_offline_weights_error_is_clear(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(ts.WeightsUnavailableError, match=r"could not load ResNet-18 weights.*weights=None"):
        ts.TransferTwoStageNetwork(weights="DEFAULT")


def test_transfer_network_loads_weights_cached_in_the_hub_dir(monkeypatch, tmp_path):
    """The real loading path, offline: a weights file already in $TORCH_HOME/hub/checkpoints is used."""
    from torchvision import models

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = models.ResNet18_Weights.DEFAULT.url
    state = models.resnet18(weights=None).state_dict()
    state["conv1.weight"].fill_(0.5)  # a mark to recognise this file's weights
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1])
    net = ts.TransferTwoStageNetwork(num_classes=5, weights="DEFAULT")
    assert torch.all(net.stage1[0].weight == 0.5) and net.stage2.out_features == 5


def test_offline_without_cached_weights_no_network_is_built(monkeypatch, tmp_path):
    """Offline with no cached file, the error comes before the 45 MB ResNet-18 is built (and
    before a download is tried): the notebook's kernel keeps that memory."""
    from torchvision import models

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    built = []
    monkeypatch.setattr(models, "resnet18", lambda **kw: built.append(kw))

    def unreachable(address, timeout=None):
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(ts.WeightsUnavailableError, match=r"not cached and download\.pytorch\.org cannot be reached"):
        ts.TransferTwoStageNetwork(weights="DEFAULT")
    assert built == []

import pytest
import torch
import torch.nn as nn

import twostage_lib as ts


class Fixed(nn.Module):
    """A 'model' whose logits are given, to check the metrics by hand."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.logits[x[:, 0].long()]


def case():
    # true:  0 0 0 1 1 2 ; predicted: 0 0 1 1 1 0
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    pred = torch.tensor([0, 0, 1, 1, 1, 0])
    logits = torch.full((6, 3), -2.0)
    logits[torch.arange(6), pred] = 2.0
    x = torch.arange(6).float().unsqueeze(1)
    return Fixed(logits), (x, y), logits, y


def test_metrics_by_hand():
    model, data, logits, y = case()
    ev = ts.evaluate_model(model, data, batch_size=4)
    assert ev.accuracy == pytest.approx(4 / 6)
    assert ev.confusion.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert ev.recall.tolist() == pytest.approx([2 / 3, 1.0, 0.0])
    assert ev.precision.tolist() == pytest.approx([2 / 3, 2 / 3, 0.0])
    assert ev.balanced_accuracy == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert ev.loss == pytest.approx(nn.functional.cross_entropy(logits, y).item())


def test_loss_is_weighted_by_samples_not_batches():
    model, data, logits, y = case()
    ev = ts.evaluate_model(model, data, batch_size=4)  # batches of 4 and 2
    per_sample = nn.functional.cross_entropy(logits, y, reduction="none")
    seeds_average = (per_sample[:4].mean() + per_sample[4:].mean()) / 2
    assert ev.loss == pytest.approx(per_sample.mean().item())
    assert ev.loss != pytest.approx(seeds_average.item())


def test_confident_mistakes_are_the_wrong_predictions_surest_first_across_chunks():
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    said = torch.tensor([0, 2, 0, 1, 1, 1, 2])  # right at 0 and 4; wrong at 1, 2, 3, 5, 6
    margin = torch.tensor([9.0, 0.5, 3.0, 1.0, 8.0, 2.0, 0.1])  # higher margin, surer
    logits = torch.zeros(7, 3)
    logits[torch.arange(7), said] = margin
    model = Fixed(logits)
    model.train()
    index, predicted, confidence = ts.confident_mistakes(model, (torch.arange(7).float().unsqueeze(1), y),
                                                         k=3, batch_size=2)  # fmt: skip
    assert index.tolist() == [2, 5, 3]  # the three surest of the five mistakes; right answers never listed
    assert predicted.tolist() == said[[2, 5, 3]].tolist()
    assert confidence.tolist() == pytest.approx(torch.softmax(logits[[2, 5, 3]], 1).max(1).values.tolist())
    assert model.training  # back in the mode it was in
    assert len(ts.confident_mistakes(model, (torch.arange(7).float().unsqueeze(1), y), k=50)[0]) == 5
    with pytest.raises(ValueError, match="nothing to evaluate: the data holds no images"):
        ts.confident_mistakes(model, (torch.zeros(0, 1), torch.zeros(0, dtype=torch.long)))


def test_evaluation_goes_512_rows_at_a_time_with_the_numbers_of_larger_chunks(small):
    """Chunks of 4,096 rows held about 25 MB more at evaluate_model's peak than chunks of 512, no
    faster on a CPU; every notebook evaluates, so the smaller default counts on Binder."""
    torch.manual_seed(0)
    net = ts.TwoStageNetwork()
    seen = []
    net.stage1.register_forward_hook(lambda module, args, out: seen.append(len(args[0])))
    test = small[1]  # 1,000 images: a chunk of 512 and one of 488
    default = ts.evaluate_model(net, test)
    assert max(seen) == 512
    one_pass = ts.evaluate_model(net, test, batch_size=len(test))
    assert default.accuracy == one_pass.accuracy and default.loss == pytest.approx(one_pass.loss, rel=1e-6)
    seen.clear()
    ts.confident_mistakes(net, test, k=3)
    assert max(seen) == 512


def test_evaluate_restores_training_mode(model, small):
    model.train()
    ts.evaluate_model(model, small[1])
    assert model.training


def test_class_weights_vectorized_and_normalized():
    labels = torch.tensor([0] * 6 + [1] * 3 + [2] * 1)
    raw = ts.class_weights(labels, normalize=False)
    assert raw.tolist() == pytest.approx([1 / 6, 1 / 3, 1.0])  # the original blog post's 1/count
    w = ts.class_weights(labels)
    assert (w[labels]).mean().item() == pytest.approx(1.0)
    assert (w / raw).std().item() == pytest.approx(0.0, abs=1e-6)  # same ratios


def test_class_with_no_samples_is_an_error():
    with pytest.raises(ValueError, match=r"class\(es\) \[1, 3\] have no samples"):
        ts.class_weights(torch.tensor([0, 2, 2]), num_classes=4)


def test_evaluation_gives_each_part_its_own_mode_back(model, small):
    """model.train(was_training) would wake a frozen stage 1 (and its BatchNorm statistics) up."""
    ts.freeze_stage1(model)  # stage 1 in eval mode, the rest training
    ts.evaluate_model(model, small[1])
    assert not model.stage1.training and model.stage2.training and model.training

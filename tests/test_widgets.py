"""The notebooks' panels and their saved-notebook fallbacks; the course's load-or-train helper."""

from types import SimpleNamespace

import pytest

import twostage_lib as ts
from twostage_lib.course import save_stage1, stage1_model, stage1_path, stage1_seconds
from twostage_lib.recipe import COURSE
from twostage_lib.widgets import FigurePanel, LivePlot, TrainingPanel, dropdown, slider


def fake_training(values, on_epoch):
    for epoch in range(values["epochs"]):
        on_epoch({"train_loss": 1 / (epoch + 1), "val_loss": 1.2 / (epoch + 1), "val_acc": 0.5 + 0.1 * epoch})
    return SimpleNamespace(summary=f"{values['epochs']} epochs")


def test_losses_and_accuracy_get_their_own_axes():
    plot = LivePlot(("train_loss", "val_loss", "val_acc"), "t")
    plot.update({"train_loss": 1.0, "val_loss": 1.1, "val_acc": 0.5})
    plot.update({"train_loss": 0.5, "val_loss": 0.6, "val_acc": 0.8})
    loss_ax, acc_ax = plot.figure().axes
    assert [line.get_label() for line in loss_ax.lines] == ["train_loss", "val_loss"]
    assert [line.get_label() for line in acc_ax.lines] == ["val_acc"] and acc_ax.get_ylabel() == "accuracy"
    assert len(LivePlot(("max_change",)).figure().axes) == 1


def test_a_panel_runs_headless_and_keeps_a_static_picture():
    panel = TrainingPanel({"epochs": slider("epochs", 3, 1, 5)}, fake_training, ("train_loss", "val_acc"), "T")
    assert panel.run().summary == "3 epochs" and panel.runs == 1
    assert bytes(panel.image.value).startswith(b"\x89PNG") and panel.status.value.startswith("run 1: 3 epochs")
    assert len(panel.plot.records) == 3 and len(panel.figure().axes) == 2
    panel.controls["epochs"].value = 5  # what a learner does before pressing Run
    panel.button.click()
    assert panel.runs == 2 and len(panel.plot.records) == 5, "Run retrains from scratch with the new values"


def test_the_live_plot_is_redrawn_at_most_every_half_second_and_always_drawn_at_the_end(monkeypatch):
    import twostage_lib.widgets as widgets

    drawn = []  # how many epochs each redraw showed
    real = widgets.png_of
    monkeypatch.setattr(widgets, "png_of", lambda fig: drawn.append(len(panel.plot.records)) or real(fig))
    panel = TrainingPanel({"epochs": slider("epochs", 200, 1, 500)}, fake_training, title="T")
    start = widgets.time.perf_counter()
    panel.run()  # 200 epochs that take no time: drawing each one took about a minute
    seconds = widgets.time.perf_counter() - start
    assert drawn[0] == 1, "the first epoch is drawn at once"
    assert drawn[-1] == 200, "run() draws the finished curves"
    assert len(drawn) <= 2 + seconds / TrainingPanel.min_interval, (len(drawn), seconds)


def test_a_saved_panel_reads_as_a_sentence_not_a_widget_repr():
    panel = TrainingPanel({"x": dropdown("x", ["a", "b"])}, fake_training, title="Stage 1 pretraining")
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle  # a live kernel still draws the widget
    text = bundle["text/plain"]
    assert text.startswith("[Stage 1 pretraining: interactive panel") and "VBox" not in text


def test_a_failing_run_says_so_in_the_panel_and_raises():
    def broken(values, on_epoch):
        raise ValueError("learning rate must be finite")

    panel = TrainingPanel({"x": dropdown("x", ["a"])}, broken)
    with pytest.raises(ValueError, match="finite"):
        panel.run()
    assert "ValueError: learning rate must be finite" in panel.status.value and not panel.button.disabled


def test_figure_panel_shows_what_draw_returns():
    from matplotlib.figure import Figure

    def draw(values):
        fig = Figure()
        fig.subplots().plot([0, values["n"]])
        return SimpleNamespace(summary=f"n={values['n']}"), fig

    panel = FigurePanel({"n": slider("n", 2, 1, 4)}, draw, title="F")
    panel.run()
    assert panel.figure().axes[0].lines and panel.status.value.startswith("run 1: n=2")


def test_stage1_model_trains_once_then_loads(tmp_path, monkeypatch, small):
    monkeypatch.setenv("TWOSTAGE_CHECKPOINTS", str(tmp_path))
    train, _ = small
    assert stage1_seconds(train, "autoencoder", 1) is None  # nothing saved yet
    first, first_how = stage1_model(train, objective="autoencoder", epochs=1)
    assert first_how.startswith("trained in") and stage1_path(train, "autoencoder", 1).is_file()
    again, how = stage1_model(train, objective="autoencoder", epochs=1)
    assert how.startswith("loaded from")
    assert ts.unchanged(again.stage1, ts.snapshot(first.stage1))
    seconds = stage1_seconds(train, "autoencoder", 1)  # the training time travels with the checkpoint
    assert seconds > 0 and f"trained in {seconds:.1f} s" == first_how[: len(f"trained in {seconds:.1f} s")]


def test_save_stage1_is_where_stage1_model_looks(tmp_path, monkeypatch, small):
    monkeypatch.setenv("TWOSTAGE_CHECKPOINTS", str(tmp_path))
    train, _ = small
    net = ts.TwoStageNetwork()
    history = ts.train_stage1(net, train, objective="contrastive", epochs=1, lr=COURSE.lr, progress=False)
    save_stage1(net, train, history, objective="contrastive", epochs=1)
    loaded, how = stage1_model(train, objective="contrastive", epochs=1)
    assert how.startswith("loaded from") and ts.unchanged(loaded.stage1, ts.snapshot(net.stage1))

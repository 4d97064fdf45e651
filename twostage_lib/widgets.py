"""Notebook controls: a hyperparameter panel with a Run button and a live plot.

Headless (nbval, CI) the notebook calls ``panel.run()`` once with the panel's default values, so
nothing waits for a click; in JupyterLab a learner moves a slider and presses Run to retrain.
``panel.show()`` displays a static copy of what the panel shows, so a notebook read on GitHub
(where widgets do not run) still shows the curves; ``panel.figure()`` returns it as a matplotlib figure.
"""

from __future__ import annotations

import time

import ipywidgets as W
from matplotlib.figure import Figure  # drawn off-screen: no pyplot state, no cell output
from matplotlib.ticker import MaxNLocator

from .diagrams import png_of

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"  # the output a widget is drawn from, ipywidgets 7 and 8


def slider(description, value, low, high, step=1, log=False):
    """An int, float or log-scale slider with a readable label."""
    style = {"description_width": "140px"}
    layout = W.Layout(width="380px")
    if log:
        return W.FloatLogSlider(
            value=value,
            min=low,
            max=high,
            step=step,
            description=description,
            style=style,
            layout=layout,
            readout_format=".1e",
        )
    cls = W.IntSlider if isinstance(value, int) and isinstance(step, int) else W.FloatSlider
    return cls(value=value, min=low, max=high, step=step, description=description, style=style, layout=layout)


def dropdown(description, options, value=None):
    return W.Dropdown(
        options=options,
        value=value if value is not None else options[0],
        description=description,
        style={"description_width": "140px"},
        layout=W.Layout(width="380px"),
    )


class LivePlot:
    """Curves redrawn after every epoch: losses on one axis, accuracies and rates (0 to 1) on their own."""

    def __init__(self, keys=("train_loss", "val_loss"), title=""):
        self.keys = keys
        self.title = title
        self.records = []

    def reset(self):
        self.records = []

    def update(self, record: dict):
        self.records.append(dict(record))

    def figure(self, subtitle="") -> Figure:
        """The curves so far, as a matplotlib figure (one panel per kind of number)."""
        shares = [k for k in self.keys if "acc" in k or "rate" in k]  # numbers between 0 and 1
        others = [k for k in self.keys if k not in shares]
        groups = [g for g in (others, shares) if g]
        fig = Figure(figsize=(5.2 * len(groups), 3.2))
        axes = fig.subplots(1, len(groups), squeeze=False)[0]
        x = range(1, len(self.records) + 1)
        for ax, keys in zip(axes, groups):
            for key in keys:
                values = [r.get(key) for r in self.records]
                if any(v is not None for v in values):
                    ax.plot(x, values, marker="o", label=key)
            ax.set_ylabel(_axis_label(keys))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch (across stages)" if len(self.records) else "epoch")
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(loc="best")
        fig.suptitle(f"{self.title}\n{subtitle}" if subtitle else self.title, fontsize=10)
        fig.tight_layout()
        return fig


def _axis_label(keys):
    for word in ("loss", "acc"):
        if all(word in k for k in keys):
            return {"loss": "loss", "acc": "accuracy"}[word]
    return ", ".join(keys)


class Panel:
    """Controls + a Run button + a status line + an image, shown in the notebook as one widget.

    ``run()`` reads the controls, calls ``work(values)`` and redraws the image; subclasses say what
    the work and the image are. Saved notebooks show a plain sentence instead of the widget's repr.
    """

    def __init__(self, controls: dict, title: str):
        self.controls = controls
        self.title = title
        self.image = W.Image(format="png", layout=W.Layout(width="640px"))
        self.button = W.Button(description="Run", button_style="primary", icon="play")
        self.status = W.HTML(value="<i>press Run to train with these values</i>")
        self.result = None
        self.runs = 0
        self.button.on_click(lambda _: self.run())
        self.widget = W.VBox([W.HTML(f"<b>{title}</b>"), *controls.values(), self.button, self.status, self.image])

    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def work(self, values):
        raise NotImplementedError

    def figure(self) -> Figure:
        raise NotImplementedError

    def run(self):
        self.button.disabled = True
        self.status.value = "<i>running...</i>"
        start = time.perf_counter()
        try:
            self.result = self.work(self.values())
        except KeyboardInterrupt:  # the kernel's interrupt reached the panel's own code: say so, then stop
            self.status.value = (
                f"<i>interrupted after {time.perf_counter() - start:.1f} s; press Run to start again</i>"
            )
            raise
        except Exception as exc:  # shown in the panel, then raised for the notebook to see
            self.status.value = f"<b style='color:#b00'>{type(exc).__name__}: {exc}</b>"
            raise
        finally:
            self.button.disabled = False
        self.runs += 1
        self.image.value = png_of(self.figure())
        self.status.value = f"run {self.runs}: {self.summary()} ({time.perf_counter() - start:.1f} s)"
        return self.result

    def show(self):
        """Display a static picture of what the panel shows, so a saved notebook read without a kernel
        (GitHub, nbviewer) still has it. A PNG, not a matplotlib figure: it shows whatever pyplot's state."""
        from IPython.display import Image, display

        if not self.runs:
            raise RuntimeError(f"{self.title}: nothing to show yet; run the panel first (panel.run(), or press Run)")
        display(Image(png_of(self.figure()), format="png"))

    def summary(self) -> str:
        return getattr(self.result, "summary", None) or ""

    def _repr_mimebundle_(self, include=None, exclude=None):
        """The panel as a widget view, written out: ipywidgets 8 widgets have a ``_repr_mimebundle_``
        and ipywidgets 7 ones (Colab's) an ``_ipython_display_`` instead, but both are drawn from
        this one output (JupyterLab, Notebook, Colab). Where no widget can be drawn (GitHub,
        nbconvert) the sentence stands, and the static figure below it."""
        return {
            "text/plain": f"[{self.title}: interactive panel; open the notebook in Jupyter to use it]",
            WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": self.widget.model_id},
        }


class TrainingPanel(Panel):
    """A panel whose work is a training run, drawn live epoch by epoch.

    ``train(values, on_epoch)`` does the work: ``values`` maps control names to their values and
    ``on_epoch(record)`` is called with each epoch's record to redraw the plot. It returns a result
    whose ``summary`` (str) is shown under the plot; ``panel.result`` keeps the latest.
    """

    min_interval = 0.5  # seconds between live redraws at least; and 4x the last draw's time

    def __init__(self, controls: dict, train, plot_keys=("train_loss", "val_loss"), title="Training"):
        super().__init__(controls, title)
        self.train = train
        self.plot = LivePlot(plot_keys, title)
        self._drawn_at = float("-inf")
        self._draw_seconds = 0.0

    def on_epoch(self, record: dict):
        """Record the epoch; redraw only when enough time has passed: a redraw can cost more than a
        small model's epoch. Drawing takes at most a fifth of the time; run() draws the finished curves
        (docs/decisions.md, "Time on one core")."""
        self.plot.update(record)
        if time.perf_counter() - self._drawn_at >= max(self.min_interval, 4 * self._draw_seconds):
            start = time.perf_counter()
            self.image.value = png_of(self.plot.figure())
            self._drawn_at = time.perf_counter()
            self._draw_seconds = self._drawn_at - start

    def work(self, values):
        self.plot.reset()
        self._drawn_at = float("-inf")  # the first epoch is drawn at once
        return self.train(values, self.on_epoch)

    def figure(self) -> Figure:
        return self.plot.figure(self.summary())


class FigurePanel(Panel):
    """A panel whose work draws a figure: ``draw(values)`` returns (result, matplotlib Figure)."""

    def __init__(self, controls: dict, draw, title="Explore"):
        super().__init__(controls, title)
        self.draw = draw
        self._figure = None

    def work(self, values):
        result, self._figure = self.draw(values)
        return result

    def figure(self) -> Figure:
        return self._figure

"""Notebook controls: a hyperparameter panel with a Run button and a live training plot.

Headless (nbval, CI) the notebook calls ``panel.run()`` once with the panel's default values, so
nothing waits for a click; in JupyterLab a learner moves a slider and presses Run to retrain.
"""

from __future__ import annotations

import io
import time

import ipywidgets as W
from matplotlib.figure import Figure  # drawn off-screen: no pyplot state, no cell output
from matplotlib.ticker import MaxNLocator


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
    """Curves redrawn after every epoch into an Image widget (no cell output to compare)."""

    def __init__(self, keys=("train_loss", "val_loss"), title=""):
        self.keys, self.title = keys, title
        self.image = W.Image(format="png", layout=W.Layout(width="560px"))
        self.records = []

    def reset(self, title=None):
        self.records = []
        self.title = title or self.title

    def update(self, record: dict):
        self.records.append(dict(record))
        self.image.value = self.png()

    def png(self) -> bytes:
        fig = Figure(figsize=(6.4, 3.2))
        ax = fig.subplots()
        x = range(1, len(self.records) + 1)
        for key in self.keys:
            values = [r.get(key) for r in self.records]
            if any(v is not None for v in values):
                ax.plot(x, values, marker="o", label=key)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch (across stages)")
        ax.set_title(self.title)
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
        return buf.getvalue()


class TrainingPanel:
    """Controls + Run button + live plot + a status line.

    ``train(values, on_epoch)`` does the work: ``values`` maps control names to their values and
    ``on_epoch(record)`` is called with each epoch's record to redraw the plot. It returns a result
    whose ``summary`` (str) is shown under the plot; ``panel.result`` keeps the latest.
    """

    def __init__(self, controls: dict, train, plot_keys=("train_loss", "val_loss"), title="Training"):
        self.controls, self.train = controls, train
        self.plot = LivePlot(plot_keys, title)
        self.button = W.Button(description="Run", button_style="primary", icon="play")
        self.status = W.HTML(value="<i>press Run to train with these values</i>")
        self.result, self.runs = None, 0
        self.button.on_click(lambda _: self.run())
        self.widget = W.VBox([W.HTML(f"<b>{title}</b>"), *controls.values(), self.button, self.status, self.plot.image])

    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def run(self):
        self.button.disabled = True
        self.status.value = "<i>training...</i>"
        self.plot.reset()
        start = time.perf_counter()
        try:
            self.result = self.train(self.values(), self.plot.update)
        except Exception as exc:  # shown in the panel, then raised for the notebook to see
            self.status.value = f"<b style='color:#b00'>{type(exc).__name__}: {exc}</b>"
            raise
        finally:
            self.button.disabled = False
        self.runs += 1
        summary = getattr(self.result, "summary", None) or ""
        self.status.value = f"run {self.runs}: {summary} ({time.perf_counter() - start:.1f} s)"
        return self.result

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

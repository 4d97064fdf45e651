"""Every result the prose of a notebook states is a number that notebook prints.

The rule, in one line: outside code (`...` spans, code blocks), a number with a result's unit (%,
x, -fold, "times", s, ms, MB, GB) or a multiple in words ("twice", "tenfold", "a hundredfold") is a
result, and must appear among the notebook's own outputs (text, or Markdown printed from computed
values) to the precision it is written with, or be one of the cited constants below (published
results, each with its source). Settings (epochs, learning rates, masks, layer sizes) are written
as code (`mask=0.3`, `784×256`) or without a result's unit, so they are never scanned.
"""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))

# Published results a notebook quotes, with their source; nothing else may be quoted unprinted.
CITED = {
    "09_when_does_it_help": {
        74.2: "Kingma et al. 2014, Semi-supervised learning with deep generative models, Table 1 (NN, 100 labels)",
        88.2: "Kingma et al. 2014, Table 1 (M1+TSVM, 100 labels)",
        96.7: "Kingma et al. 2014, Table 1 (M1+M2, 100 labels)",
        98.9: "Rasmus et al. 2015, Semi-supervised learning with Ladder networks, Table 1 (100 labels)",
    },
    "10_beyond_two_stages": {
        88.2: "Kingma et al. 2014, Table 1 (M1+TSVM, 100 labels)",
        96.7: "Kingma et al. 2014, Table 1 (M1+M2, 100 labels)",
        98.9: "Rasmus et al. 2015, Table 1 (100 labels)",
    },
}

UNIT = r"(?P<unit>%|x\b|×|-fold\b|\s?times\b| s\b| seconds\b| ms\b| MB\b| GB\b)"
NUMBER = r"(?P<low>\d[\d,]*(?:\.\d+)?)(?:\s?(?:-|–|to)\s?(?P<high>\d[\d,]*(?:\.\d+)?))?"
RESULT = re.compile(rf"(?<![\w.#/`-]){NUMBER}{UNIT}")
KINDS = {"%": "percent", "x": "multiple", "×": "multiple", "-fold": "multiple", "times": "multiple",
         "s": "seconds", "seconds": "seconds", "ms": "ms", "MB": "MB", "GB": "GB"}  # fmt: skip
WORDS = {
    "twice": 2,
    "double": 2,
    "three times": 3,
    "four times": 4,
    "tenfold": 10,
    "ten times": 10,
    "hundredfold": 100,
    "a hundred times": 100,
    "thousandfold": 1000,
}
WORD = re.compile(r"\b(" + "|".join(WORDS) + r")\b", re.IGNORECASE)
CODE = re.compile(r"```.*?```|`[^`]*`", re.DOTALL)
PRINTED = re.compile(rf"(?<![\w.])-?(?P<value>\d[\d,]*(?:\.\d+)?){UNIT}?")


def kind(unit) -> str | None:
    return None if unit is None else KINDS[unit.strip()]


def output_numbers(nb) -> dict:
    """The numbers the notebook prints (text, and Markdown or plain text of displayed values), by
    kind: a number printed with % is a percentage, with x or "times" a multiple, with s a duration;
    a fraction printed with three or more decimals (0.951) also counts as its percentage."""
    values = {}
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            texts = ["".join(out["text"])] if "text" in out else []
            data = out.get("data", {})
            texts += ["".join(data[k]) for k in ("text/plain", "text/markdown") if k in data]
            for text in texts:
                for m in PRINTED.finditer(text):
                    value = float(m["value"].replace(",", ""))
                    values.setdefault(kind(m["unit"]), []).append(value)
                    if m["unit"] is None and 0 < value < 1 and len(m["value"].split(".")[-1]) >= 3:
                        values.setdefault("percent", []).append(100 * value)
    return values


def shown(text: str, values, cited=()) -> bool:
    """Whether a number written as ``text`` is one of ``values`` (or ``cited``) rounded as written."""
    digits = text.replace(",", "")
    places = len(digits.split(".")[1]) if "." in digits else 0
    target = float(digits)
    half = 0.5 * 10**-places + 1e-9
    return any(abs(v - target) <= half for v in [*values, *cited])


def word_shown(word: str, values) -> bool:
    """A multiple in words is rounded to its leading digit: "a hundredfold" is 50-150x, "twice" 1.5-2.5x."""
    n = WORDS[word.lower()]
    scale = 10 ** (len(str(n)) - 1)
    return any(n - scale / 2 <= v < n + scale / 2 for v in values)


def unbacked(nb, name) -> list[str]:
    values = output_numbers(nb)
    cited = list(CITED.get(name, {}))  # published accuracies, in percent
    found = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text = CODE.sub(" ", "".join(cell["source"]))
        for m in RESULT.finditer(text):
            ends = [m["low"]] if m["high"] is None else [m["low"], m["high"]]
            printed = values.get(kind(m["unit"]), [])
            if not all(shown(e, printed, cited if m["unit"] == "%" else ()) for e in ends):
                found.append(text[max(0, m.start() - 60) : m.end() + 10].replace("\n", " "))
        for m in WORD.finditer(text):
            if not word_shown(m.group(1), values.get("multiple", [])):
                found.append(text[max(0, m.start() - 60) : m.end() + 10].replace("\n", " "))
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_result_in_the_prose_is_printed_by_the_notebook(path):
    nb = json.loads(path.read_text())
    found = unbacked(nb, path.stem)
    assert not found, "results the notebook does not print (print them, or back them with a Check):\n" + "\n".join(
        found
    )


def test_a_planted_mismatch_is_caught():
    """The scan is not vacuous: a result the notebook does not print fails, a printed one passes."""

    def notebook(prose, printed):
        return {
            "cells": [
                {"cell_type": "markdown", "source": [prose]},
                {"cell_type": "code", "source": [], "outputs": [{"text": [printed]}]},
            ]
        }

    printed = "test accuracy 97.26%, 37.2x faster, 0.95123"
    assert unbacked(notebook("It reaches 97.3% and runs 37x faster.", printed), "x") == []
    assert unbacked(notebook("It reaches 95.1% (the fraction, as a percentage).", printed), "x") == []
    assert len(unbacked(notebook("It reaches 99.7% and runs 37x faster.", printed), "x")) == 1
    assert len(unbacked(notebook("It runs a hundredfold faster.", printed), "x")) == 1
    assert len(unbacked(notebook("It runs 97x faster.", printed), "x")) == 1  # a percentage is no multiple
    assert unbacked(notebook("A setting in code is no result: `mask=0.3`, `784×256`, `30%`.", printed), "x") == []

"""A learner's first contact: JupyterLab in a real browser (headless Chromium driven by Playwright).

Opens 02_stage1_pretraining and 04_stage2_classifier in JupyterLab, runs every cell, checks that no
cell fails, that the hyperparameter panels render as real controls, and that moving a slider and
pressing Run retrains (the live plot and the printed metric change). Screenshots go to
``artifacts/screenshots/``. Skipped, with the reason, only where Chromium cannot be installed.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "artifacts" / "screenshots"
TOKEN = "twostage-browser-test"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


def chromium_path():
    """Debian's chromium, installed by tools/install_browser.sh when missing; else skip."""
    found = shutil.which("chromium")
    if found:
        return found
    out = subprocess.run(["bash", str(ROOT / "tools" / "install_browser.sh")], capture_output=True, text=True)
    found = shutil.which("chromium")
    if out.returncode != 0 or not found:
        pytest.skip(f"Chromium could not be installed: {out.stderr.strip()[-300:] or 'unknown reason'}")
    return found


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a free loopback port, serving a copy of notebooks/; stopped with its kernels."""
    pytest.importorskip("playwright", reason="playwright is in requirements.txt; reinstall the environment")
    chromium = chromium_path()
    workdir = tmp_path_factory.mktemp("lab")
    shutil.copytree(
        ROOT / "notebooks",
        workdir / "notebooks",
        ignore=shutil.ignore_patterns("checkpoints", "runs", ".ipynb_checkpoints"),
    )
    settings = workdir / "config" / "lab" / "user-settings" / "@jupyterlab"
    for extension, plugin, value in [
        ("notebook-extension", "tracker", '{"windowingMode": "none"}'),
        ("apputils-extension", "notification", '{"fetchNews": "false"}'),
    ]:
        (settings / extension).mkdir(parents=True, exist_ok=True)  # every cell rendered, no news prompt
        (settings / extension / f"{plugin}.jupyterlab-settings").write_text(value)
    port = free_port()
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(workdir / "config"), JUPYTER_RUNTIME_DIR=str(workdir / "rt"))
    log = open(workdir / "lab.log", "w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            "--allow-root",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={workdir}",
            "--LabApp.news_url=",
            "--LabServerApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                log.close()
                pytest.fail(f"JupyterLab did not start:\n{(workdir / 'lab.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield {"base": base, "chromium": chromium, "server": server}
    os.killpg(server.pid, signal.SIGTERM)  # the server and every kernel it started
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    time.sleep(1)
    log.close()
    with pytest.raises(ProcessLookupError):  # nothing of the process group is left
        os.killpg(server.pid, 0)


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chrome = p.chromium.launch(executable_path=lab["chromium"], args=CHROMIUM_FLAGS)
        yield chrome
        chrome.close()


def menu(page, top, item):
    page.locator(".lm-MenuBar-itemLabel", has_text=top).first.click()
    page.locator(".lm-Menu-itemLabel", has_text=item).first.click()


def accept_kernel(page):
    """JupyterLab may ask which kernel to start; take the notebook's own (Python 3)."""
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    try:
        dialog.wait_for(timeout=10_000)
    except Exception:  # noqa: BLE001 - no dialog: the kernel started by itself
        return
    dialog.locator("button", has_text="Select").click()


def wait_until_executed(notebook, timeout=300):
    """Every code cell shows an execution number ([12]:), none is queued or running."""
    deadline, halted = time.time() + timeout, 0
    while time.time() < deadline:
        prompts = [p.strip() for p in notebook.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()]
        if prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts):
            return prompts
        halted = halted + 1 if "[*]:" not in prompts else 0
        if halted >= 15:  # nothing running, cells left unrun: a cell failed and Run All stopped
            outputs = "\n".join(notebook.locator(".jp-OutputArea-output").all_inner_texts())
            raise AssertionError(f"execution stopped at {prompts}:\n{outputs[-1500:]}")
        time.sleep(1)
    raise AssertionError(f"cells still running or not run after {timeout} s: {prompts}")


@pytest.mark.parametrize(
    "name, slider, new_value",
    [
        ("02_stage1_pretraining", "epochs", "1"),
        ("04_stage2_classifier", "epochs", "2"),
    ],
)
def test_notebook_runs_and_its_panel_retrains(lab, browser, name, slider, new_value):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{lab['base']}/lab/tree/notebooks/{name}.ipynb?reset&token={TOKEN}")  # no restored tabs
    page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
    accept_kernel(page)
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(timeout=60_000)
    menu(page, "Edit", "Clear Outputs of All Cells")  # the committed outputs must not count
    notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").first
    assert notebook.locator(".jp-OutputArea-output").count() == 0
    menu(page, "Run", "Run All Cells")
    wait_until_executed(notebook)
    page.screenshot(path=str(SHOTS / f"{name}-executed.png"), full_page=False)

    outputs = "\n".join(notebook.locator(".jp-OutputArea-output").all_inner_texts())
    assert "Traceback" not in outputs, f"a cell failed in {name}"
    assert "Loading widget" not in outputs and "Error displaying widget" not in outputs

    panel = notebook.locator(".widget-vbox", has=page.locator("button", has_text="Run")).first
    panel.scroll_into_view_if_needed()
    assert panel.locator(".widget-slider").count() >= 1, "sliders render as controls"
    assert panel.locator("select").count() >= 1, "dropdowns render as controls"
    status = panel.locator(".widget-html").last
    image = panel.locator("img").first
    before_status, before_plot = status.inner_text(), image.get_attribute("src")
    assert before_status.startswith("run 1:"), before_status  # the headless run with the defaults

    row = panel.locator(".widget-slider", has=page.locator("label", has_text=slider)).first
    readout = row.locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(new_value)
    page.keyboard.press("Enter")
    assert readout.inner_text().strip() == new_value
    panel.locator("button", has_text="Run").click()
    page.wait_for_function(
        "([el, old]) => el.innerText !== old && el.innerText.startsWith('run 2')",
        arg=[status.element_handle(), before_status],
        timeout=120_000,
    )
    panel.screenshot(path=str(SHOTS / f"{name}-retrained.png"))
    after_status, after_plot = status.inner_text(), image.get_attribute("src")
    assert after_plot != before_plot, "the live plot was redrawn"
    assert after_status.split("(")[0] != before_status.split("(")[0], (before_status, after_status)
    page.close()


def test_widgets_extension_is_enabled():
    out = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"], capture_output=True, text=True)
    text = out.stdout + out.stderr
    line = next((row for row in text.splitlines() if "@jupyter-widgets/jupyterlab-manager" in row), "")
    assert "enabled" in line and "OK" in line, text

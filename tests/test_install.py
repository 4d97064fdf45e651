"""make's install steps: the Python floor is checked first, PyTorch's CPU build is the Linux default."""

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("install_torch", ROOT / "tools" / "install_torch.py")
install_torch = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install_torch)


def test_linux_gets_the_cpu_build_and_falls_back_loudly_when_its_index_is_unreachable():
    extra, message = install_torch.plan(cuda=False, platform="linux", index_reachable=True)
    assert extra == ["--extra-index-url", install_torch.CPU_INDEX] and "CPU-only" in message
    extra, message = install_torch.plan(cuda=False, platform="linux", index_reachable=False)
    assert extra == [] and "cannot be reached" in message and "PyPI" in message
    assert install_torch.plan(cuda=True, platform="linux", index_reachable=True)[0] == []
    assert install_torch.plan(cuda=False, platform="darwin", index_reachable=True)[0] == []


def test_the_torch_pins_come_from_requirements():
    assert install_torch.pins() == ["torch==2.14.1", "torchvision==0.29.1"]


def test_make_names_a_python_that_is_too_old_and_the_fix(tmp_path):
    """A stand-in Python that reports 3.10: make stops before it creates the venv, in one line."""
    fake = tmp_path / "python3"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f"exec {sys.executable} -c \"import sys; sys.version_info = (3, 10, 12, 'final', 0); "
        'exec(sys.argv[1])" "$2"\n'
    )
    fake.chmod(0o755)
    venv = tmp_path / "venv"
    out = subprocess.run(["make", "run", f"PYTHON={fake}", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0 and not venv.exists()
    assert "twostage needs Python 3.11 or newer, but" in out.stderr and "is 3.10.12" in out.stderr
    assert "make PYTHON=python3.11 run" in out.stderr


def test_pip_itself_answers_whether_the_cpu_index_has_the_pinned_torch(tmp_path):
    """pip reads the index (through the learner's proxy and certificates): a local index with the
    asked-for torch is reachable; a server that answers but has no such torch is not."""
    import functools
    import http.server
    import threading

    simple = tmp_path / "simple" / "torch"
    simple.mkdir(parents=True)
    wheel = "torch-9.9.9-py3-none-any.whl"  # a release no other index has, for any Python
    (simple / "index.html").write_text(f'<html><body><a href="{wheel}">{wheel}</a></body></html>')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert install_torch.reachable(f"{url}/simple", "9.9.9")
        assert not install_torch.reachable(f"{url}/nothing-here", "9.9.9")  # the port answers; pip finds no torch
    finally:
        server.shutdown()

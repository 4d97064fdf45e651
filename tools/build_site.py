"""Build the course's website into _build/html/ from the committed, executed notebooks (never run).

    make site                          # installs site/requirements.txt into .venv-site, then runs this
    python tools/build_site.py --out DIR

Stages the pages in _build/site-src/ (the landing page from the README's learner part, the
notebooks, the glossary, the library reference), then runs Sphinx with myst-nb with every warning
an error. While staging it: points links to files that are not pages at the repository on GitHub,
drops the widget views of the panels (the static figure under each panel shows the run), gives
every figure alt text, adds a download link to each notebook as committed, and writes site.json:
the repository and ref the notebooks' badges use (tools/set_repository.py keeps those; the launch
buttons and the download links follow them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
PAGES = {
    "README.md": "index.md",
    "notebooks/glossary.md": "notebooks/glossary.md",
    "docs/library.md": "docs/library.md",
}
PAGES.update({f"notebooks/{p.name}": f"notebooks/{p.name}" for p in NOTEBOOKS})
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
LINK = re.compile(r"\]\(([^)\s]+)\)")
BADGE = re.compile(r"colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob/([^/]+)/notebooks/")


def repository() -> tuple[str, str]:
    """The repository and ref the notebooks' Colab badges open."""
    first = "".join(json.loads(NOTEBOOKS[0].read_text())["cells"][0]["source"])
    found = BADGE.search(first)
    if not found:
        raise SystemExit(f"{NOTEBOOKS[0].name}: no Colab badge to take the repository from")
    return f"https://github.com/{found[1]}", found[2]


def relink(text: str, page: str, repo: str, ref: str) -> str:
    """Links from repository file ``page``: to another page, relative to the staged page; to any
    other file of the repository, to GitHub; anything absolute or an anchor, as it is."""
    here = Path(page).parent

    def target(match):
        link = match[1]
        if re.match(r"[a-z]+:", link) or link.startswith("#"):
            return match[0]
        path, _, anchor = link.partition("#")
        resolved = (here / path).as_posix()
        parts = []
        for part in resolved.split("/"):
            if part == "..":
                parts.pop()
            elif part != ".":
                parts.append(part)
        resolved = "/".join(parts)
        if resolved in PAGES:
            new = Path(os.path.relpath(PAGES[resolved], Path(PAGES[page]).parent)).as_posix()
        else:
            new = f"{repo}/blob/{ref}/{resolved}"
        return f"]({new}{'#' + anchor if anchor else ''})"

    return LINK.sub(target, text)


def landing(repo: str, ref: str) -> str:
    """The README's learner part (up to "How long it runs") and the table of contents."""
    readme = (ROOT / "README.md").read_text()
    learner = readme.split("\n## How long it runs", 1)[0]
    series = "\n".join(f"notebooks/{p.stem}" for p in NOTEBOOKS)
    toc = f"\n\n```{{toctree}}\n:hidden:\n:caption: The course\n\n{series}\n```\n"
    toc += "\n```{toctree}\n:hidden:\n:caption: Reference\n\nnotebooks/glossary\ndocs/library\n```\n"
    return relink(learner, "README.md", repo, ref) + toc


def stage_notebook(path: Path, repo: str, ref: str) -> dict:
    nb = json.loads(path.read_text())
    page = f"notebooks/{path.name}"
    caption = nb["cells"][0]["source"][0].lstrip("# ").strip()
    raw = repo.replace("https://github.com/", "https://raw.githubusercontent.com/")
    download = f"\n\n[Download this notebook (.ipynb)]({raw}/{ref}/{page})\n"
    nb["cells"][0]["source"] = "".join(nb["cells"][0]["source"]) + download
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            cell["source"] = relink("".join(cell["source"]), page, repo, ref)
            caption = next((line.lstrip("# ").strip() for line in cell["source"].splitlines() if line.strip()), caption)
            continue
        for out in cell.get("outputs", []):
            out.get("data", {}).pop(WIDGET_VIEW, None)  # a panel: its text and the static figure under it
            if "image/png" in out.get("data", {}):
                cell.setdefault("metadata", {})["mystnb"] = {"image": {"alt": f"Figure: {caption[:150]}"}}
    return nb


def stage(src: Path, repo: str, ref: str) -> None:
    shutil.rmtree(src, ignore_errors=True)
    (src / "notebooks").mkdir(parents=True)
    (src / "docs").mkdir()
    shutil.copy(ROOT / "site" / "conf.py", src / "conf.py")
    (src / "site.json").write_text(json.dumps({"repository": repo, "ref": ref}))
    (src / "index.md").write_text(landing(repo, ref))
    for page in ("notebooks/glossary.md", "docs/library.md"):
        (src / page).write_text(relink((ROOT / page).read_text(), page, repo, ref))
    for path in NOTEBOOKS:
        (src / "notebooks" / path.name).write_text(json.dumps(stage_notebook(path, repo, ref)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "html")
    args = parser.parse_args()
    start = time.perf_counter()
    repo, ref = repository()
    src = args.out.parent / "site-src"
    stage(src, repo, ref)
    shutil.rmtree(args.out, ignore_errors=True)
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", "-E", str(src), str(args.out)]
    done = subprocess.run(command)
    if done.returncode == 0:
        print(f"site built in {time.perf_counter() - start:.0f} s: {args.out / 'index.html'}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())

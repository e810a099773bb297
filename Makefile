# Two commands do everything on a fresh clone:
#   make serve   build the site from the catalog and serve it at http://127.0.0.1:8000
#   make test    run the test suite (fast tests; `make test-all` adds slow and browser tests)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve build test test-all test-slow test-browser notebooks notebooks-check bench validate browser-deps audio-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

validate: $(STAMP)
	$(BIN)/python -m site_tools validate

# The site is generated from catalog/papers at build time (site_tools/site/hooks.py); serve rebuilds on catalog edits.
# NO_MKDOCS_2_WARNING silences mkdocs-material's end-of-life banner, which is not about this site.
serve: $(STAMP)
	$(BIN)/python -m site_tools validate
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

build: $(STAMP)
	$(BIN)/python -m site_tools validate
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

test: $(STAMP) audio-deps
	$(BIN)/python -m pytest -q

test-slow: $(STAMP) audio-deps
	$(BIN)/python -m pytest -q -m slow

# Debian's Chromium drives the browser tests (no browser download: the site must work offline).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

# Debian's speech synthesisers: the MiniVoices testbed synthesises its speakers offline with them.
audio-deps:
	@command -v espeak-ng >/dev/null 2>&1 && command -v flite >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq espeak-ng flite >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq espeak-ng flite >/dev/null; fi; }

# Builds the site into a temp folder, serves it on a free port and drives headless Chromium (tests/site/).
test-browser: $(STAMP) browser-deps
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m pytest -q -m browser

test-all: test test-slow test-browser

# Re-execute every card notebook in place with papermill at ci scale, JOBS at a time (both cores by default): each
# saves its outputs and rewrites results/<testbed>/<card>/. `make serve` / `make build` then show them; the site never
# runs a notebook. `make notebooks-check` checks that the notebooks are what notebooks/_build.py makes.
JOBS ?= 2
notebooks: $(STAMP) audio-deps
	$(BIN)/python notebooks/_run.py --jobs $(JOBS)

notebooks-check: $(STAMP)
	$(BIN)/python notebooks/_build.py --check

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_catalog.py
	$(BIN)/python benchmarks/bench_site.py
	$(BIN)/python benchmarks/bench_cards.py

clean:
	rm -rf site build .pytest_cache .cache/mkdocs-jupyter

# Two commands do everything on a fresh machine (see README.md):
#   make test   set up .venv, then run every test (unit tests, doctests, notebooks under nbval); each notebook
#               executes once, and the executions that passed go into the book's cache (ibcore/_nbplugin.py)
#   make book   set up .venv, then build the rendered book: from that cache where it is current, executing
#               only what it lacks (everything, on a fresh clone)
PYTHON ?= python3
VENV ?= .venv
# torch 2.13.0 is a CPU build from local disk on the project's machines and the CUDA build from PyPI elsewhere;
# override (make TORCH="torch==2.x") to match a local CUDA.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: book test bench clean setup browser-check gpu-check
setup: $(INSTALLED)

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[book,test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ibcore)" > /dev/null
	touch $@

# Jupyter Book's execution cache hashes only the notebooks' code: `bookcache prepare` empties it when ibcore, the
# records or the numerical packages changed since it was filled (a content hash, not file times).
book: $(INSTALLED)
	$(BIN)/python -m ibcore.bookcache prepare
	$(BIN)/jupyter-book build . -W --keep-going

test: $(INSTALLED)
	$(BIN)/python -m pytest

bench: $(INSTALLED)
	$(BIN)/python benchmarks/bench_knn.py
	$(BIN)/python benchmarks/bench_stacked_training.py
	$(BIN)/python benchmarks/bench_quantized.py
	$(BIN)/python benchmarks/bench_sp.py
	$(BIN)/python benchmarks/bench_estimators.py
	$(BIN)/python benchmarks/bench_lossy.py
	$(BIN)/python benchmarks/bench_image_flow.py
	$(BIN)/python benchmarks/bench_flow_epoch.py
	$(BIN)/python benchmarks/bench_noisy_layer.py
	$(BIN)/python benchmarks/bench_batch.py

gpu-check: $(INSTALLED)
	$(BIN)/python benchmarks/gpu_check.py

# The rendered book opened page by page in headless Chromium (Debian's chromium package; installed here if missing
# and apt-get is allowed): fails on pages that did not render, broken images, unresolved glue, missing figures,
# formulas MathJax (served from the book itself) did not typeset, raw TeX, and scripts that point off the machine.
browser-check: book
	command -v chromium > /dev/null || { apt-get update -q && apt-get install -y -q chromium; }
	$(BIN)/python tests/browser/check_book.py _build/html --screenshots _build/screenshots

clean:
	rm -rf _build .pytest_cache

# patchbench — the three commands of the README.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
RESULTS ?= results

.PHONY: install test demo lint bench clean

install: $(VENV)/.installed  ## venv + editable install with dev tools (idempotent)

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

test: install  ## the test suite (no network, minutes on 2 cores)
	$(BIN)/python -m pytest -q

demo: install  ## the embedded Fashion-MNIST benchmark: model, LaVAN patches, LGS sweep, Table 1
	$(BIN)/patchbench train-model --preset demo-fmnist --results $(RESULTS)
	$(BIN)/patchbench sweep --preset demo-fmnist --results $(RESULTS)
	$(BIN)/patchbench table icaart2022-1 --preset demo-fmnist --results $(RESULTS) --out $(RESULTS)/demo/icaart2022-1.md

lint: install
	$(BIN)/ruff check patchbench tests benchmarks

bench: install  ## speed benchmarks (ratios in one run, same machine)
	mkdir -p $(RESULTS)/demo && $(BIN)/python benchmarks/bench_lgs.py --csv $(RESULTS)/demo/bench_lgs.csv

clean:
	rm -rf $(VENV) .pytest_cache

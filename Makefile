# patchbench — the commands of the README.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
RESULTS ?= results
PAPERS  := icaart2022 tomm2022 bmvc2023 advml2019 patchcleanser2022 imagenet_patch2023
# paper-scale data: IMAGENET=DIR (ImageFolder DIR/val, DIR/train; DATA= is read as IMAGENET= too),
# SMALL_DATA=DIR (DIR/mnist, DIR/cifar10, DIR/cifar100); ALLOW_CPU=1 runs paper scale without a GPU
IMAGENET ?= $(DATA)
DATA_ENV := $(if $(IMAGENET),PATCHBENCH_IMAGENET=$(IMAGENET)) $(if $(SMALL_DATA),PATCHBENCH_DATA=$(SMALL_DATA))
# make demo-tomm AUDIT=autoattack: the AutoAttack cross-check of every Table 6 cell after the demo (torchattacks,
# the bench extra); AUDIT_N=200: on the first 200 of the 1000 evaluation images only
AUDIT   ?=
AUDIT_N ?=
ifneq ($(filter-out autoattack,$(AUDIT)),)
$(error AUDIT=$(AUDIT): the audits are: autoattack)
endif

.PHONY: install test test-fast demo demo-inception demo-tomm demo-bmvc demo-advml reproduce-tables reproduce-tables-demo report lint bench clean

install: $(VENV)/.installed  ## venv + editable install with dev tools (idempotent)

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m compileall -q patchbench  # what pip does for a wheel: test workers and CLI runs read the bytecode instead of each compiling the package
	touch $@

# pytest-xdist: one test process per core (TEST_JOBS=0: one process), each on its share of torch's threads; the
# tests that read one trained model or demo run go to one process (--dist loadgroup, tests/conftest.py)
TEST_JOBS ?= auto
PYTEST    := $(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist loadgroup
# Python's bytecode cache on, where an environment turns it off (PYTHONDONTWRITEBYTECODE=1 on the development
# machine): otherwise each test process and each `python -m patchbench` a test starts recompiles the package, and
# pytest rewrites the asserts of all test modules again in every worker (6.6 s of a 14 s collection)
unexport PYTHONDONTWRITEBYTECODE

test: install  ## the whole test suite (no network, minutes on 2 cores)
	$(PYTEST) --durations=20

test-fast: install  ## everything but the end-to-end runs marked slow (under a minute on 2 cores)
	$(PYTEST) -m "not slow"

# the Fig. 9 step's --keep: a CSV already timed for the same workload, machine and code is kept (delete it to time again)
demo: install  ## ICAART 2022 at demo scale, small_vgg (Fashion-MNIST, CPU, <= 15 min): Tables 1, 3, SSIM, certified, patch optimality, Fig. 5, 9, 10
	PYTHON=$(BIN)/python bash scripts/ensure-dataset.sh
	$(BIN)/patchbench reproduce icaart2022 --only demo-fmnist --preset-scale demo --results $(RESULTS) --out $(RESULTS)/demo
	@t0=$$(date +%s); $(BIN)/python benchmarks/bench_defenses.py --preset demo-fmnist --n 500 --csv $(RESULTS)/demo/icaart2022-fig9-runtime.csv --keep \
		&& echo "stage fig9-benchmark: $$(( $$(date +%s) - t0 )) s"

demo-inception: install  ## ICAART 2022 Tables 2 and 4 at demo scale (mini_inception, the Inception-v3 stand-in; CPU)
	PYTHON=$(BIN)/python bash scripts/ensure-dataset.sh
	$(BIN)/patchbench reproduce icaart2022 --only demo-fmnist-inception --preset-scale demo --results $(RESULTS) --out $(RESULTS)/demo

demo-tomm: install  ## TOMM 2022 Table 6 at demo scale (Fashion-MNIST, LeNet, five trainings x ten attacks, CPU); AUDIT=autoattack cross-checks it
	PYTHON=$(BIN)/python bash scripts/ensure-dataset.sh
	$(BIN)/patchbench reproduce tomm2022 --preset-scale demo --results $(RESULTS) --out $(RESULTS)/demo
ifeq ($(AUDIT),autoattack)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m patchbench.runner.autoattack --preset demo-tomm-fmnist --results $(RESULTS) $(if $(AUDIT_N),--n $(AUDIT_N))
endif

demo-bmvc: install  ## BMVC 2023 Table 2 (top, bottom), Fig. 2, Fig. 3 at demo scale (Fashion-MNIST 32 px, volumetric small_vgg, CPU)
	PYTHON=$(BIN)/python bash scripts/ensure-dataset.sh
	$(BIN)/patchbench reproduce bmvc2023 --preset-scale demo --results $(RESULTS) --out $(RESULTS)/demo

demo-advml: install  ## AdvML 2019 Fig. 2 at demo scale (Fashion-MNIST, lenet natural / standard / background, CPU)
	PYTHON=$(BIN)/python bash scripts/ensure-dataset.sh
	$(BIN)/patchbench reproduce advml2019 --preset-scale demo --results $(RESULTS) --out $(RESULTS)/demo

reproduce-tables: install  ## all four papers at paper scale (GPU, ImageNet/CIFAR/MNIST, torchvision weights), then the report; preflight first
	$(DATA_ENV) $(BIN)/patchbench reproduce $(PAPERS) --preset-scale paper --results $(RESULTS) $(if $(ALLOW_CPU),--allow-cpu)
	$(DATA_ENV) $(BIN)/python benchmarks/bench_defenses.py --preset icaart2022-vgg16 --n 5000 --batch 50 --csv $(RESULTS)/paper/icaart2022-fig9-runtime.csv --keep
	$(BIN)/patchbench report --preset-scale paper --results $(RESULTS)

reproduce-tables-demo: install  ## all four papers at demo scale (Fashion-MNIST, CPU; budget 60 min on 2 cores from empty), then the report
	PYTHON=$(BIN)/python bash scripts/ensure-dataset.sh
	$(BIN)/patchbench reproduce $(PAPERS) --preset-scale demo --results $(RESULTS)
	$(BIN)/python benchmarks/bench_defenses.py --preset demo-fmnist --n 500 --csv $(RESULTS)/demo/icaart2022-fig9-runtime.csv --keep
	$(BIN)/patchbench report --preset-scale demo --results $(RESULTS)

report: install  ## rebuild RESULTS/SCALE/report.html and REPORT.md from the stored cells (SCALE=demo or paper)
	$(BIN)/patchbench report --preset-scale $(or $(SCALE),demo) --results $(RESULTS)

lint: install
	$(BIN)/ruff check patchbench tests benchmarks

BENCH ?= $(RESULTS)/bench

bench: install  ## the machine's calibration line, then speed vs ART, torchattacks, scikit-image, scipy, the LGS notebook, PatchCleanser's reference loop: CSV + markdown
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	mkdir -p $(BENCH)
	$(BIN)/python benchmarks/calibrate.py --csv $(BENCH)/calibration.csv
	$(BIN)/python benchmarks/bench_peers_defenses.py --csv $(BENCH)/defenses.csv
	$(BIN)/python benchmarks/bench_peers_attacks.py --csv $(BENCH)/attacks.csv
	$(BIN)/python benchmarks/bench_npixel.py --peer-csv $(BENCH)/npixel.csv
	$(BIN)/python benchmarks/bench_npixel.py --pixels 4 --n 32 --peer-csv $(BENCH)/npixel4.csv
	$(BIN)/python benchmarks/bench_scaling.py --csv $(BENCH)/scaling.csv
	PYTHON=$(BIN)/python bash scripts/ensure-dataset.sh
	$(BIN)/patchbench train-model --preset demo-fmnist --results $(RESULTS) --no-progress
	$(BIN)/python benchmarks/bench_certify.py --results $(RESULTS) --csv $(BENCH)/certify.csv
	$(BIN)/python benchmarks/report.py $(BENCH)/calibration.csv $(BENCH)/defenses.csv $(BENCH)/attacks.csv $(BENCH)/npixel.csv \
		$(BENCH)/npixel4.csv $(BENCH)/scaling.csv $(BENCH)/certify.csv --csv $(BENCH)/bench.csv --md $(BENCH)/bench.md

clean:
	rm -rf $(VENV) .pytest_cache

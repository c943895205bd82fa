# The two Quickstart commands: `make train` and `make test`. Each installs what is missing first.
PY ?= python3
RECIPE ?= recipes/addition_grpo.yaml

.PHONY: install install-gpu train test test-fast

install:
	bash scripts/install.sh cpu

install-gpu:
	bash scripts/install.sh gpu

train: install
	$(PY) -m rlreason train $(RECIPE) $(ARGS)

test: install
	$(PY) -m pytest -q --durations=15 tests

test-fast: install
	$(PY) -m pytest -q -m "not slow" tests

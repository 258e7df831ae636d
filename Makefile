# eznas: `make demo` evolves a proxy and sets it beside params and FLOPs on held-out networks; `make test` runs the test suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch==2.13.0 first (the CPU wheel); the project's own range then installs no other torch.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps xautodl==1.0.0 alethiometer==1.1.2 nasbench-pytorch==1.3.1 timm==1.0.31
	touch $(STAMP)

install: $(STAMP)

# The demo: evolve on 40 NB201 CIFAR-10 networks, export the program chosen on 40 other CIFAR-10
# networks (policy validation), then its held-out tau beside the baselines (README, "The demo").
demo: $(STAMP)
	$(BIN)/eznas evolve experiments/demo.toml --out runs/demo --force
	$(BIN)/eznas export runs/demo --policy validation -o runs/demo_proxy.py
	$(BIN)/eznas inspect runs/demo --policy validation --summary

test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=25

clean:
	rm -rf $(VENV) .pytest_cache

# eznas: `make demo` runs the smoke evolution end to end; `make test` runs the test suite.
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

demo: $(STAMP)
	$(BIN)/eznas evolve experiments/smoke.toml --out runs/demo --force
	$(BIN)/eznas inspect runs/demo --top 5
	$(BIN)/eznas export runs/demo -o runs/demo/best_proxy.py
	@echo "exported: runs/demo/best_proxy.py"

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache

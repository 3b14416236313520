# Two commands matter on a fresh machine: `make demo` and `make test`; both create .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch 2.13.0 lies in /opt/wheels on these machines; constraints.txt pins it.
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels)

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "ssmscope needs Python >= 3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(FIND_LINKS) -c constraints.txt -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/ssmscope reproduce --out runs/demo

test: setup
	$(BIN)/python -m pytest -q

bench: setup $(VENV)/.installed-bench
	$(BIN)/python benchmarks/run.py

$(VENV)/.installed-bench: pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet $(FIND_LINKS) -c constraints.txt -e '.[dev,bench]'
	touch $@

clean:
	rm -rf $(VENV) runs build src/*.egg-info

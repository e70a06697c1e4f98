# textae: `make demo` trains and shows the default model, `make test` runs the suite.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(STAMP)

# torch first, pinned: it is the CPU build on local disk; a bare requirement would pull a CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/textae train --output runs/default
	$(PY) -m textae.demo runs/default/final

test: install
	$(PY) -m pytest tests

bench: install
	$(PY) benchmarks/default_train.py

clean:
	rm -rf runs build *.egg-info

# Two entry points for a fresh machine: `make run` (the virtual camera) and `make test`.
# Both create the virtualenv and install vcam into it on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench eval clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/vcam run

test: $(BIN)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(BIN)/.installed
	$(BIN)/vcam bench

eval: $(BIN)/.installed
	$(BIN)/vcam eval

clean:
	rm -rf $(VENV) build *.egg-info

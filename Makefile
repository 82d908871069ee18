# Two entry points for a fresh machine: `make run` (the virtual camera) and `make test`.
# Both create the virtualenv with a supported Python (3.10 to 3.14: python3, else the newest pythonX.Y
# found; or PYTHON=...), install vcam into it and fetch the selfie models where no installed package
# ships them, on first use.
SUPPORTED_CHECK := import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 14))
CANDIDATES := python3 python3.14 python3.13 python3.12 python3.11 python3.10
PYTHON ?= $(firstword $(foreach p,$(CANDIDATES),$(shell command -v $(p) >/dev/null 2>&1 && \
	$(p) -c '$(SUPPORTED_CHECK)' 2>/dev/null && echo $(p))))
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench eval lint clean

$(BIN)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "vcam needs Python 3.10 to 3.14 and none was found: install one (e.g. python3.12) or run make PYTHON=/path/to/python3.12"; exit 2; }
	@$(PYTHON) -c '$(SUPPORTED_CHECK)' 2>/dev/null || { echo "vcam needs Python 3.10 to 3.14; $(PYTHON) is $$($(PYTHON) --version 2>&1 || echo 'not found'): run make PYTHON=python3.12 (or another 3.10-3.14)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/vcam setup --models
	touch $@

run: $(BIN)/.installed
	$(BIN)/vcam run

test: $(BIN)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(BIN)/.installed
	$(BIN)/vcam bench

eval: $(BIN)/.installed
	$(BIN)/vcam eval

lint: $(BIN)/.installed
	$(BIN)/ruff check vcam tests

clean:
	rm -rf $(VENV) build *.egg-info

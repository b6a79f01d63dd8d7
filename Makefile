# The two set-up commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench system-packages clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/actiond run -c config.toml

system-packages:
	.ci/install-system-packages

test: system-packages $(VENV)/.installed
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/actiond bench transport --json
	$(BIN)/actiond bench pipeline --json

clean:
	rm -rf $(VENV) build *.egg-info

# The two set-up commands of the README: `make run` and `make test`; `make install` and
# `make uninstall` for the systemd service (README, "Running as a systemd service").
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# `make install` (as root): actiond and its runtime dependencies (no extras) in a virtual
# environment at $(PREFIX), the command on PATH as a link in $(BINDIR) (the unit's ExecStart
# finds it there), the config in $(CONFDIR) unless one is there, the unit in $(UNITDIR).
# DESTDIR puts it all under another root, for a test or a look: a virtual environment is
# not relocatable (its scripts name $(DESTDIR)$(PREFIX)), so install for real without it.
PREFIX ?= /opt/actiond
BINDIR ?= /usr/local/bin
CONFDIR ?= /etc/actiond
UNITDIR ?= /etc/systemd/system
DESTDIR ?=
# The service runs as a dynamic user with ProtectHome=yes, so the venv's interpreter must
# be one every user can run outside /root and /home: the distribution's, not a pyenv's.
INSTALL_PYTHON ?= /usr/bin/python3
VENV_DIR := $(DESTDIR)$(PREFIX)
# systemd is told about the new unit only on a real install on a box that runs systemd.
SYSTEMD_RUNNING := $(if $(DESTDIR),,$(wildcard /run/systemd/system))

.PHONY: run test check bench system-packages clean install uninstall

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/actiond run -c config.toml

system-packages:
	.ci/install-system-packages

# Lint, format and types first (seconds), then the tests: one command, as CI runs it.
test: system-packages $(VENV)/.installed check
	$(BIN)/python -m pytest

check: $(VENV)/.installed
	$(BIN)/ruff check daemon tests tools
	$(BIN)/ruff format --check daemon tests tools
	$(BIN)/mypy

bench: $(VENV)/.installed
	$(BIN)/actiond bench transport --json
	$(BIN)/actiond bench pipeline --json

clean:
	rm -rf $(VENV) build *.egg-info

install:
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" != 0 ]; then \
	    echo "make install: writes $(PREFIX), $(BINDIR), $(CONFDIR) and $(UNITDIR):" \
	        "run it as root (sudo make install)" >&2; \
	    exit 1; fi
	$(INSTALL_PYTHON) -m venv $(VENV_DIR)
# pip builds in its source tree: build from a copy, so that root leaves no build/ or
# *.egg-info in the checkout (a later `make run` as its owner could not write them).
	src=$$(mktemp -d) && trap 'rm -rf "$$src"' EXIT && \
	    cp -R pyproject.toml README.md daemon "$$src"/ && \
	    $(VENV_DIR)/bin/pip install --quiet --disable-pip-version-check "$$src"
	install -d $(DESTDIR)$(BINDIR)
	ln -sfn $(PREFIX)/bin/actiond $(DESTDIR)$(BINDIR)/actiond
	install -d $(DESTDIR)$(CONFDIR)
	@if [ -e $(DESTDIR)$(CONFDIR)/config.toml ]; then \
	    echo "kept $(DESTDIR)$(CONFDIR)/config.toml (the new default is config.toml here)"; \
	else install -m 0644 config.toml $(DESTDIR)$(CONFDIR)/config.toml; fi
	install -D -m 0644 systemd/actiond.service $(DESTDIR)$(UNITDIR)/actiond.service
	$(if $(SYSTEMD_RUNNING),systemctl daemon-reload)

uninstall:
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" != 0 ]; then \
	    echo "make uninstall: run it as root (sudo make uninstall)" >&2; exit 1; fi
	$(if $(SYSTEMD_RUNNING),if [ -e $(UNITDIR)/actiond.service ]; then \
	    systemctl disable --now actiond.service; fi)
	rm -f $(DESTDIR)$(UNITDIR)/actiond.service
	$(if $(SYSTEMD_RUNNING),systemctl daemon-reload)
# Only our own link, and only a directory that is a virtual environment with actiond.
	if [ "$$(readlink $(DESTDIR)$(BINDIR)/actiond)" = "$(PREFIX)/bin/actiond" ]; then \
	    rm -f $(DESTDIR)$(BINDIR)/actiond; fi
	if [ -f $(VENV_DIR)/pyvenv.cfg ] && [ -e $(VENV_DIR)/bin/actiond ]; then \
	    rm -rf $(VENV_DIR); fi
	@echo "kept $(DESTDIR)$(CONFDIR)/config.toml and the state in /var/lib/actiond"

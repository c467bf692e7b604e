# cbac: one command to run the firewall, one to run the tests (see README.md).
# Both do all set-up on a fresh Debian machine: Debian packages (when run as
# root with apt-get), a virtualenv in .venv, the package installed editable.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
APT_PACKAGES = $(shell sed -e 's/\#.*//' requirements-apt.txt)
TRIAL_ARGS ?= tests

.PHONY: all deps venv test run check bench clean deb

all: test

# Debian packages the lab, the tests and the benchmarks use.  Only installs
# what is missing, so it is a no-op on a prepared machine.
deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(APT_PACKAGES); do \
	    dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -q --no-install-recommends $$missing >/dev/null; \
	  fi; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Flat layout: an editable install only exposes twisted/plugins to twistd
# with editable_mode=compat (a .pth naming the project directory).
$(VENV)/.installed: $(BIN)/python setup.py requirements-test.txt
	$(BIN)/pip install -q -r requirements-test.txt
	$(BIN)/pip install -q -e . --config-settings editable_mode=compat
	touch $@

venv: $(VENV)/.installed

test: deps venv
	$(BIN)/python -m twisted.trial $(TRIAL_ARGS)

check: venv
	$(BIN)/twistd -n cbac -c etc/router.conf --check
	$(BIN)/twistd -n cbac -c etc/router-zbf.conf --check

# Build the namespace lab and run the firewall on it in the foreground.
run: deps venv
	$(BIN)/python -m cbac.lab run -c etc/router.conf

bench: deps venv
	$(BIN)/python -m bench

deb:
	PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b

clean:
	rm -rf $(VENV) _trial_temp *.egg-info build dist

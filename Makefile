# cbac: one command to run the firewall, one to run the tests (see README.md).
# Both do all set-up on a fresh Debian machine: Debian packages (when run as
# root with apt-get), a virtualenv in .venv, the package installed editable.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
APT_RUN  = $(shell sed -e 's/\#.*//' requirements-apt.txt)
APT_TEST = $(shell sed -e 's/\#.*//' requirements-apt-test.txt)
TRIAL_ARGS ?= tests
# e.g. TRIAL_FLAGS=--reporter=timing: each test's time (0.00 under trial -j)
TRIAL_FLAGS ?=
TRIAL = $(BIN)/python -m twisted.trial $(TRIAL_FLAGS)
# The whole suite (TRIAL_ARGS=tests) runs in three trial invocations, one
# after the other, each with its own temp directory (its test.log kept):
# 1. the unit modules, TEST_JOBS at a time (trial -j);
# 2. the lab modules, one at a time: network namespaces, cbac and real
#    clients and servers, package installs (tests/groups.py picks them by
#    name and by what they use; a new module lands in its group by itself);
# 3. the lab modules whose traffic the kernel fast path can carry
#    (inspection, evasion, FTP data, the offload tests) again with it off
#    (CBAC_OFFLOAD=0: every packet in Python), without their kernel
#    reference classes (no cbac in them: nothing changes) and the classes
#    marked offload_off_pass = False (nothing of their traffic can be
#    offloaded); the second run has it on wherever it loads.  Only
#    inspected sessions are offloaded: test_lab_forwarding (routed, no
#    inspect rule) and the application inspectors' modules (never
#    offloaded) would run the same way twice.
# Every group runs even when one before it failed; make fails if any did.
TEST_JOBS ?= 2
OFFLOAD_OFF_TESTS ?= tests.test_lab_inspect tests.test_lab_evasion tests.test_lab_ftp tests.test_lab_offload

.PHONY: all deps deps-run venv venv-run test run check bench clean deb bpf

# The kernel fast path (docs/performance.md): an eBPF object built from C.
# Without clang the object is missing and cbac runs without offload (one
# log line); the offload tests skip saying so.
BPF_SRC = cbac/dataplane/bpf/fastpath.bpf.c
BPF_OBJ = cbac/dataplane/bpf/fastpath.bpf.o
BPF_ARCH_INC = $(wildcard /usr/include/$(shell uname -m)-linux-gnu)
BPF_CFLAGS = -O2 -g -Wall -target bpf $(if $(BPF_ARCH_INC),-I$(BPF_ARCH_INC))

all: test

# Debian packages (when run as root with apt-get): only the missing ones,
# so this is a no-op on a prepared machine; apt's progress is shown.
define apt_install
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(1); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" \
	      || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "==> installing Debian packages:$$missing"; \
	    apt-get update && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y --no-install-recommends $$missing || exit 1; \
	  fi; \
	fi
endef

# What the lab, the tests, the benchmarks and the package build use.
deps:
	$(call apt_install,$(APT_RUN) $(APT_TEST))

# What `make run` uses (no package build tools, no test-only tools).
deps-run:
	$(call apt_install,$(APT_RUN))

$(BIN)/python:
	@echo "==> creating the virtualenv $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Flat layout: an editable install only exposes twisted/plugins to twistd
# with editable_mode=compat (a .pth naming the project directory).
$(VENV)/.installed: $(BIN)/python setup.py requirements.txt requirements-test.txt
	@echo "==> installing the Python packages of requirements-test.txt into $(VENV)"
	$(BIN)/pip install -q -r requirements-test.txt
	$(BIN)/pip install -q -e . --config-settings editable_mode=compat
	touch $@ $(VENV)/.installed-run

$(VENV)/.installed-run: $(BIN)/python setup.py requirements.txt
	@echo "==> installing the Python packages of requirements.txt into $(VENV)"
	$(BIN)/pip install -r requirements.txt
	$(BIN)/pip install -q -e . --config-settings editable_mode=compat
	touch $@

venv: $(VENV)/.installed

venv-run: $(VENV)/.installed-run

$(BPF_OBJ): $(BPF_SRC)
	@if command -v clang >/dev/null; then \
	  clang $(BPF_CFLAGS) -c $(BPF_SRC) -o $@; \
	else echo "clang not installed: $(BPF_OBJ) not built, cbac runs without the kernel fast path"; fi

bpf: $(BPF_OBJ)

ifeq ($(TRIAL_ARGS),tests)
test: deps venv bpf
	@rc=0; unit=PASSED; lab=PASSED; off=PASSED; \
	echo "==> unit tests, $(TEST_JOBS) at a time (log: _trial_temp.unit)"; \
	tests=$$($(PYTHON) tests/groups.py unit) && [ -n "$$tests" ] \
	  && $(TRIAL) -j$(TEST_JOBS) --temp-directory=_trial_temp.unit $$tests \
	  || { rc=1; unit=FAILED; }; \
	echo "==> lab tests, one at a time (log: _trial_temp.lab)"; \
	tests=$$($(PYTHON) tests/groups.py lab) && [ -n "$$tests" ] \
	  && $(TRIAL) --temp-directory=_trial_temp.lab $$tests \
	  || { rc=1; lab=FAILED; }; \
	echo "==> lab tests again with the kernel fast path off, CBAC_OFFLOAD=0 (log: _trial_temp.offload-off)"; \
	tests=$$($(BIN)/python tests/groups.py offload-off $(OFFLOAD_OFF_TESTS)) && [ -n "$$tests" ] \
	  && CBAC_OFFLOAD=0 $(TRIAL) --temp-directory=_trial_temp.offload-off $$tests \
	  || { rc=1; off=FAILED; }; \
	echo "==> make test: unit tests $$unit, lab tests $$lab, lab tests with CBAC_OFFLOAD=0 $$off"; \
	exit $$rc
else
test: deps venv bpf
	$(TRIAL) $(TRIAL_ARGS)
endif

check: venv
	$(BIN)/twistd -n cbac -c etc/router.conf --check
	$(BIN)/twistd -n cbac -c etc/router-zbf.conf --check

# Build the namespace lab and run the firewall on it in the foreground.
run: deps-run venv-run bpf
	$(BIN)/python -m cbac.lab run -c etc/router.conf

bench: deps venv bpf
	$(BIN)/python -m bench

deb:
	PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b

clean:
	rm -rf $(VENV) _trial_temp _trial_temp.* *.egg-info build dist $(BPF_OBJ)

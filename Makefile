# imgpipe: two commands for a new user on Debian.
#   make demo   set everything up (apt wsclean, .venv, imgpipe) and image the demo data
#   make test   the same set-up, then the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := wsclean

.PHONY: setup system-deps test-deps demo test bench clean

system-deps:
	@missing=""; \
	command -v wsclean >/dev/null 2>&1 || missing="$$missing wsclean"; \
	$(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# The SSH tests start real sshd servers on 127.0.0.2-4 (never beyond loopback); the
# SLURM tests a real single-node SLURM (slurmctld, slurmd, munged) on this machine;
# the report test renders report.html in headless Chromium; the --nodes_mpi test runs
# Open MPI's mpirun on this machine.
test-deps:
	@missing=""; \
	[ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	command -v ssh-keygen >/dev/null 2>&1 || missing="$$missing openssh-client"; \
	command -v srun >/dev/null 2>&1 && [ -x /usr/sbin/slurmd ] || missing="$$missing slurm-wlm"; \
	[ -x /usr/sbin/munged ] || missing="$$missing munge"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v mpirun >/dev/null 2>&1 || missing="$$missing openmpi-bin"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(BIN)/imgpipe: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: system-deps $(BIN)/imgpipe

demo: setup
	$(BIN)/python -m imgpipe.demo make demo
	$(BIN)/imgpipe examples/demo.toml demo/SW01.MS demo/SW02.MS
	$(BIN)/python -m imgpipe.demo check demo/images

test: setup test-deps
	$(BIN)/python -m pytest -ra

# Benchmarks (not tests): ratios against baselines measured in the same run → bench/RESULTS.md
bench: setup test-deps
	$(BIN)/python bench/run.py

clean:
	rm -rf demo .pytest_cache

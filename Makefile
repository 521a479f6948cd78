# imgpipe: two commands for a new user on Debian.
#   make demo   set everything up (apt wsclean, .venv, imgpipe) and image the demo data
#   make test   the same set-up, then the whole test suite
#   make nightly-demo  the nightly loop (Prefect server, deployment, worker) on 127.0.0.1
# and the maintainers' loops: make unit, make lint, make docs, make bench, make lock;
# make wsclean-mp (opt-in) builds WSClean's MPI program for --nodes_mpi.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Every Python package .venv gets, at the version the suite last passed with
# (docs/development.md: "The lock"). make lock refreshes it.
LOCK   := constraints.txt
EXTRAS := test,lint,docs

.PHONY: setup system-deps test-deps demo nightly-demo test unit lint docs bench lock clean wsclean-mp

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
# Open MPI's mpirun on this machine; the deployment tests also run on a PostgreSQL
# cluster of their own (Debian's postgresql, on 127.0.0.1, in a temporary folder).
test-deps:
	@missing=""; \
	[ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	command -v ssh-keygen >/dev/null 2>&1 || missing="$$missing openssh-client"; \
	command -v srun >/dev/null 2>&1 && [ -x /usr/sbin/slurmd ] || missing="$$missing slurm-wlm"; \
	[ -x /usr/sbin/munged ] || missing="$$missing munge"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v mpirun >/dev/null 2>&1 || missing="$$missing openmpi-bin"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# .venv from the lock: pip, setuptools and wheel first (imgpipe is then built with the
# locked setuptools, not whatever PyPI serves today), then imgpipe and every dependency
# pinned by $(LOCK). A change to the lock or to pyproject.toml re-runs this, and pip
# moves each package to its locked version, up or down.
$(BIN)/imgpipe: pyproject.toml $(LOCK)
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	@echo "installing Python packages from the lock: $(LOCK) ($$(grep -c '==' $(LOCK)) pins; $$(sed -n 's/^# locked: //p' $(LOCK)))"
	$(BIN)/python -m pip install -q -c $(LOCK) pip setuptools wheel
	$(BIN)/python -m pip install -q --no-build-isolation -c $(LOCK) -e '.[$(EXTRAS)]'
	touch $@

# imgpipe's own modules byte-compiled, as pip does for a non-editable install: where
# PYTHONDONTWRITEBYTECODE is set (many container images set it, as does the machine
# this project is developed on), Python would otherwise compile the ~60 a run loads
# anew on every run, before its first job (50-80 ms here). Up to date, this is a few milliseconds.
setup: system-deps $(BIN)/imgpipe
	@$(BIN)/python -m compileall -q imgpipe flows

demo: setup
	$(BIN)/python -m imgpipe.demo make demo
	$(BIN)/imgpipe examples/demo.toml demo/SW01.MS demo/SW02.MS
	$(BIN)/python -m imgpipe.demo check demo/images

# The nightly loop on 127.0.0.1: server, pool, deployment, worker, one night, all stopped after.
nightly-demo: setup
	examples/nightly-demo.sh demo/nightly
	$(BIN)/python -m imgpipe.demo check demo/nightly/images

test: setup test-deps lint docs
	$(BIN)/python -m pytest -ra

# The maintainers' fast loops. unit: every test that needs no daemon (no sshd, SLURM,
# Dask or Prefect server); lint: ruff (pinned rule set) and shellcheck on the shell
# files; docs: the manual (Sphinx), warnings as errors, into build/docs.
unit: setup
	$(BIN)/python -m pytest -q -m "not daemon and not pythons"

SHELL_FILES := $(wildcard imgpipe/backends/scripts/*.sh tests/support/*.sh tools/*.sh .ci/run) examples/nightly-demo.sh
lint: setup
	$(BIN)/ruff check imgpipe tests bench flows docs
	$(BIN)/mypy
	$(BIN)/shellcheck $(SHELL_FILES)

docs: setup
	$(BIN)/sphinx-build -q -W --keep-going -b html docs build/docs
	@echo "manual: build/docs/index.html"

# Refresh the lock: resolve pyproject.toml's ranges against today's releases in a
# throw-away venv and write every version it got. Land it only with `make test` green.
lock:
	rm -rf build/lock-venv
	$(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/python -m pip install -q --upgrade pip setuptools wheel
	build/lock-venv/bin/python -m pip install -q '.[$(EXTRAS)]'
	{ echo "# The Python packages 'make demo' and 'make test' install, each at the version the"; \
	  echo "# test suite passed with. Written by 'make lock' (docs/development.md): do not edit."; \
	  echo "# locked: $$(date -u +%Y-%m-%d) with $$(build/lock-venv/bin/python -V)"; \
	  build/lock-venv/bin/python -m pip freeze --all | grep -v -i '^imgpipe\b' | LC_ALL=C sort -f; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf build/lock-venv
	@echo "$(LOCK) rewritten: run 'make test' before committing it"

# Opt-in, not part of make test: WSClean's MPI program (Debian's package has none) built
# from Debian's own wsclean source into ~/.cache/imgpipe/wsclean-mp (docs/mpi.md). A
# full C++ compile of tens of minutes; the --nodes_mpi imaging test uses it when present.
wsclean-mp:
	tools/build-wsclean-mp.sh

# Benchmarks (not tests): ratios against baselines measured in the same run → bench/RESULTS.md
bench: setup test-deps
	$(BIN)/python bench/run.py

clean:
	rm -rf demo .pytest_cache build

# The two commands the README starts with:
#   make lab       set everything up, check the lab's topology, bring up the lab
#   make test-all  set everything up and run every tier, the lab's included (what .ci/run runs)
# make test: the unit, functional and booted-host tiers alone
SHELL := /bin/bash
# SALT=3006 or SALT=3007 (`make test SALT=3006`): the same targets in a venv
# of that Salt series, .venv-salt3006, whose exact release tools/salt-venv.py
# names (the one place for it).  Without SALT (or with SALT=3008): .venv, with
# pyproject.toml's salt==3008.4, what CI runs.
SALT ?=
ifeq ($(filter-out 3008,$(SALT)),)
VENV := .venv
else
VENV := .venv-salt$(SALT)
endif
PY := $(VENV)/bin/python
STAMPS := .salt/stamps
# One stamp per venv: .salt/stamps/venv, .salt/stamps/venv-salt3006, ...
VENV_STAMP := $(STAMPS)/$(VENV:.%=%)

.PHONY: setup apt venv lab lab-down drill test test-lab test-all unit lint bench validate clean

setup: apt venv .salt/local/minion

apt: $(STAMPS)/apt
$(STAMPS)/apt: tools/apt-packages.txt
	@mkdir -p $(STAMPS)
	@missing=$$(for p in $$(grep -v '^#' tools/apt-packages.txt); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@touch $@

venv: $(VENV_STAMP)
$(STAMPS)/venv: pyproject.toml
	@mkdir -p $(STAMPS)
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@bash tools/link-mininet.sh
	@touch $@

# An older Salt series: the project's pins, with that release of Salt and
# its own dependencies in place of salt==3008.4 (tools/salt-venv.py).
$(STAMPS)/venv-salt%: pyproject.toml tools/salt-venv.py
	@python3 tools/salt-venv.py --check $*
	@mkdir -p $(STAMPS)
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) tools/salt-venv.py $*
	@VENV=$(CURDIR)/$(VENV) bash tools/link-mininet.sh
	@touch $@

.salt/local/minion: tools/local-config.py | venv
	$(PY) tools/local-config.py

# Validate a topology and list every file each node would get.
TOPOLOGY ?= pillar/lab/lb.sls
validate: setup
	$(PY) tools/check-topology.py $(TOPOLOGY)

lab: setup
	$(PY) tools/check-topology.py pillar/seed/lb.sls
	$(PY) tools/check-topology.py pillar/lab/lb.sls
	$(PY) -m lab up

lab-down: venv
	$(PY) -m lab down

drill: setup
	$(PY) -m lab drill

# The default run: lint, unit and functional tiers (real haproxy, keepalived,
# ucarp, MariaDB/Galera, xinetd, Salt's loader; no network namespaces), and
# tests/boot: the pair on two Debian hosts booted by systemd-nspawn (reboots).
test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest tests/unit tests/functional tests/boot

# The Mininet lab tier: a real salt-master and minions, CARP failovers,
# Galera, the reactor (needs root; brings the lab up and down itself); then
# the same lab with the load balancers booted by systemd under nspawn
# (`python -m lab up --booted`): reboots with the salt-master stopped.  One
# lab per machine at a time, so two pytest runs.
test-lab: setup
	$(VENV)/bin/pytest tests/lab
	$(VENV)/bin/pytest tests/lab_booted

# Everything: the default run, then the lab tier.
test-all: test test-lab

unit: setup
	$(VENV)/bin/pytest tests/unit

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(PY) bench/topology_scale.py

clean:
	rm -rf .salt .pytest_cache

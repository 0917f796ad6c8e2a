# magellan-testbed — the only entry points a newcomer needs.
#   make testbed   bootstrap, build the local site, run the comparison, print it, write the report and dashboards
#   make test      lint, unit, molecule and integration tests
#   make bench     benchmarks (cold/warm testbed, exporter scrape cost)
#   make clean     remove everything the testbed created (containers, network, images, state)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STATE := .testbed
INVENTORY ?= inventories/local
export PATH := $(BIN):$(PATH)
export CONTAINERS_CONF := $(CURDIR)/files/containers.conf
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export TIMINGS_FILE := $(CURDIR)/$(STATE)/timings.log
export PIP_DISABLE_PIP_VERSION_CHECK := 1
TIMED := $(CURDIR)/tools/timed
PLAYBOOK := $(BIN)/ansible-playbook -i $(INVENTORY)

.PHONY: help bootstrap testbed site compare test lint unit molecule integration bench clean distclean dashboards lock \
  test-grafana

help:
	@sed -n 's/^#   //p' Makefile

$(STATE):
	@mkdir -p $(STATE)

$(STATE)/apt.stamp: files/apt-packages.txt | $(STATE)
	@tools/bootstrap-apt
	@touch $@

# --no-compile: pip byte-compiles every file it installs, 21,000 here of which the ansible package's collections are
# 15,000 (the install took ~125 s, 44 s without); Python compiles what is imported, when it is first imported.
$(VENV)/.stamp: requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --no-compile -r requirements.txt
	@$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	@touch $@

# Wheel of this repository's Python code: the exporters and workloads roles install it on the nodes.
dist/.stamp: $(VENV)/.stamp pyproject.toml $(shell find magellan exporters workloads chos -name '*.py' 2>/dev/null)
	@mkdir -p dist && rm -f dist/magellan_testbed-*.whl
	@$(BIN)/pip wheel -q --no-deps --no-build-isolation -w dist . >/dev/null
	@touch $@

# Binary wheels of the nodes' ROOT workload dependencies (CPython 3.11, glibc >= 2.28: Debian 12), fetched once.
dist/wheels/.stamp: $(VENV)/.stamp files/node-requirements.txt
	@rm -rf dist/wheels && mkdir -p dist/wheels
	@$(BIN)/pip download -q --no-deps --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 \
	  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d dist/wheels -r files/node-requirements.txt
	@touch $@

bootstrap: $(STATE)/apt.stamp $(VENV)/.stamp dist/.stamp dist/wheels/.stamp

# Bare metal vs virtual: the CPU workload on a bare-metal node and on a guest (group bare_vs_virtual of the local
# inventory), with the accelerator the guest really ran on next to the ratio. Empty it for inventories without one.
VIRTUAL_COMPARE ?= --group bare_vs_virtual --workload simulate --reference compute1

# A comparison with a failed run exits 1 (make testbed too): the other comparison and the dashboards' pages are made
# all the same.
testbed: bootstrap
	@: > $(TIMINGS_FILE)
	@$(TIMED) site $(PLAYBOOK) playbooks/site.yml
	@date -u +%Y-%m-%dT%H:%M:%SZ > $(STATE)/campaigns.started
	@rc=0; $(TIMED) compare $(BIN)/testbed compare --inventory $(INVENTORY) || rc=$$?; \
	  if [ -n "$(VIRTUAL_COMPARE)" ]; then \
	    $(TIMED) compare-virtual $(BIN)/testbed compare --inventory $(INVENTORY) $(VIRTUAL_COMPARE) || rc=$$?; fi; \
	  $(TIMED) arrays $(BIN)/testbed arrays --inventory $(INVENTORY) || rc=$$?; \
	  $(TIMED) render $(BIN)/testbed dashboards render --inventory $(INVENTORY) \
	    --from $$(cat $(STATE)/campaigns.started) || rc=$$?; \
	  exit $$rc

site: bootstrap
	@$(TIMED) site $(PLAYBOOK) playbooks/site.yml

compare: bootstrap
	@$(TIMED) compare $(BIN)/testbed compare --inventory $(INVENTORY)

# make test overlaps stages that leave a core idle (a linear Ansible run kept 48 % of the two cores busy here): the
# node and CHOS images, the guest image (350 s of mmdebstrap), lint and the unit tests start together; as soon as lint
# and the images are done, the integration tests' site (playbooks/site.yml; TESTBED_SITE_CONVERGED=1 then tells the
# tests) starts beside the unit tests (the longest, 1,014 s: they ran alone on one core for their last 500 s),
# followed by its no-change tests (a --check --diff run: nothing would change). The molecule scenarios start when the
# unit tests are done, one at a time (four at once beside the unit tests and the site made a load of 14 on two cores,
# and the site's TCG guest storage1 missed its 900-s boot timeout), then the integration tests of validate.yml, which
# need no site (their own fact cache: the site's run writes the shared one). The integration tests start when all of
# these are done. The background stages' logs are printed when they are done, and the failing lines of failed
# molecule scenarios last (CI shows the output's tail).
VALIDATE_TESTS := tests/integration/test_validate.py
# The stages beside the site (unit, molecule, validate) run niced: the site and its no-change run are make test's
# longest path, and they slowed it by about 800 s (CI: the site 2,333 s beside them, about 1,550 s with little else).
SIDE := nice -n 10
# make test runs every molecule scenario but the guest's, one at a time. virtual_node/guest boots a third TCG guest
# with a Slurm head and a hypervisor of its own (898-1,135 s) beside the site's two; with it, make test took 100 min
# and more, over CI's 90 (see the CHANGELOG). `make molecule` runs it.
MOLECULE_SKIP_IN_TEST := virtual_node/guest
MOLECULE_SKIP_WHY := the site stage builds its role's guests; README.md (make test) says what covers it and what not
NO_CHANGE_TESTS := tests/integration/test_no_change.py
test: bootstrap
	@: > $(TIMINGS_FILE); rm -f $(STATE)/no-change.log
	@rc=0; $(TIMED) images $(PLAYBOOK) playbooks/images.yml -e '{"images_build": ["node", "chos"]}' \
	    >$(STATE)/images.log 2>&1 & images=$$!; \
	  $(TIMED) images-guest $(PLAYBOOK) playbooks/images.yml -e '{"images_build": ["guest"]}' \
	    >$(STATE)/images-guest.log 2>&1 & guest=$$!; \
	  $(TIMED) unit $(SIDE) $(MAKE) --no-print-directory unit >$(STATE)/unit.log 2>&1 & unit=$$!; \
	  $(TIMED) lint $(MAKE) --no-print-directory lint || rc=$$?; \
	  for job in images:$$images images-guest:$$guest; do \
	    wait $${job#*:} || rc=$$?; echo "== $${job%%:*} (log: $(STATE)/$${job%%:*}.log)"; \
	    tail -n 25 $(STATE)/$${job%%:*}.log; done; \
	  unit_done() { wait $$unit || { rc=$$?; echo "== unit failed (log: $(STATE)/unit.log)"; \
	    tail -n 60 $(STATE)/unit.log; }; tail -n 3 $(STATE)/unit.log; }; \
	  if [ $$rc -ne 0 ]; then unit_done; exit $$rc; fi; \
	  { $(TIMED) site $(PLAYBOOK) playbooks/site.yml >$(STATE)/site.log 2>&1 && \
	    TESTBED_SITE_CONVERGED=1 TESTBED_KEEP_SITE=1 $(TIMED) no-change $(BIN)/pytest -q -p no:cacheprovider \
	      -m integration $(NO_CHANGE_TESTS) >$(STATE)/no-change.log 2>&1; } & site=$$!; \
	  unit_done; \
	  MOLECULE_BACKGROUND= MOLECULE_SKIP="$(MOLECULE_SKIP_IN_TEST)" MOLECULE_SKIP_WHY="$(strip $(MOLECULE_SKIP_WHY))" \
	    $(TIMED) molecule $(SIDE) $(MAKE) --no-print-directory molecule || rc=$$?; \
	  ANSIBLE_CACHE_PLUGIN_CONNECTION=$(CURDIR)/$(STATE)/validate-facts $(TIMED) validate \
	    $(SIDE) $(BIN)/pytest -q -p no:cacheprovider -m integration $(VALIDATE_TESTS) >$(STATE)/validate.log 2>&1 \
	    || { rc=$$?; echo "== validate failed (log: $(STATE)/validate.log)"; tail -n 60 $(STATE)/validate.log; }; \
	  tail -n 3 $(STATE)/validate.log; \
	  wait $$site || rc=$$?; \
	  echo "== site (log: $(STATE)/site.log)"; tail -n 40 $(STATE)/site.log; \
	  echo "== no-change (log: $(STATE)/no-change.log)"; tail -n 40 $(STATE)/no-change.log 2>/dev/null; \
	  if [ -s $(STATE)/molecule-failures.log ]; then cat $(STATE)/molecule-failures.log; fi; exit $$rc
	@TESTBED_SITE_CONVERGED=1 $(TIMED) integration $(MAKE) --no-print-directory integration \
	  INTEGRATION_ARGS="--ignore=$(VALIDATE_TESTS) --ignore=$(NO_CHANGE_TESTS)"
	@echo "== stage timings"; cat $(TIMINGS_FILE)

lint: bootstrap
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint --profile production --offline
	$(BIN)/python tools/check_roles.py
	$(BIN)/python -m dashboards --check

dashboards: bootstrap
	$(BIN)/python -m dashboards

unit: bootstrap
	$(BIN)/pytest -q tests/unit

# Every molecule scenario of every role (tools/molecule-all); the node and guest images are built once
# (playbooks/images.yml) and shared.
molecule: bootstrap
	@MOLECULE=$(BIN)/molecule tools/molecule-all

integration: bootstrap
	$(BIN)/pytest -q -m integration tests/integration --durations=15 $(INTEGRATION_ARGS)

# testbed dashboards push against a real Grafana (not part of make test: no Grafana here). GRAFANA_URL=http://host:3000
# GRAFANA_TOKEN=<an Editor service-account token>; the dashboards stay there, in their folders.
test-grafana: bootstrap
	$(BIN)/pytest -q -p no:cacheprovider tests/live/test_grafana.py

bench: bootstrap
	$(BIN)/python -m testbed.bench --inventory $(INVENTORY)

clean:
	@if [ -x $(BIN)/ansible-playbook ]; then $(PLAYBOOK) playbooks/teardown.yml -e testbed_remove_images=true; fi
	rm -rf $(STATE) reports dist

distclean: clean
	rm -rf $(VENV)

lock:
	rm -rf $(STATE)/lockvenv && $(PYTHON) -m venv $(STATE)/lockvenv
	$(STATE)/lockvenv/bin/pip install -q ansible molecule 'molecule-plugins[podman]' pytest-testinfra ansible-lint \
	  yamllint mitogen prometheus-client grafana-foundation-sdk grafana-client rich matplotlib uproot awkward hist ruff mypy pytest hypothesis \
	  playwright bcrypt PyMySQL openstacksdk requests-mock \
	  types-PyYAML \
	  setuptools wheel
	$(STATE)/lockvenv/bin/pip freeze --all | grep -v '^pip==' > requirements.txt

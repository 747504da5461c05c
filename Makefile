# refmesh: two commands set everything up on a fresh machine.
#   make demo   creates .venv, installs, runs the sample mesh on the embedded broker
#   make test   creates .venv, installs, runs every test
#   make drills runs the fault drills and writes bench/RESULTS.md
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench drills install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,embedded]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || echo "NOTE: chromium or \
	chromium-driver is not installed: the web page's browser test will be SKIPPED \
	(apt-get install chromium chromium-driver; .ci/run does)"
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/python -m devmesh.demo

bench: $(STAMP)
	$(BIN)/python bench/core.py
	$(BIN)/python bench/agents.py
	$(BIN)/python bench/pipeline.py

# fault drills (about 25 minutes; `$(BIN)/python bench/drills.py --quick` takes about 5)
drills: $(STAMP)
	$(BIN)/python bench/drills.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info

# refmesh: two commands set everything up on a fresh machine.
#   make demo   creates .venv, installs, runs the sample mesh on the embedded broker
#               (make demo BROKER=apache: on Apache Kafka 4 with SASL_SSL and ACLs)
#   make test   creates .venv, installs, runs every test (the integration tests on both
#               brokers when java 17+ and mvn are on PATH)
#   make drills runs the fault drills and writes bench/RESULTS.md
PYTHON ?= python3.11
BROKER ?= embedded
# pytest-xdist workers of make test: the broker kinds' halves side by side (0: no workers)
TEST_WORKERS ?= 2
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench profile drills install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,embedded]'
	touch $(STAMP)

# py-spy for bench/profile.py: the bench extra, only for the benchmarks
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,embedded,bench]'
	touch $(BENCH_STAMP)

install: $(STAMP)

test: $(STAMP)
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || echo "NOTE: chromium or \
	chromium-driver is not installed: the web page's browser test will be SKIPPED \
	(apt-get install chromium chromium-driver; .ci/run does)"
	@$(BIN)/python -c 'from devmesh.apache import java_problem as p; m = p(); \
	print("NOTE: the Apache Kafka half of the integration tests will NOT run:", m) if m else \
	print("Apache Kafka half: on (Java 17+ and Maven found; jars from broker/pom.xml)")'
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

demo: $(STAMP)
	$(BIN)/python -m devmesh.demo --broker $(BROKER)

# benchmarks (about 30 minutes): the pipeline on Tansu and on Apache Kafka (SASL_SSL, ACLs) side by
# side when java 17+ and mvn are on PATH, else on Tansu alone with a NOTE saying why;
# `$(BIN)/python bench/pipeline.py --quick` takes about a minute; BENCH_ARGS='--brokers embedded';
# bench/checks.py (what issue 12's checks cost, with against without) takes about 10 s;
# bench/scale.py (1,000 agencies, four agent workers, restoring 1,000,000 referrals) about 20
# minutes, its --quick about 2
bench: $(BENCH_STAMP)
	$(BIN)/python bench/core.py
	$(BIN)/python bench/agents.py
	$(BIN)/python bench/checks.py
	$(BIN)/python bench/pipeline.py $(BENCH_ARGS)
	$(BIN)/python bench/scale.py

# where each process of the pipeline bench spends its CPU, per referral (py-spy on both brokers,
# about 2 minutes; PROFILE_ARGS='--brokers embedded --flamegraph')
profile: $(BENCH_STAMP)
	$(BIN)/python bench/profile.py $(PROFILE_ARGS)

# fault drills (about 25 minutes; `$(BIN)/python bench/drills.py --quick` takes about 5)
drills: $(STAMP)
	$(BIN)/python bench/drills.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info broker/target

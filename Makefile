# commune-bus: the Makefile targets are the user interface.
#   make demo   run the backbone on a local Kafka broker with simulated commune traffic (Ctrl-C stops all)
#   make test   set up on first use, then run the whole test suite against a real broker
#   make lint   ruff, mypy --strict, and the aiokafka stubs checked against the installed aiokafka
#   make up / make down   the local broker only (BROKERS=3: a 3-node cluster);  make bench   benchmarks
#   make chaos   the fault matrix (SIGKILL, SIGSTOP, broker loss, rebalance storm, provider outage) with accounting
SHELL := /bin/bash
PY := .venv/bin/python
STAMP := .venv/.installed


.PHONY: setup system up down topics demo lint test test-unit chaos bench schemas constraints clean

# Installs the exact versions of constraints.txt (regenerate it with `make constraints` after changing pyproject).
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || python3.11 -m venv .venv || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

setup: system $(STAMP) infra/kafka/target/libs/.complete

system:
	@infra/system-deps.sh

# afresh: a version changed in pom.xml left the old jars beside the new ones on the broker's classpath (libs/*), and a
# jar cut short by an interrupted copy was kept (audit of the front door)
infra/kafka/target/libs/.complete: infra/kafka/pom.xml
	rm -rf infra/kafka/target/libs
	mvn -q -B -f infra/kafka/pom.xml dependency:copy-dependencies
	@touch $@

# BROKERS=3: the 3-node cluster of infra/kafka (replication factor 3) instead of one broker
BROKERS ?= 1
# SECURE=1 (default): the secure broker of ADR 0014 (SASL_SSL + SCRAM-SHA-512 on 127.0.0.1:9392, the cluster on
# 9492-9494; ACLs from the registries), every command below as its `admin` principal; SECURE=0: the PLAINTEXT
# broker on 127.0.0.1:9092 (the cluster on 9192-9194)
SECURE ?= 1
KAFKA := KAFKA_BROKERS=$(BROKERS) KAFKA_SECURE=$(SECURE) infra/kafka/kafka.sh
AS_ADMIN := $(if $(filter 1,$(SECURE)),set -a && . "$$(infra/kafka/kafka.sh env admin)" && set +a &&,)
ON_KAFKA := boot=$${KAFKA_BOOTSTRAP:-$$($(KAFKA) bootstrap)} && $(AS_ADMIN) KAFKA_BOOTSTRAP=$$boot

up: setup
	$(KAFKA) start
	$(ON_KAFKA) $(PY) -m services.common.topics_cli

down:
	$(KAFKA) stop

topics: setup
	$(ON_KAFKA) $(PY) -m services.common.topics_cli

demo: up
	$(ON_KAFKA) $(PY) -m services.demo

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy
	MYPYPATH=typings $(PY) -m mypy.stubtest aiokafka --ignore-missing-stub --allowlist typings/stubtest-allowlist.txt

# TEST_SECURE=1 (default): the whole suite as admin on the secure broker (tests/conftest.py; within ~1.2x of the
# PLAINTEXT time since TLS connections close at once, ADR 0014); TEST_SECURE=0: on the PLAINTEXT broker
# (tests/security on a secure broker of its own either way). tests/run.py runs the fault
# tests (-m slow) in a pytest of their own beside the rest and beside the real-broker tests from the last (TESTS_RUNS=2:
# without that third run); each run, done with its own, takes the fault tests not yet begun, from the last
# (tests/claims.py; pytest's exit 5, no tests collected, counts as success for one run, not for all)
TEST_SECURE ?= 1
test: setup
	KAFKA_SECURE=$(TEST_SECURE) infra/kafka/kafka.sh start
	KAFKA_SECURE=$(TEST_SECURE) $(PY) -m tests.run $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest -m unit --durations=20 $(PYTEST_ARGS)

# the fault matrix against the real services, every record accounted for (CHAOS_ARGS=--fast: the quick rows;
# CHAOS_ARGS="--only intake-sigstop": one row; rows run two at a time, each in a process of its own, CHAOS_ARGS="--jobs 1"
# one after another); broker faults get a broker or cluster of their own
chaos: setup
	KAFKA_SECURE=0 infra/kafka/kafka.sh start
	KAFKA_BOOTSTRAP=$${KAFKA_BOOTSTRAP:-$$(KAFKA_SECURE=0 infra/kafka/kafka.sh bootstrap)} $(PY) -m tests.chaos $(CHAOS_ARGS)

# SECURE=0: the same benchmarks on the PLAINTEXT broker (what TLS + SASL cost: run both)
bench: up
	$(ON_KAFKA) $(PY) -m bench

schemas: setup
	$(PY) -m schemas.export

constraints:
	@{ sed -n '1,2p' constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -v '^#'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	infra/kafka/kafka.sh reset
	KAFKA_SECURE=1 infra/kafka/kafka.sh reset

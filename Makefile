# commune-bus: the Makefile targets are the user interface.
#   make demo   run the backbone on a local Kafka broker with simulated commune traffic (Ctrl-C stops all)
#   make test   set up on first use, then run the whole test suite against a real broker
#   make up / make down   the local broker only;  make bench   benchmarks
SHELL := /bin/bash
PY := .venv/bin/python
STAMP := .venv/.installed


.PHONY: setup system up down topics demo test test-unit bench schemas clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3.11 -m venv .venv || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

setup: system $(STAMP) infra/kafka/target/libs/.complete

system:
	@infra/system-deps.sh

infra/kafka/target/libs/.complete: infra/kafka/pom.xml
	mvn -q -B -f infra/kafka/pom.xml dependency:copy-dependencies
	@touch $@

up: setup
	infra/kafka/kafka.sh start
	$(PY) -m services.common.topics_cli

down:
	infra/kafka/kafka.sh stop

topics: setup
	$(PY) -m services.common.topics_cli

demo: up
	$(PY) -m services.demo

test: setup
	infra/kafka/kafka.sh start
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi; exit $$rc

test-unit: setup
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

bench: up
	$(PY) -m bench

schemas: setup
	$(PY) -m schemas.export

clean:
	infra/kafka/kafka.sh reset

# The two commands of the README: `make run` and `make test`. Both start with `make setup`.
SHELL := /bin/bash
PY := .venv/bin/python
STACK := scripts/stack
# The services' addresses come from the running stack, unless the caller set them.
STACK_ENV = eval "$$($(STACK) env)";

.PHONY: setup deps stack migrate run test test-unit test-integration bench lint stack-down clean soak

setup: deps stack migrate

deps:
	@scripts/install-python-deps

stack:
	@$(STACK) up

migrate: deps stack
	@$(STACK_ENV) $(PY) -m db migrate

run: setup
	@$(STACK_ENV) scripts/run-all

test: setup
	@scripts/apt-install kcat awscli docker-compose  # tests/integration/test_clients_*.py
	@scripts/apt-install chromium chromium-driver  # tests/integration/test_console_browser.py
	@$(STACK_ENV) $(PY) -m pytest tests

test-unit: deps
	@$(PY) -m pytest tests/unit

test-integration: setup
	@scripts/apt-install kcat awscli docker-compose  # tests/integration/test_clients_*.py
	@scripts/apt-install chromium chromium-driver  # tests/integration/test_console_browser.py
	@$(STACK_ENV) $(PY) -m pytest tests/integration

# The chaos soak (scripts/soak): SOAK_ARGS="--duration 2m --seed 7 --report soak.json".
soak: setup
	@$(STACK_ENV) scripts/soak $(SOAK_ARGS)

bench: setup
	@scripts/apt-install wrk libjpeg-turbo-progs chromium chromium-driver  # + console screenshots
	@$(STACK_ENV) scripts/bench

# The product's code: what mypy checks (tests and benchmarks are checked by running them).
PRODUCT := catalogue config db server compressor webhooks run_api.py run_workers.py

lint: deps
	@$(PY) -m ruff check . && $(PY) -m ruff format --check .
	@$(PY) -m mypy $(PRODUCT)
	@.venv/bin/lint-imports

stack-down:
	@$(STACK) down

clean: stack-down
	rm -rf .venv .stack data bench/.venv-pillow bench/.venv-vips bench/.venv-redis

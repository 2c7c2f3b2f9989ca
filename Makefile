# The two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
FLOOR_VENV ?= .venv-floor
AIRFLOW_SPEC ?= apache-airflow>=3.3,<3.4
AIRFLOW_FLOOR_SPEC ?= apache-airflow>=3.1,<3.2
# Airflow 3.1.8 sets an attribute on cryptography's MultiFernet, which cryptography 51 made a Rust class without
# one: any connection with an extra then fails to load ("Connection not found"). 3.3 wraps it; 3.1 needs < 51.
AIRFLOW_FLOOR_PINS ?= cryptography<51
PYTEST_ARGS ?=
# The tests that start Airflow processes (scheduler, triggerer, api-server, dag.test() runs, fresh venvs).
AIRFLOW_PROCESS_TESTS = e2e or browser or dagtest or packaging

.PHONY: suite-processes suite-rest lane-rest

.PHONY: test lint suite floor demo airflow venv clean docs dist test-distributed bench

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml sandbox/pyproject.toml cli/pyproject.toml scripts/venv.sh
	scripts/venv.sh $(VENV) '$(AIRFLOW_SPEC)'

$(FLOOR_VENV)/.installed: pyproject.toml sandbox/pyproject.toml cli/pyproject.toml scripts/venv.sh Makefile
	scripts/venv.sh $(FLOOR_VENV) '$(AIRFLOW_FLOOR_SPEC)' '$(AIRFLOW_FLOOR_PINS)'

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Newest Airflow 3.3.x: lint, types and the whole suite (unit, integration against the sandbox, dag.test, e2e,
# and the browser tests, which need Debian's chromium: scripts/chromium.sh installs it when missing).
# Two pytest processes at once, one per core of the 2-core CI machine: the tests that start Airflow processes,
# one after another (two Airflow stacks at once would starve each other), and the rest. The Airflow-process
# tests' output is printed when they end (--output-sync), the other lane's as it runs.
suite: $(VENV)/.installed
	$(VENV)/bin/python -m airflow version
	$(MAKE) -j2 --output-sync=target suite-processes suite-rest

suite-processes: $(VENV)/.installed
	scripts/chromium.sh
	$(VENV)/bin/python -m pytest --durations=15 -m "$(AIRFLOW_PROCESS_TESTS)" $(PYTEST_ARGS)

suite-rest: $(VENV)/.installed
	$(VENV)/bin/python -m pytest --durations=15 -m "not ($(AIRFLOW_PROCESS_TESTS))" $(PYTEST_ARGS)

# Floor Airflow 3.1.x: the unit and integration suites (no Airflow processes, no browser).
floor: $(FLOOR_VENV)/.installed
	$(FLOOR_VENV)/bin/python -m airflow version
	$(FLOOR_VENV)/bin/python -m pytest --durations=15 -m "not ($(AIRFLOW_PROCESS_TESTS))" $(PYTEST_ARGS)

# Two lanes side by side: the Airflow-process tests (17 min on CI), and the rest of the 3.3 suite then the floor
# suite (5 + 4 min, the floor's venv included in the wait).
test: lint
	$(VENV)/bin/python -m airflow version
	$(MAKE) -j2 --output-sync=target suite-processes lane-rest

lane-rest:
	$(MAKE) -j1 suite-rest floor

# Postgres + CeleryExecutor (Redis, two workers) + two triggerers + outputs on S3 (moto), with a worker and a
# triggerer killed mid-run. Installs Debian's postgresql and redis-server when missing, and the `distributed` extra.
test-distributed: $(VENV)/.installed
	scripts/distributed-packages.sh
	$(VENV)/bin/python -m uv pip install --quiet --python $(VENV)/bin/python -e ".[dev,distributed]" '$(AIRFLOW_SPEC)'
	$(VENV)/bin/python -m pytest tests/distributed -m distributed $(PYTEST_ARGS)

demo: $(VENV)/.installed
	$(VENV)/bin/python -m scripts.demo

# The sandbox and `airflow standalone` on 127.0.0.1, to look at the DAGs and the connection form in the UI.
airflow: $(VENV)/.installed
	$(VENV)/bin/python -m scripts.airflow_local

# The benchmarks of tests/benchmarks/ (not part of `make test`, about 40 minutes): each prints its figures next to
# a baseline measured in the same run (tests/benchmarks/README.md). BENCH_ARGS is added to both triggerer runs,
# e.g. BENCH_ARGS="--duration 10 --warmup 5" for a short one, or "--gc-freeze", or "--profile /tmp/profiles".
BENCH_ARGS ?=
bench: $(VENV)/.installed
	$(VENV)/bin/python -m uv pip install --quiet --python $(VENV)/bin/python -e ".[dev,bench]"
	$(VENV)/bin/python tests/benchmarks/triggerer_load.py --triggers 1000 --interval 1 --duration 60 \
		--modes bare-per-client,bare-aiohttp,trigger $(BENCH_ARGS)
	$(VENV)/bin/python tests/benchmarks/triggerer_load.py --triggers 20000 --interval 30 --warmup 30 --duration 90 \
		--modes bare-aiohttp,trigger $(BENCH_ARGS)
	$(VENV)/bin/python tests/benchmarks/download_memory.py
	$(VENV)/bin/python tests/benchmarks/dripped_download.py
	$(VENV)/bin/python tests/benchmarks/submission_roundtrips.py
	$(VENV)/bin/python tests/benchmarks/execution_listing.py
	$(VENV)/bin/python tests/benchmarks/cli_startup.py
	PYTHONPATH=. $(VENV)/bin/python tests/benchmarks/task_latency.py
	$(VENV)/bin/python tests/benchmarks/masker_lifecycles.py

# The documentation site in docs/_build/html; any warning (a broken link between pages, a bad docstring) fails it,
# and so does any internal link of the built site that leads nowhere (scripts/check_links.py; offline).
docs: $(VENV)/.installed
	$(VENV)/bin/python -m uv pip install --quiet --python $(VENV)/bin/python -e ".[dev,docs]"
	rm -rf docs/_build
	$(VENV)/bin/python -m sphinx -W --keep-going -q -b html docs docs/_build/html
	$(VENV)/bin/python -m scripts.check_links docs/_build/html
	@echo "docs/_build/html/index.html"

# sdist and wheel in dist/, checked by twine.
dist: $(VENV)/.installed
	$(VENV)/bin/python -m uv pip install --quiet --python $(VENV)/bin/python -e ".[dev,release]"
	rm -rf dist
	$(VENV)/bin/python -m uv build --quiet --out-dir dist .
	$(VENV)/bin/python -m twine check --strict dist/*

clean:
	rm -rf $(VENV) $(FLOOR_VENV) .airflow .pytest_cache .mypy_cache .ruff_cache docs/_build dist

# mmfd: the two commands a newcomer needs are `make demo` and `make test`.
# Both build the pinned environment in .venv/ first when it is missing or stale.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

LINT_PATHS := mmfd tools tests configs setup.py

.PHONY: env test demo lint format docs clean-env

env:
	@bash tools/setup_env.sh

test: env
	$(PY) -m pytest tests $(PYTEST_ARGS)

# Checks only (what .ci/run runs); `make format` rewrites the files instead.
lint: env
	$(VENV)/bin/flake8 $(LINT_PATHS)
	$(VENV)/bin/isort --check-only --diff $(LINT_PATHS)
	$(VENV)/bin/yapf --diff --recursive $(LINT_PATHS)

format: env
	$(VENV)/bin/isort $(LINT_PATHS)
	$(VENV)/bin/yapf --in-place --recursive $(LINT_PATHS)

demo: env
	$(PY) tools/run_demo.py $(DEMO_ARGS)

# The documentation site (docs/, Sphinx + myst-parser); -W: any warning fails the build.
docs: env
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

clean-env:
	rm -rf $(VENV)

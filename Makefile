# mmfd: the two commands a newcomer needs are `make demo` and `make test`.
# Both build the pinned environment in .venv/ first when it is missing or stale.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: env test demo clean-env

env:
	@bash tools/setup_env.sh

test: env
	$(PY) -m pytest tests $(PYTEST_ARGS)

demo: env
	$(PY) tools/run_demo.py $(DEMO_ARGS)

clean-env:
	rm -rf $(VENV)

# The two commands a newcomer needs are `make run` and `make test`; both set up
# the virtualenv first. Everything runs on 127.0.0.1 with no AWS or panel account.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test spec bench clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

chalicelib/openapi.json: openapi.yaml scripts/build_spec.py scripts/swagger2.py | $(STAMP)
	$(BIN)/python scripts/build_spec.py

spec: chalicelib/openapi.json

run: $(STAMP) spec
	$(BIN)/python -m local.run

test: $(STAMP) spec
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q -n 2 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache

# -- deploying to AWS (docs/deploy.md) ----------------------------------------------
# `make package` needs no AWS account; `make deploy` needs the AWS CLI and credentials.
STAGE ?= dev

.PHONY: package deploy

package: $(STAMP) spec
	$(BIN)/python -m infra.package --stage $(STAGE) --out build/$(STAGE)

deploy: package
	infra/deploy.sh $(STAGE) build/$(STAGE)

# -- the benchmark (bench/README.md): prints a markdown table, writes bench/results/latest.json
bench: $(STAMP) spec
	$(BIN)/python -m bench $(BENCH_ARGS)

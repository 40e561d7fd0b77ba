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
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache

# -- deploying to AWS (docs/deploy.md) ----------------------------------------------
# `make package` needs no AWS account; `make deploy` needs the AWS CLI and credentials.
STAGE ?= dev

.PHONY: package deploy deploy-check

package: $(STAMP) spec
	$(BIN)/python -m infra.package --stage $(STAGE) --out build/$(STAGE)

deploy: package
	infra/deploy.sh $(STAGE) build/$(STAGE)

# `make deploy-check` (docs/deploy.md): both stages packaged and linted, deployed by
# infra/deploy.sh into moto on 127.0.0.1, and the uploaded zip run under AWS's Lambda
# runtime client. Its tools have their own stamp, so `make test` does not wait for them.
DEPLOY_STAMP := $(VENV)/.deploy-installed
PIP := --quiet --disable-pip-version-check

$(DEPLOY_STAMP): $(STAMP) infra/requirements-deploy.txt infra/requirements-awscli.txt infra/requirements-lambda.txt
	$(BIN)/pip install $(PIP) -r infra/requirements-deploy.txt
	$(PYTHON) -m venv $(VENV)/awscli
	$(VENV)/awscli/bin/pip install $(PIP) -r infra/requirements-awscli.txt
	rm -rf $(VENV)/lambda-runtime
	$(BIN)/pip install $(PIP) --no-warn-conflicts --target $(VENV)/lambda-runtime -r infra/requirements-lambda.txt
	touch $(DEPLOY_STAMP)

deploy-check: $(DEPLOY_STAMP) spec
	$(BIN)/python -m infra.deploy_check

# -- the benchmark (bench/README.md): prints a markdown table, writes bench/results/latest.json
bench: $(STAMP) spec
	$(BIN)/python -m bench $(BENCH_ARGS)

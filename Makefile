.PHONY: install lint types test migrate check openapi
install:
	python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'
lint:
	.venv/bin/ruff check src tests alembic bench scripts && .venv/bin/ruff format --check src tests alembic bench scripts
types:
	.venv/bin/mypy src tests
test:
	.venv/bin/pytest -n 2
migrate:
	.venv/bin/payments-api migrate
openapi:
	.venv/bin/payments-api openapi > openapi.json
check:
	bash .ci/run

# Developer and CI commands; each target calls the same script CI runs.
.PHONY: setup test demo lint format schemas bench

setup:
	scripts/bootstrap.sh

test:
	scripts/test.sh

demo:
	scripts/demo.sh

lint: setup
	.venv/bin/ruff check processor tests bench
	.venv/bin/ruff format --check processor tests bench
	.venv/bin/mypy

format: setup
	.venv/bin/ruff format processor tests bench
	.venv/bin/ruff check --fix processor tests bench

schemas: setup
	.venv/bin/ncd-processor schemas schemas

bench: setup
	.venv/bin/python -m bench.report

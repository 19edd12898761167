# The two commands a newcomer needs:
#   make demo   the main job on the embedded default (no server needed)
#   make test   the full test suite, exactly as CI runs it
.PHONY: env demo test lint bench bench-all services clean

env:
	scripts/bootstrap

demo: env
	.venv/bin/mqkit demo

test:
	scripts/test

lint: env
	.venv/bin/ruff check mqkit adapters tests benchmarks
	.venv/bin/mypy --strict mqkit adapters/*/mqkit_*

bench: env
	.venv/bin/python -m benchmarks.run --peer persist-queue

# Every benchmark, on both event loops, beside the raw clients and FastStream; rewrites the
# generated section at the end of benchmarks/README.md.
bench-all: env
	scripts/services up redis kafka rabbitmq postgres
	eval "$$(scripts/services env)" && .venv/bin/python -m benchmarks.all

services:
	scripts/services up

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache

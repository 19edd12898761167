# The two commands a newcomer needs:
#   make demo   the main job on the embedded default (no server needed)
#   make test   the full test suite, exactly as CI runs it
.PHONY: env demo test lint bench clean

env:
	scripts/bootstrap

demo: env
	.venv/bin/mqkit demo

test:
	scripts/test

lint: env
	.venv/bin/ruff check mqkit tests benchmarks
	.venv/bin/mypy --strict mqkit

bench: env
	.venv/bin/python -m benchmarks.run --peer persist-queue

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache

.PHONY: run test lint bench
run:   ## the platform on the embedded default (SQLite, embedded Redis, demo data)
	./scripts/run.sh
test:  ## the whole suite (SQLite + embedded Redis locally; CI sets DATABASE_URL/REDIS_URL)
	./scripts/test.sh
lint:
	.venv/bin/ruff check . && .venv/bin/mypy .
bench:
	./scripts/bench.sh

# Carnet developer chores. Every target is one line calling scripts/, which CI calls too.
.DEFAULT_GOAL := help
.PHONY: help install run test lint fmt bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-8s %s\n", $$1, $$2}'

install: ## Create .venv with the locked dependencies (bootstraps uv into .tools/)
	@scripts/install

run: install ## Migrate the embedded SQLite database, load the demo data and serve on http://127.0.0.1:8000
	@scripts/run

test: install ## Run the whole test suite (SQLite and PostgreSQL)
	@scripts/test

lint: install ## ruff + mypy --strict
	@scripts/lint

fmt: install ## Format the code
	@.venv/bin/ruff format src tests benchmarks && .venv/bin/ruff check --fix src tests benchmarks

bench: install ## Benchmarks on PostgreSQL: deposits/s, search and retrieve latency, raw insert floor
	@scripts/bench

clean: ## Remove the virtualenvs, the local database and test artifacts
	rm -rf .venv .tools var test-artifacts .pytest_cache .mypy_cache .ruff_cache

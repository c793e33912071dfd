#!/usr/bin/env bash
# Runs every benchmark in bench/ (each prints a Markdown section; see docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh requirements-dev.txt
for script in bench/*.py; do
  [ -e "$script" ] || continue
  echo "== $script"
  .venv/bin/python scripts/with_redis.py -- .venv/bin/python "$script"
done

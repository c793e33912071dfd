#!/usr/bin/env bash
# Runs every benchmark in bench/; each writes its section to bench/results/, and
# docs/benchmarks.md is rebuilt from them.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh requirements-dev.txt
for script in bench/*.py; do
  [ -e "$script" ] || continue
  [ "$script" = bench/assemble.py ] && continue
  case "$script" in bench/_*) continue ;; esac  # shared modules, not benchmarks
  echo "== $script"
  .venv/bin/python scripts/with_redis.py -- .venv/bin/python "$script"
done
echo "== bench/face_pickup.py --burst"
.venv/bin/python scripts/with_redis.py -- .venv/bin/python bench/face_pickup.py --burst
.venv/bin/python bench/assemble.py
echo "docs/benchmarks.md rebuilt"

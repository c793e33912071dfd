#!/usr/bin/env bash
# Runs the platform on the embedded default: SQLite, an embedded Redis, the ASGI server,
# a Celery worker with beat, and demo data. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh requirements.txt
exec .venv/bin/python scripts/run.py "$@"

#!/usr/bin/env bash
# The whole test suite. Installs what is missing first. Extra arguments go to pytest.
# Uses DATABASE_URL / REDIS_URL when set (CI: PostgreSQL and Redis), otherwise SQLite and
# an embedded Redis server.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh requirements-dev.txt

# Browser tests drive Debian's Chromium; never a downloaded browser build. A CJK font
# (fonts-wqy-microhei) lets the Chinese pages' screenshots show text instead of boxes.
PACKAGES="chromium fonts-wqy-microhei"
if ! command -v chromium >/dev/null 2>&1 || ! fc-list :lang=zh 2>/dev/null | grep -q .; then
  if [ "$(id -u)" = 0 ]; then
    echo "Installing Debian's $PACKAGES for the browser tests..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $PACKAGES) >/dev/null
  elif command -v sudo >/dev/null 2>&1; then
    sudo sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $PACKAGES" >/dev/null
  else
    echo "$PACKAGES not installed: browser tests may be skipped (sudo apt-get install $PACKAGES)." >&2
  fi
fi

exec .venv/bin/python scripts/with_redis.py -- .venv/bin/python -m pytest "$@"

# Sourced by run.sh and test.sh: makes .venv and installs what is missing.
# Usage: . scripts/bootstrap.sh requirements.txt|requirements-dev.txt
set -euo pipefail
req_file="$1"
PYTHON="${PYTHON:-python3}"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "Python 3.11 or newer is needed (found: $("$PYTHON" --version 2>&1))." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv; then
    rm -rf .venv
    echo "Could not create a virtualenv. On Debian/Ubuntu: sudo apt-get install python3-venv" >&2
    exit 1
  fi
fi
stamp=".venv/.installed-$(cat "$req_file" requirements.txt requirements-nodeps.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "Installing Python packages from $req_file (first run only)..."
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r "$req_file"
  # face_recognition declares `dlib` (a long source build); dlib comes from dlib-bin instead.
  .venv/bin/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
  touch "$stamp"
fi

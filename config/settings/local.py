"""Development and the embedded demo: SQLite and a local Redis by default."""

from __future__ import annotations

from pathlib import Path

from .base import *  # noqa: F403
from .base import VAR_DIR, env
from .embedded import install_secret, owner_only_dir, owner_only_file

DEBUG = env.bool("DJANGO_DEBUG", default=True)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

# --- Platform trust: per-install secrets ------------------------------------------------------
# The embedded default keeps its SQLite file and demo secrets in var/, owner-only. Secrets not
# given in the environment are generated there once per install (config/settings/embedded.py).
owner_only_dir(VAR_DIR)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or install_secret(VAR_DIR / "secret-key")
PICKUP_CODE_KEYS = env.list("PICKUP_CODE_KEYS", default=[]) or [
    install_secret(VAR_DIR / "pickup-code-key")
]
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    _db = Path(DATABASES["default"]["NAME"])  # noqa: F405
    if _db.parent == VAR_DIR:
        owner_only_file(_db)

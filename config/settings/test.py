"""The test suite: SQLite in memory by default, PostgreSQL when DATABASE_URL says so (CI)."""

from __future__ import annotations

import os

from .base import *  # noqa: F403
from .base import env

DEBUG = False
SECRET_KEY = "test-only-secret-key-with-enough-length-and-randomness-0123456789"
PICKUP_CODE_KEYS = ["test-only-pickup-code-key-0123456789"]
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# In-process, cleared before each test (tests/conftest.py): clearing a Redis cache would
# flush the database the broker shares. core/ratelimit.py uses only add() and incr(),
# which both backends make atomic.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Tests read English texts unless they ask for a language (the Chinese default is
# config.settings.base's, checked by tests/core/test_i18n.py).
LANGUAGE_CODE = "en"
RECIPIENT_LANGUAGE_CODE = "en"
CABINET_LANGUAGE_CODE = "en"
# Unit tests run tasks in-process; the end-to-end tests switch this off and start a
# real worker on Redis.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=True)
CELERY_TASK_EAGER_PROPAGATES = True

# Processes started by the end-to-end tests (Celery worker, ASGI server) must reach the test
# database, so on SQLite it is a file, not the default in-memory database.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # One file per test run, so that runs side by side never share a database.
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")  # noqa: F405
    }
    VAR_DIR.mkdir(exist_ok=True)  # noqa: F405

# A busy test machine runs every loop late: admission by lateness would make tests refuse
# handshakes at random. Tests that need it set it (bench/fleet.py sets the production value).
CABINET_ADMISSION_MAX_LAG_S = env.float("CABINET_ADMISSION_MAX_LAG_S", default=0.0)
# Consumers run inside the pytest process too (WebsocketCommunicator): freezing it would keep
# every test's garbage cycles. Tests of the policy set it; bench/fleet.py sets production's.
CABINET_GC_FREEZE_S = env.float("CABINET_GC_FREEZE_S", default=0.0)
CABINET_GC_THAW_S = env.float("CABINET_GC_THAW_S", default=0.0)

# End-to-end tests point the processes they start (ASGI server) at their worker's queue.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")

# The fault tests restart a killed worker with a short visibility timeout: it looks for
# unacknowledged messages every second instead of every 100.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    **CELERY_BROKER_TRANSPORT_OPTIONS,  # noqa: F405
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}

# The single-frame face tests exercise matching and the answer path; the production default
# (False: use_code) is tested with an override, and the live tests pass it to their processes.
FACE_ALLOW_SINGLE_FRAME = env.bool("FACE_ALLOW_SINGLE_FRAME", default=True)

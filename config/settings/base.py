"""Settings shared by every environment. The environment is read through `env` only."""

from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parents[2]

env = environ.Env()
env.read_env(BASE_DIR / ".env", overwrite=False) if (BASE_DIR / ".env").exists() else None
# Local state of the embedded default (SQLite file, demo secrets, agent configs).
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
ALLOWED_HOSTS: list[str] = env.list("DJANGO_ALLOWED_HOSTS", default=[])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "core",
    "courier",
    "cabinets",
    "identity",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # After sessions, before common: the language comes from the i18n cookie or the browser.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite serialises writers; waiting beats failing with "database is locked"
    # when the web process and the Celery worker write at the same moment.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

TIME_ZONE = env.str("DJANGO_TIME_ZONE", default="Asia/Shanghai")
USE_I18N = True
USE_TZ = True
# LANGUAGE_CODE, LANGUAGES and the date formats: under "Languages and times" below.

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
MEDIA_ROOT = env.path("MEDIA_ROOT", default=str(VAR_DIR / "media"))

LOGIN_URL = "admin:login"

# --- Redis: Celery broker and the Channels layer -----------------------------------------
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Tasks are acknowledged after they ran: a message whose worker died unacknowledged (SIGKILL,
# OOM, power) goes back to its queue after this many seconds. It must exceed the longest
# countdown or ETA of any task (notification retries back off up to 10 minutes), or those
# would run twice. A pool child that dies is requeued at once (reject_on_worker_lost).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT_S", default=3600),
}

CHANNEL_LAYERS = {
    "default": {
        # RedisChannelLayer with a pool that waits instead of raising when all its
        # connections are busy (a reconnect storm); see cabinets/channel_layer.py.
        "BACKEND": "cabinets.channel_layer.FleetRedisChannelLayer",
        "CONFIG": {
            # redis-py 8 defaults to a 5 s socket timeout, shorter than the layer's 5 s
            # BZPOPMIN: reads time out and sockets drop (channels_redis issue 422).
            "hosts": [
                {
                    "address": REDIS_URL,
                    "socket_timeout": None,
                    "max_connections": 100,
                    "pool_timeout": 30,
                }
            ],
            # Per server process, not per socket: the default 100 drops unlock bursts.
            "capacity": 10_000,
            "expiry": 60,
        },
    },
}

# --- REST API ------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.exceptions.api_exception_handler",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Smart cabinet platform API",
    "DESCRIPTION": "Carriers announce parcels and follow them; people enroll faces.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Parcels -----------------------------------------------------------------------------------
PARCEL_PICKUP_DAYS = env.int("PARCEL_PICKUP_DAYS", default=3)
# A reminder goes out this many hours before the pickup deadline.
PARCEL_REMINDER_BEFORE_H = env.int("PARCEL_REMINDER_BEFORE_H", default=24)
# A recipient may extend the deadline once, by this many days.
PARCEL_EXTENSION_DAYS = env.int("PARCEL_EXTENSION_DAYS", default=2)
# Wrong pickup codes / unmatched faces / wrong courier PINs at one cabinet within the window
# lock that method at that cabinet for the rest of the window. The code always stays usable
# for face lockouts: a locked face never blocks the code.
CODE_LOCKOUT_ATTEMPTS = env.int("CODE_LOCKOUT_ATTEMPTS", default=5)
CODE_LOCKOUT_WINDOW_S = env.int("CODE_LOCKOUT_WINDOW_S", default=900)
FACE_LOCKOUT_ATTEMPTS = env.int("FACE_LOCKOUT_ATTEMPTS", default=5)
FACE_LOCKOUT_WINDOW_S = env.int("FACE_LOCKOUT_WINDOW_S", default=600)
COURIER_LOCKOUT_ATTEMPTS = env.int("COURIER_LOCKOUT_ATTEMPTS", default=5)
COURIER_LOCKOUT_WINDOW_S = env.int("COURIER_LOCKOUT_WINDOW_S", default=900)
# A face scan or code older than this when it reaches the platform is refused: the person
# may have left.
ACCESS_REQUEST_MAX_AGE_S = env.int("ACCESS_REQUEST_MAX_AGE_S", default=60)
# Public base URL used in notifications (enrollment and extension links) and by the demo
# commands (core/servers.py); on the embedded default it follows PORT, where run.sh serves.
PORT = env.int("PORT", default=8000)
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="") or f"http://127.0.0.1:{PORT}"

# --- Languages and times (issue 13) ----------------------------------------------------------
# Simplified Chinese first, English second: pages follow the visitor's choice (the switch on
# the enrollment page, then the browser); texts to recipients and cabinet screens, which have
# no browser, use the languages below. Translations: locale/ (compiled .mo files committed).
LANGUAGE_CODE = env.str("DJANGO_LANGUAGE_CODE", default="zh-hans")
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
RECIPIENT_LANGUAGE_CODE = env.str("RECIPIENT_LANGUAGE_CODE", default="") or LANGUAGE_CODE
CABINET_LANGUAGE_CODE = env.str("CABINET_LANGUAGE_CODE", default="") or LANGUAGE_CODE
# National numbers (no leading +) are taken to be in this country: 13800000003 is +8613800000003.
PHONE_DEFAULT_COUNTRY_CODE = env.str("PHONE_DEFAULT_COUNTRY_CODE", default="86")
# Every time the admin shows is in TIME_ZONE, in one format with its offset, whatever the
# language: config/formats/ ("2026-12-02 21:38:20 +0800"); core/timefmt.py applies it where
# Django does not, and column headers name the zone ("(UTC+08:00)").
FORMAT_MODULE_PATH = ["config.formats"]
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="parcels@cabinets.invalid")

CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "parcels-remind": {"task": "courier.tasks.parcels_remind_task", "schedule": 900.0},
    "parcels-expire": {"task": "courier.tasks.parcels_expire_task", "schedule": 300.0},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Cabinet link --------------------------------------------------------------------------
# Master key from which each cabinet's command-signing key is derived (see cabinets/keys.py).
CABINET_SIGNING_MASTER_KEY = env.str("CABINET_SIGNING_MASTER_KEY", default="")
CABINET_HEARTBEAT_INTERVAL_S = env.int("CABINET_HEARTBEAT_INTERVAL_S", default=30)
# A cabinet with no heartbeat for this long is marked offline.
CABINET_OFFLINE_AFTER_S = env.int("CABINET_OFFLINE_AFTER_S", default=90)
# Telemetry is written to the database when it changes, or at least this often.
CABINET_TELEMETRY_WRITE_INTERVAL_S = env.int("CABINET_TELEMETRY_WRITE_INTERVAL_S", default=600)
# Unlock commands are valid this long; a cabinet that reconnects later never executes them.
CABINET_UNLOCK_TTL_S = env.int("CABINET_UNLOCK_TTL_S", default=30)
CABINET_CONFIG_COMMAND_TTL_S = env.int("CABINET_CONFIG_COMMAND_TTL_S", default=3600)
# Consecutive failed opens after which a compartment is taken out of service.
CABINET_MAX_FAILED_OPENS = env.int("CABINET_MAX_FAILED_OPENS", default=3)
# The clock difference cabinets allow either side of a command's validity window, announced in
# `hello` (protocol §7); the server expires commands and refuses stale codes and faces only after
# it too. At most 300,000 (protocol.MAX_ANNOUNCED_CLOCK_SKEW_MS): a hello with
# more is invalid, and every cabinet would refuse the server.
CABINET_MAX_CLOCK_SKEW_MS = env.int("CABINET_MAX_CLOCK_SKEW_MS", default=30_000)
if not 0 <= CABINET_MAX_CLOCK_SKEW_MS <= 300_000:
    raise ImproperlyConfigured("CABINET_MAX_CLOCK_SKEW_MS must be between 0 and 300000")

CELERY_BEAT_SCHEDULE["cabinets-liveness"] = {
    "task": "cabinets.tasks.cabinets_liveness_sync_task",
    "schedule": 15.0,
}
CELERY_BEAT_SCHEDULE["cabinets-expire-commands"] = {
    "task": "cabinets.tasks.commands_expire_task",
    "schedule": 10.0,
}

# --- Identity and faces ----------------------------------------------------------------------
# Matching policy: the defaults are identity.matching's (a test keeps them equal); see
# docs/face-calibration.md before changing them.
FACE_MATCH_THRESHOLD = env.float("FACE_MATCH_THRESHOLD", default=0.44)
FACE_MATCH_MARGIN = env.float("FACE_MATCH_MARGIN", default=0.08)
FACE_VERIFY_THRESHOLD = env.float("FACE_VERIFY_THRESHOLD", default=0.40)
# Fernet keys for face templates, newest first: the first encrypts, all decrypt. Required in
# production; elsewhere a key is derived from SECRET_KEY when empty.
FACE_TEMPLATE_KEYS: list[str] = env.list("FACE_TEMPLATE_KEYS", default=[])
# Seconds a raw enrollment photo is kept after processing; 0 deletes it at once.
FACE_PHOTO_RETENTION_S = env.int("FACE_PHOTO_RETENTION_S", default=0)
FACE_PHOTO_MAX_BYTES = env.int("FACE_PHOTO_MAX_BYTES", default=10 * 1024 * 1024)
FACE_PHOTO_MAX_PIXELS = env.int("FACE_PHOTO_MAX_PIXELS", default=40_000_000)
# Photos one enrollment may receive in all, refused ones included.
FACE_PHOTOS_PER_ENROLLMENT = env.int("FACE_PHOTOS_PER_ENROLLMENT", default=12)
# Key of the HMAC under which resident ID numbers are stored. Required in production.
ID_NUMBER_HASH_KEY = env.str("ID_NUMBER_HASH_KEY", default="")
BIOMETRIC_POLICY_VERSION = env.str("BIOMETRIC_POLICY_VERSION", default="2026-1")
ENROLLMENT_LINK_MAX_AGE_S = env.int("ENROLLMENT_LINK_MAX_AGE_S", default=7 * 24 * 3600)
# The enrollment page's login lasts this long.
ENROLLMENT_SESSION_AGE_S = env.int("ENROLLMENT_SESSION_AGE_S", default=3600)
OTP_TTL_S = env.int("OTP_TTL_S", default=300)
OTP_MAX_ATTEMPTS = env.int("OTP_MAX_ATTEMPTS", default=5)
OTP_MAX_SENDS_PER_HOUR = env.int("OTP_MAX_SENDS_PER_HOUR", default=5)
# Dotted path of the SMS backend class (identity/notify.py).
SMS_BACKEND = env.str("SMS_BACKEND", default="identity.notify.ConsoleSmsBackend")

CELERY_BEAT_SCHEDULE["identity-purge-photos"] = {
    "task": "identity.tasks.enrollment_photos_purge_task",
    "schedule": 600.0,
}

# --- Cabinet link (fleet) --------------------------------------------------------------------
# A pushed command with no receipt after this many seconds is sent again on the same
# connection, until it expires (protocol §9).
CABINET_RECEIPT_TIMEOUT_S = env.float("CABINET_RECEIPT_TIMEOUT_S", default=5.0)
# The ASGI process freezes its start-up objects out of the garbage collector (config/asgi.py).
CABINET_ASGI_GC_FREEZE = env.bool("CABINET_ASGI_GC_FREEZE", default=True)

# --- Fleet admin -----------------------------------------------------------------------------
# Dashboard alerts: a cabinet offline (and not in maintenance) this long, a door open this long,
# a ready parcel whose pickup deadline is this close.
FLEET_ALERT_OFFLINE_AFTER_S = env.int("FLEET_ALERT_OFFLINE_AFTER_S", default=900)
FLEET_ALERT_DOOR_OPEN_AFTER_S = env.int("FLEET_ALERT_DOOR_OPEN_AFTER_S", default=300)
FLEET_ALERT_PARCEL_EXPIRY_WITHIN_S = env.int("FLEET_ALERT_PARCEL_EXPIRY_WITHIN_S", default=43_200)
# Map tiles, e.g. "https://tile.openstreetmap.org/{z}/{x}/{y}.png"; empty: markers only.
FLEET_MAP_TILE_URL = env.str("FLEET_MAP_TILE_URL", default="")
FLEET_MAP_TILE_ATTRIBUTION = env.str("FLEET_MAP_TILE_ATTRIBUTION", default="")
# Rollouts: how often beat advances them, and how many commands one tick issues per rollout.
ROLLOUT_TICK_S = env.float("ROLLOUT_TICK_S", default=10.0)
ROLLOUT_SEND_BATCH = env.int("ROLLOUT_SEND_BATCH", default=500)
# Cabinets with this tag go first, so the first wave lands on the pilots.
ROLLOUT_PILOT_TAG = env.str("ROLLOUT_PILOT_TAG", default="pilot")
CABINET_IMPORT_MAX_ROWS = env.int("CABINET_IMPORT_MAX_ROWS", default=20_000)

CELERY_BEAT_SCHEDULE["cabinets-rollouts-advance"] = {
    "task": "cabinets.rollouts.tasks.rollouts_advance_task",
    "schedule": ROLLOUT_TICK_S,
}

"""Settings shared by every environment. The environment is read through `env` only."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parents[2]


def _tile_hosts(url_template: str) -> list[str]:
    """The origin of a map tile URL template such as https://{s}.tile.example/{z}/{x}/{y}.png
    (a `{s}` subdomain becomes a wildcard)."""
    scheme, _, rest = url_template.partition("://")
    host = rest.split("/", 1)[0].replace("{s}", "*")
    return [f"{scheme}://{host}"] if scheme and host else []


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
    "drf_spectacular_sidecar",
    "csp",
    "channels",
    # Staff security (before core: core/admin.py wraps their admins): docs/security-admin.md.
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "core",
    "courier",
    "cabinets",
    "identity",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Permissions-Policy and no-store (core/middleware.py); the CSP header (django-csp).
    # Outside ApiResponseMiddleware, so that the JSON errors it makes get them too.
    "core.middleware.SecurityHeadersMiddleware",
    "csp.middleware.CSPMiddleware",
    # Under /api/: the JSON error shape for errors from outside DRF.
    "core.middleware.ApiResponseMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # After sessions, before common: the language comes from the i18n cookie or the browser.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "core.middleware.StaffSessionAgeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: turns a lockout into its 429 page.
    "axes.middleware.AxesMiddleware",
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

# --- Staff security (admin): docs/security-admin.md ------------------------------------------
AUTHENTICATION_BACKENDS = [
    # Refuses a locked-out login before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Five wrong passwords lock that client address (password spraying) and, separately, that
# username (guessing from many addresses) for AXES_COOLOFF_TIME; a lockout answers 429.
AXES_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(seconds=env.int("ADMIN_LOGIN_COOLOFF_S", default=900))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_RESET_ON_SUCCESS = True
# Attempts during a lockout do not push its end back.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# A staff user's session ends this long after it started, whatever SESSION_COOKIE_AGE says.
STAFF_SESSION_AGE_S = env.int("STAFF_SESSION_AGE_S", default=8 * 3600)
# Members of this group are platform staff (see every carrier); see core/staff.py.
ADMIN_PLATFORM_STAFF_GROUP = env.str("ADMIN_PLATFORM_STAFF_GROUP", default="Platform staff")
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="Smart cabinets admin")
# The TOTP key is never shown on an existing device's admin page.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

# --- Platform trust: keys -------------------------------------------------------------------
# Keys of the pickup-code HMAC, newest first: the first signs new codes, all verify, so a
# rotation keeps outstanding codes valid until the old key is dropped. Not SECRET_KEY. Required
# in production; the embedded default generates one into var/.
PICKUP_CODE_KEYS: list[str] = env.list("PICKUP_CODE_KEYS", default=[])

# --- Platform trust: security headers -------------------------------------------------------
# One CSP for every page: scripts and styles from this origin or carrying the response's nonce
# (`nonce="{{ request.csp_nonce }}"` on the few inline blocks), nothing from other hosts, no
# plugins, no framing. Style attributes (style="...") are allowed: they cannot run code.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "style-src-attr": [UNSAFE_INLINE],
        # data: and blob: for icons, the selfie preview and map markers; the tile host if set.
        "img-src": [
            SELF,
            "data:",
            "blob:",
            *_tile_hosts(env.str("FLEET_MAP_TILE_URL", default="")),
        ],
        "media-src": [SELF, "blob:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "worker-src": [SELF, "blob:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
# Views that may use the camera (Permissions-Policy camera=(self)); every other page: camera=().
PERMISSIONS_POLICY_CAMERA_VIEWS: list[str] = ["identity:enroll"]
# Responses under these paths carry tokens, codes or people's data: Cache-Control: no-store.
NO_STORE_PATH_PREFIXES: list[str] = ["/api/", "/enroll/", "/parcels/extend/"]

# --- Redis: Celery broker and the Channels layer -----------------------------------------
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
# The cache holds throttle counters (core/ratelimit.py), shared by every process.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env.str("CACHE_URL", default=REDIS_URL),
        "KEY_PREFIX": "cab",
    }
}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A worker process that grew past this (KiB) is replaced after its task: one huge photo
# must not keep a process at gigabytes. Photos are bounded too (FACE_PHOTO_MAX_PIXELS).
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env.int(
    "CELERY_WORKER_MAX_MEMORY_PER_CHILD_KB", default=600_000
)
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

# The channel layer is what the ASGI processes share; when one Redis is not enough, list
# several: channels_redis spreads channels and groups over them by consistent hashing, so every
# process (web and worker) must list the same URLs in the same order.
CHANNEL_LAYER_REDIS_URLS: list[str] = env.list("CHANNEL_LAYER_REDIS_URLS", default=[REDIS_URL])
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
                    "address": address,
                    "socket_timeout": None,
                    "max_connections": 100,
                    "pool_timeout": 30,
                }
                for address in CHANNEL_LAYER_REDIS_URLS
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
    "DEFAULT_PAGINATION_CLASS": "core.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    # JSON bodies are bounded in size and nesting before parsing (core/parsers.py).
    "DEFAULT_PARSER_CLASSES": [
        "core.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Smart cabinet platform API",
    "DESCRIPTION": "Carriers announce parcels and follow them; people enroll faces.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Request bodies get their own components: required strings say minLength 1, uploads binary.
    "COMPONENT_SPLIT_REQUEST": True,
    # Every operation documents the error answers it can give, and its audience (core/schema.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.schema.errors_and_tags_hook",
    ],
    # /api/docs/ and /api/redoc/ from the project's static files (drf-spectacular-sidecar):
    # no CDN, so the reference works offline and inside networks that cannot reach one.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Parcels -----------------------------------------------------------------------------------
PARCEL_PICKUP_DAYS = env.int("PARCEL_PICKUP_DAYS", default=3)
# A reminder goes out this many hours before the pickup deadline.
PARCEL_REMINDER_BEFORE_H = env.int("PARCEL_REMINDER_BEFORE_H", default=24)
# A recipient may extend the deadline once, by this many days.
PARCEL_EXTENSION_DAYS = env.int("PARCEL_EXTENSION_DAYS", default=2)
# Wrong pickup codes / unmatched faces at one cabinet, and wrong PINs for one badge, within the
# window pause that method (see the backoff below). The code always stays usable for face
# lockouts: a locked face never blocks the code.
CODE_LOCKOUT_ATTEMPTS = env.int("CODE_LOCKOUT_ATTEMPTS", default=5)
CODE_LOCKOUT_WINDOW_S = env.int("CODE_LOCKOUT_WINDOW_S", default=900)
FACE_LOCKOUT_ATTEMPTS = env.int("FACE_LOCKOUT_ATTEMPTS", default=5)
FACE_LOCKOUT_WINDOW_S = env.int("FACE_LOCKOUT_WINDOW_S", default=600)
COURIER_LOCKOUT_ATTEMPTS = env.int("COURIER_LOCKOUT_ATTEMPTS", default=5)
COURIER_LOCKOUT_WINDOW_S = env.int("COURIER_LOCKOUT_WINDOW_S", default=900)
# --- Platform trust: lockouts ---
# Past the allowed failures, a lockout is a pause that starts at this many seconds and doubles
# with every further failure, up to the method's window; refusals during a pause do not count.
# Courier PINs lock per badge; this many failures at one cabinet, over all badges, pause every
# badge there (a guesser trying many badges).
ACCESS_LOCKOUT_BACKOFF_S = env.int("ACCESS_LOCKOUT_BACKOFF_S", default=30)
COURIER_LOCKOUT_CABINET_ATTEMPTS = env.int("COURIER_LOCKOUT_CABINET_ATTEMPTS", default=25)
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
# The liveness task rewrites a live cabinet's last_seen_at only when the stored one is this
# much older (seconds; 0: every tick): at 10,000 cabinets, 167 rows a second instead of 667.
CABINET_LAST_SEEN_WRITE_S = env.int("CABINET_LAST_SEEN_WRITE_S", default=60)
# Telemetry is written to the database when it changes, or at least this often.
CABINET_TELEMETRY_WRITE_INTERVAL_S = env.int("CABINET_TELEMETRY_WRITE_INTERVAL_S", default=600)
# Unlock commands are valid this long; a cabinet that reconnects later never executes them.
CABINET_UNLOCK_TTL_S = env.int("CABINET_UNLOCK_TTL_S", default=30)
CABINET_CONFIG_COMMAND_TTL_S = env.int("CABINET_CONFIG_COMMAND_TTL_S", default=3600)
# Credential rotation: the replaced credential stays valid at most this long (24 h) unless
# the cabinet connects with its new one first (docs/cabinet-protocol.md §17).
CABINET_CREDENTIAL_OVERLAP_S = env.int("CABINET_CREDENTIAL_OVERLAP_S", default=86400)
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
CELERY_BEAT_SCHEDULE["cabinets-expire-credential-overlaps"] = {
    "task": "cabinets.tasks.cabinet_credentials_overlap_expire_task",
    "schedule": 60.0,
}

# --- Identity and faces ----------------------------------------------------------------------
# Matching policy: the defaults are identity.matching's (a test keeps them equal); see
# docs/face-calibration.md before changing them.
FACE_MATCH_THRESHOLD = env.float("FACE_MATCH_THRESHOLD", default=0.42)
FACE_MATCH_MARGIN = env.float("FACE_MATCH_MARGIN", default=0.08)
FACE_VERIFY_THRESHOLD = env.float("FACE_VERIFY_THRESHOLD", default=0.38)
# --- Faces at the door and enrollment quality (issue 11): door policy, encoder jitters,
# photos asked for and their spread.
# Door policy (identity/door_policy.py; defaults there, a test keeps them equal): open on the
# face alone, ask for the last four phone digits ("confirm"), or refuse. Mode always_confirm,
# grey_zone or never; thresholds are for one waiting recipient and drop by
# FACE_DOOR_TIGHTEN_PER_DOUBLING per doubling of the waiting count. Measured on lfw-dev: see
# docs/face-calibration.md before changing them.
FACE_DOOR_POLICY_MODE = env.str("FACE_DOOR_POLICY_MODE", default="grey_zone")
FACE_DOOR_OPEN_THRESHOLD = env.float("FACE_DOOR_OPEN_THRESHOLD", default=0.30)
FACE_DOOR_OPEN_MARGIN = env.float("FACE_DOOR_OPEN_MARGIN", default=0.06)
FACE_DOOR_CONFIRM_THRESHOLD = env.float("FACE_DOOR_CONFIRM_THRESHOLD", default=0.38)
FACE_DOOR_CONFIRM_MARGIN = env.float("FACE_DOOR_CONFIRM_MARGIN", default=0.0)
FACE_DOOR_TIGHTEN_PER_DOUBLING = env.float("FACE_DOOR_TIGHTEN_PER_DOUBLING", default=0.0)
# Encodings of stills (enrollment selfies, single-frame scans, ID portraits, face_eval)
# averaged over this many jittered copies of the face (dlib's num_jitters): 10 costs ~7x the
# encoding time and tightens same-person distances (median 0.355 -> 0.318 on lfw-dev); the
# door thresholds above were measured with 10 and hold only with it. Burst frames are
# encoded once each (identity.services.liveness_encoder): their median is the averaging.
# Templates made with another value must be re-enrolled. See docs/face-calibration.md.
FACE_ENCODER_JITTERS = env.int("FACE_ENCODER_JITTERS", default=10)
# Enrollment asks for this many selfies (1 to 3, the templates kept per person) and says why;
# a new photo within FACE_TEMPLATE_MIN_SPREAD of one the person already has is refused
# (`too_similar`): frames of one moment measured 0.06-0.30 apart, independent photos of one
# person at least 0.198 (docs/face-calibration.md).
FACE_ENROLLMENT_PHOTOS = env.int("FACE_ENROLLMENT_PHOTOS", default=3)
FACE_TEMPLATE_MIN_SPREAD = env.float("FACE_TEMPLATE_MIN_SPREAD", default=0.18)
# Liveness by challenge (protocol 1.2, docs/identity.md). A single-frame face_scan (a cabinet
# on protocol 1.0/1.1) is answered use_code unless this allows it: one still picture cannot
# tell a person from a printed photo.
FACE_ALLOW_SINGLE_FRAME = env.bool("FACE_ALLOW_SINGLE_FRAME", default=False)
# The actions a challenge draws one or two of, at random (a deployment whose cameras are too
# low for turns may keep only "blink").
FACE_CHALLENGE_ACTIONS: list[str] = env.list(
    "FACE_CHALLENGE_ACTIONS", default=["blink", "turn_left", "turn_right"]
)
FACE_CHALLENGE_MAX_ACTIONS = env.int("FACE_CHALLENGE_MAX_ACTIONS", default=2)
# Seconds a challenge may be answered in (the person reads it, moves, the burst is sent).
FACE_CHALLENGE_TTL_S = env.int("FACE_CHALLENGE_TTL_S", default=30)
# Seconds the person has to type the last four digits of their phone after "confirm".
FACE_CONFIRM_TTL_S = env.int("FACE_CONFIRM_TTL_S", default=60)
# Days the hashes of burst frames (a frame is never accepted twice) and spent challenges are
# kept; purged hourly by courier.tasks.face_challenges_purge_task.
FACE_BURST_MEMORY_DAYS = env.int("FACE_BURST_MEMORY_DAYS", default=30)
CELERY_BEAT_SCHEDULE["face-challenges-purge"] = {
    "task": "courier.tasks.face_challenges_purge_task",
    "schedule": 3600.0,
}
# Fernet keys for face templates, newest first: the first encrypts, all decrypt. Required in
# production; elsewhere a key is derived from SECRET_KEY when empty.
FACE_TEMPLATE_KEYS: list[str] = env.list("FACE_TEMPLATE_KEYS", default=[])
# Seconds a raw enrollment photo is kept after processing; 0 deletes it at once.
FACE_PHOTO_RETENTION_S = env.int("FACE_PHOTO_RETENTION_S", default=0)
FACE_PHOTO_MAX_BYTES = env.int("FACE_PHOTO_MAX_BYTES", default=10 * 1024 * 1024)
# Refused from the header, before any pixel is decoded (also Pillow's MAX_IMAGE_PIXELS).
FACE_PHOTO_MAX_PIXELS = env.int("FACE_PHOTO_MAX_PIXELS", default=12_000_000)
# JPEGs are decoded reduced (libjpeg's DCT scaling) to about this long side.
FACE_DECODE_MAX_SIDE = env.int("FACE_DECODE_MAX_SIDE", default=1600)
# Photos one enrollment may receive in all, refused ones included.
FACE_PHOTOS_PER_ENROLLMENT = env.int("FACE_PHOTOS_PER_ENROLLMENT", default=12)
# Photos one person may send in 24 hours, counted on receipts that deleting face data keeps.
FACE_PHOTOS_PER_DAY = env.int("FACE_PHOTOS_PER_DAY", default=20)
# Key of the HMAC under which resident ID numbers are stored. Required in production.
ID_NUMBER_HASH_KEY = env.str("ID_NUMBER_HASH_KEY", default="")
BIOMETRIC_POLICY_VERSION = env.str("BIOMETRIC_POLICY_VERSION", default="2026-1")
# Enrollment links are single use; redeeming one texts a login code to the phone.
ENROLLMENT_LINK_MAX_AGE_S = env.int("ENROLLMENT_LINK_MAX_AGE_S", default=24 * 3600)
# The API token a phone login returns.
ENROLLMENT_API_TOKEN_TTL_S = env.int("ENROLLMENT_API_TOKEN_TTL_S", default=3600)
# The enrollment page's login lasts this long.
ENROLLMENT_SESSION_AGE_S = env.int("ENROLLMENT_SESSION_AGE_S", default=3600)
OTP_TTL_S = env.int("OTP_TTL_S", default=300)
OTP_MAX_ATTEMPTS = env.int("OTP_MAX_ATTEMPTS", default=5)
OTP_MAX_SENDS_PER_HOUR = env.int("OTP_MAX_SENDS_PER_HOUR", default=5)
# Phone login throttles per hour (core/ratelimit.py, in the cache): per client address, per
# number (known or not) and for the whole platform; "send" texts a code, "verify" is a guess.
OTP_THROTTLE: dict[str, dict[str, int]] = {
    "send": {
        "address": env.int("OTP_SENDS_PER_ADDRESS_PER_HOUR", default=20),
        "phone": OTP_MAX_SENDS_PER_HOUR,
        "global": env.int("OTP_SENDS_GLOBAL_PER_HOUR", default=1000),
    },
    "verify": {
        "address": env.int("OTP_GUESSES_PER_ADDRESS_PER_HOUR", default=30),
        "phone": env.int("OTP_GUESSES_PER_PHONE_PER_HOUR", default=10),
        "global": env.int("OTP_GUESSES_GLOBAL_PER_HOUR", default=5000),
    },
}
# Dotted path of the SMS backend class (identity/notify.py).
SMS_BACKEND = env.str("SMS_BACKEND", default="identity.notify.ConsoleSmsBackend")

CELERY_BEAT_SCHEDULE["identity-purge-photos"] = {
    "task": "identity.tasks.enrollment_photos_purge_task",
    "schedule": 600.0,
}
CELERY_BEAT_SCHEDULE["identity-purge-tokens"] = {
    "task": "identity.tasks.access_tokens_purge_task",
    "schedule": 24 * 3600.0,
}

# --- Cabinet link (fleet) --------------------------------------------------------------------
# A pushed command with no receipt after this many seconds is sent again on the same
# connection, until it expires (protocol §9).
CABINET_RECEIPT_TIMEOUT_S = env.float("CABINET_RECEIPT_TIMEOUT_S", default=5.0)
# The ASGI process freezes its start-up objects out of the garbage collector
# (cabinets/gc_policy.py) ...
CABINET_ASGI_GC_FREEZE = env.bool("CABINET_ASGI_GC_FREEZE", default=True)
# ... and then, every this many seconds, what has lived since (cabinets/gc_policy.py: a full
# collection walked every socket's objects, up to 1.3 s with 5,000 sockets); 0: never.
CABINET_GC_FREEZE_S = env.float("CABINET_GC_FREEZE_S", default=5.0)
# Every this many seconds the process unfreezes, collects the garbage cycles among frozen
# objects in one full collection, and freezes again; 0: never.
CABINET_GC_THAW_S = env.float("CABINET_GC_THAW_S", default=3600.0)
# Admission control (cabinets/admission.py, protocol §11): handshakes one ASGI process runs at
# a time; more are refused at once with HTTP 503 and a Retry-After hint between these bounds.
CABINET_HANDSHAKE_MAX_IN_FLIGHT = env.int("CABINET_HANDSHAKE_MAX_IN_FLIGHT", default=64)
CABINET_ADMISSION_RETRY_S = env.int("CABINET_ADMISSION_RETRY_S", default=2)
CABINET_ADMISSION_RETRY_MAX_S = env.int("CABINET_ADMISSION_RETRY_MAX_S", default=30)
# ... and none while the process's event loop runs later than this (seconds; 0: not checked).
CABINET_ADMISSION_MAX_LAG_S = env.float("CABINET_ADMISSION_MAX_LAG_S", default=0.25)
if not 1 <= CABINET_ADMISSION_RETRY_S <= CABINET_ADMISSION_RETRY_MAX_S:
    raise ImproperlyConfigured(
        "CABINET_ADMISSION_RETRY_S must be at least 1 and at most CABINET_ADMISSION_RETRY_MAX_S"
    )

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

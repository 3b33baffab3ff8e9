"""Settings: everything comes from the environment (django-environ), documented in .env.example.

Development defaults are safe; production secrets have no default, so a production boot without
them stops here.
"""

from pathlib import Path

import environ

from .schedules import PERIODIC_TASKS  # noqa: F401  (read by setup_periodic_tasks)

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=False)

if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-secret-key")  # noqa: S105
else:
    SECRET_KEY = env.str("SECRET_KEY")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "agency",
    "clients",
    "consent",
    "segments",
    "audiences",
    "campaigns",
    "portal",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "agency.middleware.ApiErrorMiddleware",
    "agency.middleware.ApiBodyLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"

# The tenant: every client's data carries a key to it (agency.tenancy looks it up by this name).
TENANT_MODEL = "clients.Client"

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

WSGI_APPLICATION = "config.wsgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}"),
}
DATABASES["default"].setdefault("ATOMIC_REQUESTS", False)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default runs a web server, a worker and beat on one file. Transactions take
    # the write lock when they begin (IMMEDIATE), so a second writer waits up to the timeout;
    # a deferred transaction that reads and then writes fails at once with "database is locked"
    # (two demo audience syncs on the worker's two threads did).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# 152-FZ art. 18 part 5: the country where the personal-data database is located.
PD_DATABASE_COUNTRY = env.str("PD_DATABASE_COUNTRY", default="RU")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = env.str("LANGUAGE_CODE", default="ru")
LANGUAGES = [("ru", "Русский"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="Europe/Moscow")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(BASE_DIR / "var" / "media")))

# Absolute links in emails (unsubscribe) and for the cookie banner's endpoint.
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")

# Fernet keys that encrypt ad-platform credentials at rest, newest first. Rotation: put a new key
# first, run `manage.py rotate_credentials_key`, then remove the old key. Development derives a
# key from SECRET_KEY; production must set its own (no default: a missing key stops the boot).
if DEBUG:
    import base64 as _b64
    import hashlib as _hashlib

    _dev_key = _b64.urlsafe_b64encode(_hashlib.sha256(SECRET_KEY.encode()).digest()).decode()
    CREDENTIALS_KEYS = env.list("CREDENTIALS_KEYS", default=[_dev_key])
else:
    CREDENTIALS_KEYS = env.list("CREDENTIALS_KEYS")

# Ad-platform HTTP clients: seconds per request, attempts on 429/5xx/timeouts (with backoff),
# and the longest backoff pause.
AD_PLATFORM_TIMEOUT = env.float("AD_PLATFORM_TIMEOUT", default=120.0)
AD_PLATFORM_MAX_ATTEMPTS = env.int("AD_PLATFORM_MAX_ATTEMPTS", default=6)
AD_PLATFORM_MAX_BACKOFF = env.float("AD_PLATFORM_MAX_BACKOFF", default=30.0)

# Provider base URLs (integrations/<provider>): deployment configuration, never tenant data.
# Empty means the provider's official host; tests and `make run` point them at loopback stubs.
YANDEX_AUDIENCES_BASE_URL = env.str("YANDEX_AUDIENCES_BASE_URL", default="")
VK_ADS_BASE_URL = env.str("VK_ADS_BASE_URL", default="")
MYTARGET_BASE_URL = env.str("MYTARGET_BASE_URL", default="")

# The demo's destinations (seed_demo) point at the loopback stubs that `make run` starts.
DEMO_AD_PLATFORM_URLS = {
    "yandex_audiences": env.str(
        "DEMO_YANDEX_AUDIENCES_URL", default="http://127.0.0.1:8701/v1/management/"
    ),
    "vk_ads": env.str("DEMO_VK_ADS_URL", default="http://127.0.0.1:8702/api/"),
    "mytarget": env.str("DEMO_MYTARGET_URL", default="http://127.0.0.1:8703/api/"),
}

LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:home"

# Bodies above this answer 413 with a JSON error (bulk endpoints take up to 10,000 records).
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=10 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
BULK_MAX_RECORDS = 10_000
# Cookie-banner choices accepted per visitor IP and site (mobile carriers put many behind one IP).
CONSENT_BANNER_RATE = env.str("CONSENT_BANNER_RATE", default="60/minute")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "clients.auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["clients.auth.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_key": env.str("API_THROTTLE_RATE", default="600/minute")},
    "DEFAULT_PAGINATION_CLASS": "agency.api.UpdatedCursorPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "agency.api.json_exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Agency CVM API",
    "DESCRIPTION": (
        "Customer base ingestion (customers, orders, events), CRM webhooks. "
        "Authenticate with `Authorization: Api-Key <key>`; one key reaches exactly one client."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "OrderStatusEnum": "clients.models.Order.Status",
        "ScoringRunStatusEnum": "segments.models.ScoringRun.Status",
    },
}

CACHES = {
    "default": env.cache("CACHE_URL", default="locmemcache://"),
}

# Celery: Redis in production and tests, the filesystem broker for the embedded first run.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_FS_BROKER_DIR = Path(
    env.str("CELERY_FS_BROKER_DIR", default=str(BASE_DIR / "var" / "celery-broker"))
)
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _folder in ("queue", "processed", "control"):
        (CELERY_FS_BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_FS_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_FS_BROKER_DIR / "queue"),
        "processed_folder": str(CELERY_FS_BROKER_DIR / "processed"),
        "store_processed": False,
        # Broadcast (control) messages too, instead of a "control" folder in the working dir.
        "control_folder": str(CELERY_FS_BROKER_DIR / "control"),
    }
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=60 * 60)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=65 * 60)
# Background jobs (agency.jobs): a running job stamps its heartbeat every JOB_HEARTBEAT_SECONDS;
# one silent for JOB_STALE_SECONDS lost its worker and the recovery beat (every minute) sends it
# to another worker: a killed worker's job runs again within STALE + 60 s. SQLite (the embedded
# first run) has one writer, and a long import's transaction holds the heartbeat off: 10 minutes.
JOB_HEARTBEAT_SECONDS = env.float("JOB_HEARTBEAT_SECONDS", default=10.0)
JOB_STALE_SECONDS = env.float(
    "JOB_STALE_SECONDS",
    default=600.0 if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" else 120.0,
)
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="smtp://localhost:25")
vars().update(EMAIL_CONFIG)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # httpx logs every request at INFO; the SyncRun log keeps what matters (steps, request ids).
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}

if not DEBUG:
    SESSION_COOKIE_HTTPONLY = True
    X_FRAME_OPTIONS = "DENY"

"""Settings: everything comes from the environment (django-environ), documented in .env.example.

Development defaults are safe; production secrets have no default, so a production boot without
them stops here.
"""

import ipaddress as _ipaddress
from datetime import timedelta
from pathlib import Path

import csp.constants as _csp
import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

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
    "axes",
    "agency",
    "clients",
    "consent",
    "segments",
    "audiences",
    "campaigns",
    "reports",
    "portal",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "agency.middleware.ApiErrorMiddleware",
    "agency.middleware.ApiBodyLimitMiddleware",
    "agency.middleware.QueryTextMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# Login lockout (django-axes) on every sign-in form (admin, portal): after LOGIN_FAILURE_LIMIT
# failures within LOGIN_LOCKOUT_MINUTES a username is locked, whatever the address, and an
# address is locked, whatever the username, until the failures are that old or an agency admin
# unlocks them (admin: "Попытки доступа", action "Разблокировать вход"). Failures are kept in
# the database.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=30))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "agency.audit.request_ip"
AXES_LOCKOUT_CALLABLE = "agency.views.login_locked_out"
AXES_ENABLE_ADMIN = False  # agency.admin registers the attempts with role permissions
AXES_VERBOSE = False  # no banner on every start; lockouts are still logged (as warnings)

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
                "agency.context_processors.brand",
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
# Source strings are Russian in Python code and English in templates: locale/en translates the
# first, locale/ru the second (README, "Languages").
LOCALE_PATHS = [BASE_DIR / "locale"]
# The product's one name: the admin's header, the portal's, the API schema's title.
BRAND_NAME = _("Агентство CVM")
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

# The consent ledger's checkpoints (consent.checkpoints) are signed with HMAC-SHA256 under this
# key, kept in the environment and never in the database. Empty: derived from SECRET_KEY. Old
# keys stay in the fallbacks after a rotation, so earlier checkpoints still verify.
LEDGER_SIGNING_KEY = env.str("LEDGER_SIGNING_KEY", default="")
LEDGER_SIGNING_KEY_FALLBACKS = env.list("LEDGER_SIGNING_KEY_FALLBACKS", default=[])

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
YANDEX_DIRECT_BASE_URL = env.str("YANDEX_DIRECT_BASE_URL", default="")
# Owned channels (integrations/unisender, sendsay, smsru, smsc, rustore): the same rule.
UNISENDER_BASE_URL = env.str("UNISENDER_BASE_URL", default="")
SENDSAY_BASE_URL = env.str("SENDSAY_BASE_URL", default="")
SMSRU_BASE_URL = env.str("SMSRU_BASE_URL", default="")
SMSC_BASE_URL = env.str("SMSC_BASE_URL", default="")
RUSTORE_BASE_URL = env.str("RUSTORE_BASE_URL", default="")
# Spend, calls and value sent back (reports): empty = the official host.
ROISTAT_BASE_URL = env.str("ROISTAT_BASE_URL", default="")
CALLTOUCH_BASE_URL = env.str("CALLTOUCH_BASE_URL", default="")
YANDEX_METRICA_BASE_URL = env.str("YANDEX_METRICA_BASE_URL", default="")
# A web push endpoint comes from a browser's subscription (client data), so it must be https
# and public; True lets it be a loopback or private address (tests and `make run` only).
WEBPUSH_ALLOW_PRIVATE_ENDPOINTS = env.bool("WEBPUSH_ALLOW_PRIVATE_ENDPOINTS", default=False)
# Bitrix24 REST calls go to the client's own cloud portal (<portal>.bitrix24.ru, checked against
# the Bitrix24 domains); set this only to send them to a proxy or a stub instead.
BITRIX24_BASE_URL = env.str("BITRIX24_BASE_URL", default="")

LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:home"

# Wrong API keys accepted per client address and minute; more answer 429 with Retry-After
# (clients.auth; counted in the cache, which production shares between processes: CACHE_URL).
API_KEY_FAILURE_LIMIT = env.int("API_KEY_FAILURE_LIMIT", default=20)

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
    # NUL, lone surrogates, nesting too deep: refused with the JSON path (agency.parsers).
    "DEFAULT_PARSER_CLASSES": [
        "agency.parsers.JSONParser",
        "agency.parsers.FormParser",
        "agency.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}

SPECTACULAR_SETTINGS = {
    # In the request's language (Accept-Language) or ?lang=en|ru.
    "TITLE": format_lazy(_("API «{brand}»"), brand=BRAND_NAME),
    "DESCRIPTION": _(
        "Загрузка клиентской базы (покупатели, заказы, события), согласия, сегменты, аудитории, "
        "вебхуки CRM. Авторизация: заголовок `Authorization: Api-Key <ключ>`; один ключ даёт "
        'доступ к данным ровно одного клиента. Ошибки — JSON `{"code", "message"}`; '
        "язык сообщений — по заголовку Accept-Language (ru по умолчанию, en)."
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
        "TriggerChainStatusEnum": "campaigns.models.TriggerChain.Status",
        "TriggerChainKindEnum": "campaigns.models.TriggerChain.Kind",
        "SpendDaySourceEnum": "reports.models.SpendDay.Source",
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

# The SMTP relay of every email (integrations/smtp_email for clients without an email
# provider of their own): django-environ's form, e.g. smtp+tls://user:pass@smtp.example.ru:587.
EMAIL_URL = env.str("EMAIL_URL", default="smtp://localhost:25")
EMAIL_CONFIG = env.email_url_config(EMAIL_URL)
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="webmaster@localhost")

# Secrets that travel in URLs (the amoCRM webhook's, in its path) are masked in every log line
# that carries a request's path (agency.log_masking; gunicorn's access log: config/gunicorn.py).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"mask_secrets": {"()": "agency.log_masking.SecretMaskingFilter"}},
    "formatters": {
        # Django's own format of the development server's access log
        "django.server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        }
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["mask_secrets"]},
        "django.server": {"class": "logging.StreamHandler", "formatter": "django.server"},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # httpx logs every request at INFO; the SyncRun log keeps what matters (steps, ids).
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        # Request paths, masked before any handler (Django's default ones included).
        "django.request": {"filters": ["mask_secrets"]},
        "django.server": {
            "handlers": ["django.server"],
            "level": "INFO",
            "propagate": False,
            "filters": ["mask_secrets"],
        },
    },
}

if not DEBUG:
    SESSION_COOKIE_HTTPONLY = True
    X_FRAME_OPTIONS = "DENY"

# --- Production defaults: HTTPS, the Content-Security-Policy, proxies, API docs -----------------
# (Kept in one block of their own; .env.example documents every variable.)

# Behind a reverse proxy: its addresses (IPs or CIDR networks, comma-separated). Only from these
# peers are X-Forwarded-For (agency.audit.request_ip: the client's IP for rate limits, consent
# evidence and the audit log) and X-Forwarded-Proto (HTTPS detection) believed.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
for _proxy in TRUSTED_PROXIES:
    try:
        _ipaddress.ip_network(_proxy.strip(), strict=False)
    except ValueError as _error:
        _message = f"TRUSTED_PROXIES: {_proxy!r} is not an IP address or a network"
        raise ImproperlyConfigured(_message) from _error
MIDDLEWARE.insert(0, "agency.middleware.TrustedProxyMiddleware")
if TRUSTED_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")


# HTTPS: on by default in production (DEBUG off): HSTS, redirect to HTTPS, Secure cookies.
# DJANGO_SECURE_HTTPS=0 turns them off for a plain-HTTP deployment on loopback.
def _bool_or(name: str, default: bool) -> bool:
    """A boolean variable whose empty value (as .env.example writes it) means the default."""
    return env.bool(name) if env.str(name, default="").strip() else default


SECURE_HTTPS = _bool_or("DJANGO_SECURE_HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = SECURE_HTTPS
SECURE_HSTS_SECONDS = 365 * 24 * 60 * 60 if SECURE_HTTPS else 0
SESSION_COOKIE_SECURE = SECURE_HTTPS
CSRF_COOKIE_SECURE = SECURE_HTTPS
LANGUAGE_COOKIE_SECURE = SECURE_HTTPS
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# Content-Security-Policy (django-csp): every script, style, font and image from this site
# (vendored: Chart.js, the admin's, Swagger UI from drf-spectacular-sidecar); inline <script>
# and <style> elements only with the per-response nonce (``{{ request.csp_nonce }}``); no eval,
# no frames, no plugins. Style attributes are allowed (the admin's status colours come from
# format_html in several admin modules): they run no script, and img-src/font-src keep CSS from
# fetching anything foreign. The banner demo adds its endpoint's origin (consent.banner).
INSTALLED_APPS += ["csp"]
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
    "csp.middleware.CSPMiddleware",
)
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [_csp.SELF],
        "script-src": [_csp.SELF, _csp.NONCE],
        "style-src": [_csp.SELF, _csp.NONCE],
        "style-src-attr": [_csp.UNSAFE_INLINE],
        "img-src": [_csp.SELF, "data:"],
        "font-src": [_csp.SELF],
        "connect-src": [_csp.SELF],
        "object-src": [_csp.NONE],
        "base-uri": [_csp.SELF],
        "form-action": [_csp.SELF],
        "frame-ancestors": [_csp.NONE],
    },
}

# The OpenAPI schema and Swagger UI (/api/schema/, /api/docs/) need a login or an API key unless
# API_DOCS_PUBLIC (on by default only with DEBUG).
API_DOCS_PUBLIC = _bool_or("API_DOCS_PUBLIC", DEBUG)
SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"] = ["agency.api.ApiDocsPermission"]

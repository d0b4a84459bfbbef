"""Every knob comes from the environment, read through `env` (demucs_service/environment.py);
`.env.example` documents each one.

Bad values stop the process at start-up with a message naming the variable, so a typo in
production never silently falls back to a default. Importing this module only reads: it creates
no folders and starts nothing.
"""

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from demucs_service.environment import (
    Env,
    credit_packs,
    demucs_device,
    oauth_apps,
    one_of,
    preload_models,
    subscription_plans,
    throttle_rate,
)

BASE_DIR = Path(__file__).resolve().parent.parent


def allauth_rate(rate: str, per: str) -> str:
    """A DRF rate (10/minute) in allauth's notation (10/m/ip)."""
    count, _, period = rate.partition("/")
    return f"{count}/{period[0]}/{per}"


env = Env()

DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off. Set it to a long random string, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
    SECRET_KEY = "insecure-development-key-only-used-with-DEBUG-on"

SITE_NAME = env.str("SITE_NAME", default="Stemfold")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Relative paths are taken from the project folder.
DATA_DIR = BASE_DIR / env.str("DATA_DIR", default="data")

INSTALLED_APPS = [
    "demucs_service.admin_site.SiteAdminConfig",  # django.contrib.admin under the product's name
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    # Its abstract key model is the base of accounts.UserAPIKey (its own APIKey table stays unused).
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    # Before django_q: its `qcluster` command stops cleanly on SIGTERM to the whole process group.
    "separation",
    "django_q",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    # allauth's GitHub and Google providers, reading their endpoints per request (accounts.social).
    "accounts.social.github",
    "accounts.social.google",
    "accounts",
    "credits",
    "webhooks",
    "demucs_service.observability",
    "monitoring",
]

MIDDLEWARE = [
    # First, so every log line of the request carries its id (and the response echoes it).
    "demucs_service.middleware.request_logging.RequestLoggingMiddleware",
    # Times the whole answer, the outage middleware's 503s included.
    "monitoring.middleware.RequestMetricsMiddleware",
    # A database outage is a 503 with Retry-After, not a 500.
    "demucs_service.middleware.database_unavailable.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "demucs_service.middleware.content_security_policy.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "demucs_service.urls"
WSGI_APPLICATION = "demucs_service.wsgi.application"

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
                "demucs_service.context_processors.site",
            ],
        },
    },
]

# Database: a SQLite file for zero-setup runs, DATABASE_URL (Postgres) for anything real. bin/run
# makes DATA_DIR; Django makes MEDIA_ROOT's folders as it stores files.
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and IMMEDIATE transactions let the web server and the worker share the file.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Transactions are explicit in services; a request is not one big transaction.
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["allauth.account.auth_backends.AuthenticationBackend"]
# bcrypt, in its SHA256 variant so passwords over 72 bytes are not cut.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard"
ACCOUNT_LOGOUT_REDIRECT_URL = "home"
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"email", "username"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_PRESERVE_USERNAME_CASING = True
# ACCOUNT_EMAIL_VERIFICATION and ACCOUNT_PREVENT_ENUMERATION follow EMAIL_VERIFICATION (Email, below).
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_EMAIL_SUBJECT_PREFIX = ""
# The reset page sends nothing to an unknown address, like the API.
ACCOUNT_EMAIL_UNKNOWN_ACCOUNTS = False
ACCOUNT_SESSION_REMEMBER = None

# Social login (accounts.social): a provider is offered, and its URLs exist, only when its client
# id and secret are set. A provider-verified address logs in to the account that has it (and is
# connected to it); allauth wipes that account's password first unless the address was verified
# here too, so whoever registered someone else's address does not keep a way in.
GITHUB_URL = env.str("GITHUB_URL", default="https://github.com")
SOCIALACCOUNT_ADAPTER = "accounts.social.adapter.SocialAccountAdapter"
SOCIALACCOUNT_PROVIDERS = {
    "github": {"APPS": oauth_apps(env, "GITHUB"), "SCOPE": ["read:user", "user:email"], "GITHUB_URL": GITHUB_URL},
    "google": {"APPS": oauth_apps(env, "GOOGLE"), "SCOPE": ["openid", "profile", "email"]},
}
SOCIALACCOUNT_QUERY_EMAIL = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = True
SOCIALACCOUNT_STORE_TOKENS = False
# Connecting or disconnecting asks for the password again unless it was given in the last five
# minutes: a borrowed session cannot add a way in (accounts without a password are not asked).
SOCIALACCOUNT_REAUTHENTICATION_REQUIRED = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
# The site's words over django-allauth's English ("Log in", not "Sign In"): locale/en/LC_MESSAGES.
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / env.str("STATIC_ROOT", default="staticfiles")
MEDIA_URL = "media/"
MEDIA_ROOT = BASE_DIR / env.str("MEDIA_ROOT", default=str(DATA_DIR / "media"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# Where uploads and stems are kept: MEDIA_ROOT (`local`), or a bucket (`s3`: AWS S3, MinIO, R2...)
# through django-storages, whose setting names these are. With a bucket, MEDIA_ROOT is each
# machine's scratch space: workers copy the input there and send the outputs up as they finish,
# so web and workers share no disk. Credentials come from AWS_ACCESS_KEY_ID and
# AWS_SECRET_ACCESS_KEY (or the machine's role), which django-storages and boto3 read themselves.
STORAGE_BACKEND = env("STORAGE_BACKEND", cast=one_of("local", "s3"), default="local")
if STORAGE_BACKEND == "s3":
    from botocore.config import Config as S3ClientConfig

    STORAGES["default"] = {"BACKEND": "storages.backends.s3.S3Storage"}
    AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME")
    AWS_S3_ENDPOINT_URL = env.str("AWS_S3_ENDPOINT_URL", default="") or None
    AWS_S3_REGION_NAME = env.str("AWS_S3_REGION_NAME", default="") or None
    AWS_S3_ADDRESSING_STYLE = env("AWS_S3_ADDRESSING_STYLE", cast=one_of("auto", "path", "virtual"), default="auto")
    # Downloads are redirects to presigned URLs that live this long.
    AWS_QUERYSTRING_EXPIRE = env.int("AWS_QUERYSTRING_EXPIRE", default=300, minimum=30)
    AWS_DEFAULT_ACL = None
    AWS_S3_FILE_OVERWRITE = True
    # Short timeouts: a bucket that does not answer fails the upload or the job (refunded), it does
    # not hold a web thread or a worker. (With a client config, django-storages takes the signature
    # version and the addressing style from here only.)
    AWS_S3_CLIENT_CONFIG = S3ClientConfig(
        signature_version="s3v4",
        s3={"addressing_style": AWS_S3_ADDRESSING_STYLE},
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 4, "mode": "standard"},
    )

# Security. The TLS proxy redirects to HTTPS, so Django does not by default.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# The TLS proxy redirects to HTTPS, and HSTS preload is the operator's opt-in for the whole domain.
SILENCED_SYSTEM_CHECKS = ["security.W008", "security.W021"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env.bool("BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# 0: the client is REMOTE_ADDR; X-Forwarded-For is trusted only with proxies in front. DRF's
# throttles and allauth's rate limits both take the client address from here.
NUM_PROXIES = env.int("NUM_PROXIES", default=0)
ALLAUTH_TRUSTED_PROXY_COUNT = NUM_PROXIES

# Credits.
SIGNUP_BONUS_CREDITS = Decimal(env.int("SIGNUP_BONUS_CREDITS", default=3))
CREDIT_PACKS = env(
    "CREDIT_PACKS", cast=credit_packs, default="starter:5:1.00,standard:25:4.00,pro:100:15.00", parse_default=True
)
CREDIT_CURRENCY = env.str("CREDIT_CURRENCY", default="usd").lower()

# API.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # JWT first, so an anonymous API call gets 401 with WWW-Authenticate: Bearer. Tokens end
        # early on logout, a password change or reset, and deactivation.
        "accounts.authentication.RevocableJWTAuthentication",
        # Authorization: Api-Key <key> (accounts.UserAPIKey); revoked or expired keys answer 401.
        "accounts.authentication.APIKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "demucs_service.api_errors.exception_handler",
    "NUM_PROXIES": NUM_PROXIES,
    "DEFAULT_THROTTLE_RATES": {
        "register_ip": env("THROTTLE_REGISTER_IP", cast=throttle_rate, default="10/hour"),
        "register_account": env("THROTTLE_REGISTER_ACCOUNT", cast=throttle_rate, default="5/hour"),
        "password_reset_ip": env("THROTTLE_PASSWORD_RESET_IP", cast=throttle_rate, default="20/hour"),
        "password_reset_account": env("THROTTLE_PASSWORD_RESET_ACCOUNT", cast=throttle_rate, default="5/hour"),
        "upload": env("THROTTLE_UPLOAD", cast=throttle_rate, default="60/hour"),
        "webhooks": env("THROTTLE_WEBHOOKS", cast=throttle_rate, default="60/hour"),
        "mix": env("THROTTLE_MIX", cast=throttle_rate, default="60/hour"),
    },
}
# Failed logins, on the login page and POST /api/auth/login alike (allauth's counters, keyed in
# accounts.login_limits): per client address, and per account from one client address, so wrong
# passwords from elsewhere never lock the owner out. Only failures count.
THROTTLE_LOGIN_IP = env("THROTTLE_LOGIN_IP", cast=throttle_rate, default="20/minute")
THROTTLE_LOGIN_ACCOUNT = env("THROTTLE_LOGIN_ACCOUNT", cast=throttle_rate, default="5/minute")
ACCOUNT_RATE_LIMITS = {
    "login_failed": f"{allauth_rate(THROTTLE_LOGIN_IP, 'ip')},{allauth_rate(THROTTLE_LOGIN_ACCOUNT, 'key')}",
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(days=env.int("JWT_ACCESS_TOKEN_DAYS", default=30, minimum=1)),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "UPDATE_LAST_LOGIN": True,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Stemfold API",
    "DESCRIPTION": (
        "Stemfold splits songs into stems (vocals, drums, bass and more), paid for with credits. "
        "Authenticate with `Authorization: Bearer <token>`, the token that POST /api/auth/login or "
        "/api/auth/register returns, or, for programs, `Authorization: Api-Key <key>` with a key made on "
        "the API keys page or with POST /api/keys."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # No badge from validator.swagger.io: the docs page loads nothing from outside.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "ENUM_NAME_OVERRIDES": {"WebhookEventEnum": "webhooks.models.Event"},
}

# Separation. The models on offer, their stems and prices are the separation app's catalogue
# (separation/catalog.py), which checks DEFAULT_MODEL and WORKER_PRELOAD_MODELS against it at start-up.
DEFAULT_MODEL = env.str("DEFAULT_MODEL", default="htdemucs")
DEMUCS_MODEL_REPO = BASE_DIR / env.str("DEMUCS_MODEL_REPO", default=str(DATA_DIR / "models"))
# Offer models whose weights' licence does not allow commercial use (or states none): off, so a
# paid service sells only what it may.
MODELS_NONCOMMERCIAL = env.bool("MODELS_NONCOMMERCIAL", default=False)
# Where `manage.py install_model` downloads from: empty for each publisher's own host; a base URL
# replaces their scheme and host (a mirror keeping their paths; the tests' loopback server).
MODEL_DOWNLOAD_BASE_URL = env.str("MODEL_DOWNLOAD_BASE_URL", default="")
DEMUCS_DEVICE = env("DEMUCS_DEVICE", cast=demucs_device, default="auto")
DEMUCS_SHIFTS = env.int("DEMUCS_SHIFTS", default=1)
DEMUCS_OVERLAP = env.float("DEMUCS_OVERLAP", default=0.25, minimum=0.0, maximum=0.9)
DEMUCS_SEGMENT = env.float("DEMUCS_SEGMENT", default=None, minimum=1.0, maximum=600.0)
# How the networks run (separation/engine/networks.py; bench/README.md has the figures): on a CPU
# worker exported to ONNX and run by OpenVINO (the fastest there, within 60 dB of torch) or ONNX
# Runtime, or in torch (what GPU workers always use). float16 or bfloat16 trade exactness for speed;
# DEMUCS_BATCH gives the network several chunks per call (for a GPU).
DEMUCS_BACKEND = env("DEMUCS_BACKEND", cast=one_of("openvino", "onnxruntime", "torch"), default="openvino")
DEMUCS_PRECISION = env("DEMUCS_PRECISION", cast=one_of("float32", "float16", "bfloat16"), default="float32")
DEMUCS_BATCH = env.int("DEMUCS_BATCH", default=1, minimum=1)
DEMUCS_ONNX_CACHE = BASE_DIR / env.str("DEMUCS_ONNX_CACHE", default=str(DATA_DIR / "onnx"))
if DEMUCS_BACKEND == "onnxruntime" and DEMUCS_PRECISION != "float32":
    raise ImproperlyConfigured("DEMUCS_BACKEND=onnxruntime runs in float32: set DEMUCS_PRECISION=float32.")
MAX_UPLOAD_MB = env.int("MAX_UPLOAD_MB", default=500, minimum=1)
# A request body that stops for UPLOAD_STALL_SECONDS, or averages under UPLOAD_MIN_KBPS once
# UPLOAD_GRACE_SECONDS have passed, is cut (demucs_service/middleware/slow_clients.py).
UPLOAD_STALL_SECONDS = env.int("UPLOAD_STALL_SECONDS", default=30, minimum=1)
UPLOAD_MIN_KBPS = env.int("UPLOAD_MIN_KBPS", default=16, minimum=0)
UPLOAD_GRACE_SECONDS = env.int("UPLOAD_GRACE_SECONDS", default=30, minimum=0)
# URL import (POST /api/upload with `url`, the dashboard's link field): private, loopback and
# link-local addresses are refused unless URL_IMPORT_ALLOW_PRIVATE (tests, private deployments); the
# whole download must end within URL_IMPORT_TIMEOUT_SECONDS (it holds a web worker meanwhile).
URL_IMPORT_ALLOW_PRIVATE = env.bool("URL_IMPORT_ALLOW_PRIVATE", default=False)
URL_IMPORT_TIMEOUT_SECONDS = env.int("URL_IMPORT_TIMEOUT_SECONDS", default=60, minimum=1)
# Each import holds a web thread for its download: at most this many at once per account, so a
# few slow addresses cannot take every thread from everybody else.
URL_IMPORT_MAX_CONCURRENT = env.int("URL_IMPORT_MAX_CONCURRENT", default=2, minimum=1)
# The engine streams: a worker's memory does not grow with the track, its disk does (about 5 GB
# of temporary files per hour of stereo audio while a 4-stem job runs) and so does its time.
MAX_DURATION_MINUTES = env.int("MAX_DURATION_MINUTES", default=120, minimum=1)
JOB_MAX_ATTEMPTS = env.int("JOB_MAX_ATTEMPTS", default=2, minimum=1)
# Jobs of one user separating at once; the rest wait, and waiting jobs are taken round-robin by user.
MAX_RUNNING_JOBS_PER_USER = env.int("MAX_RUNNING_JOBS_PER_USER", default=2, minimum=1)
# Free 30-second previews one account may start in 24 hours (0: no previews); they wait behind paid jobs.
PREVIEWS_PER_DAY = env.int("PREVIEWS_PER_DAY", default=3, minimum=0)
# What one user may keep stored: uploads, stems and archives, and while a job runs its temporary files.
STORAGE_QUOTA_MB = env.int("STORAGE_QUOTA_MB", default=10240, minimum=1)
JOB_RETENTION_DAYS = env.int("JOB_RETENTION_DAYS", default=7, minimum=1)
# A processing job whose heartbeat is older than this lost its worker.
JOB_STALE_SECONDS = env.int("JOB_STALE_SECONDS", default=300, minimum=10)
# A pending job not started this long after it was queued is queued again (its task was lost).
JOB_REQUEUE_SECONDS = env.int("JOB_REQUEUE_SECONDS", default=600, minimum=10)
# Uploads stream to a temporary file (never memory) and stop at MAX_UPLOAD_MB.
FILE_UPLOAD_MAX_MEMORY_SIZE = 0
FILE_UPLOAD_HANDLERS = [
    "separation.upload_gate.UploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

# Background work: django-q2 on the database unless Redis is configured.
SEPARATION_WORKERS = env.int("SEPARATION_WORKERS", default=1, minimum=1)
# Models each worker process loads right after django-q2 starts it, before its first task
# (separation/worker_warmup.py), so no job waits for a model load.
WORKER_PRELOAD_MODELS = env("WORKER_PRELOAD_MODELS", cast=preload_models, default="installed")
JOB_TIMEOUT_SECONDS = env.int("JOB_TIMEOUT_SECONDS", default=4 * 3600, minimum=10)
# Two django-q2 clusters on one broker: separations, and maintenance (the reaper, cleanup, mails),
# which runs in its own process (`Q_CLUSTER_NAME=maintenance manage.py qcluster`) so that it never
# waits behind a long separation. Every task names the cluster it is for.
SEPARATION_CLUSTER = "separation"
MAINTENANCE_CLUSTER = "maintenance"
MAINTENANCE_WORKERS = env.int("MAINTENANCE_WORKERS", default=1, minimum=1)
Q_CLUSTER = {
    "name": SEPARATION_CLUSTER,
    "workers": SEPARATION_WORKERS,
    "timeout": JOB_TIMEOUT_SECONDS,
    # Longer than the timeout, so a running task is never handed out twice.
    "retry": JOB_TIMEOUT_SECONDS + 600,
    "max_attempts": 1,
    "catch_up": False,
    "label": "Task queue",
    "ALT_CLUSTERS": {
        MAINTENANCE_CLUSTER: {"workers": MAINTENANCE_WORKERS, "timeout": 3600, "retry": 4200},
    },
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# Completion webhooks (webhooks/): sent from the maintenance cluster, retried with exponential
# backoff (WEBHOOK_RETRY_BASE_SECONDS doubling, WEBHOOK_MAX_ATTEMPTS in all: 60 s and 12 reach
# 34 hours), an endpoint failing for WEBHOOK_DISABLE_AFTER_DAYS is disabled and its owner mailed.
# Private, loopback and link-local addresses are refused unless WEBHOOK_ALLOW_PRIVATE=1.
WEBHOOK_ALLOW_PRIVATE = env.bool("WEBHOOK_ALLOW_PRIVATE", default=False)
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=5.0, minimum=0.5, maximum=30)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=12, minimum=1)
WEBHOOK_RETRY_BASE_SECONDS = env.int("WEBHOOK_RETRY_BASE_SECONDS", default=60, minimum=1)
WEBHOOK_DISABLE_AFTER_DAYS = env.int("WEBHOOK_DISABLE_AFTER_DAYS", default=5, minimum=1)
WEBHOOK_MAX_ENDPOINTS = env.int("WEBHOOK_MAX_ENDPOINTS", default=10, minimum=1)

# Email: EMAIL_URL (smtp://user:password@host:587, smtp+tls://..., smtp+ssl://...) or the console.
_email_config = env.email_url("EMAIL_URL", default="consolemail://")
EMAIL_BACKEND = _email_config["EMAIL_BACKEND"]
EMAIL_HOST = _email_config["EMAIL_HOST"] or "localhost"
EMAIL_PORT = _email_config["EMAIL_PORT"] or 25
EMAIL_HOST_USER = _email_config["EMAIL_HOST_USER"] or ""
EMAIL_HOST_PASSWORD = _email_config["EMAIL_HOST_PASSWORD"] or ""
EMAIL_USE_TLS = _email_config.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email_config.get("EMAIL_USE_SSL", False)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default=f"{SITE_NAME} <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10, minimum=1)
# Absolute links in mails the worker sends (it has no request), e.g. https://stems.example.com
SITE_URL = env.str("SITE_URL", default="").rstrip("/")
# mandatory: unverified accounts may log in and see their balance but not upload.
EMAIL_VERIFICATION = env(
    "EMAIL_VERIFICATION", cast=one_of("none", "optional", "mandatory"), default="optional" if DEBUG else "mandatory"
)
# allauth's "mandatory" makes a sign-up wait for the link, so the sign-up page answers a taken
# address as it answers a new one (mailing its owner instead); logging in does not wait
# (accounts.adapter), only uploads do. Otherwise allauth mails the link and lets people in.
ACCOUNT_EMAIL_VERIFICATION = "mandatory" if EMAIL_VERIFICATION == "mandatory" else "optional"
ACCOUNT_PREVENT_ENUMERATION = True

# Payments: Stripe Checkout when STRIPE_SECRET_KEY is set; otherwise simulated purchases,
# which are refused with DEBUG off unless PAYMENTS_SIMULATED=1.
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
if STRIPE_SECRET_KEY and not STRIPE_WEBHOOK_SECRET:
    raise ImproperlyConfigured("STRIPE_WEBHOOK_SECRET is required with STRIPE_SECRET_KEY: credits arrive by webhook.")
PAYMENTS_SIMULATED = env.bool("PAYMENTS_SIMULATED", default=DEBUG)
# Another Stripe-compatible API endpoint (stripe-mock, the tests' fake server); empty: Stripe's.
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")
# Square: a hosted checkout (a payment link with an order) per pack; credits by signed webhook.
SQUARE_ACCESS_TOKEN = env.str("SQUARE_ACCESS_TOKEN", default="")
SQUARE_LOCATION_ID = env.str("SQUARE_LOCATION_ID", default="")
SQUARE_WEBHOOK_SIGNATURE_KEY = env.str("SQUARE_WEBHOOK_SIGNATURE_KEY", default="")
SQUARE_ENVIRONMENT = env("SQUARE_ENVIRONMENT", cast=one_of("sandbox", "production"), default="production")
# Another Square-compatible API host (the tests' fake server); empty: SQUARE_ENVIRONMENT's.
SQUARE_API_BASE = env.str("SQUARE_API_BASE", default="").rstrip("/")
# Which provider sells packs: the one configured by default; both configured need a choice.
_PROVIDERS_CONFIGURED = [name for name, key in (("stripe", STRIPE_SECRET_KEY), ("square", SQUARE_ACCESS_TOKEN)) if key]
PAYMENT_PROVIDER = env(
    "PAYMENT_PROVIDER",
    cast=one_of("stripe", "square", normalise=str.lower),
    default=_PROVIDERS_CONFIGURED[0] if len(_PROVIDERS_CONFIGURED) == 1 else "",
)
if not PAYMENT_PROVIDER and len(_PROVIDERS_CONFIGURED) > 1:
    raise ImproperlyConfigured("Both Stripe and Square are configured: set PAYMENT_PROVIDER to stripe or square.")
if PAYMENT_PROVIDER == "stripe" and not STRIPE_SECRET_KEY:
    raise ImproperlyConfigured("PAYMENT_PROVIDER=stripe needs STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET.")
if PAYMENT_PROVIDER == "square":
    _square_missing = [
        name
        for name, value in (
            ("SQUARE_ACCESS_TOKEN", SQUARE_ACCESS_TOKEN),
            ("SQUARE_LOCATION_ID", SQUARE_LOCATION_ID),
            ("SQUARE_WEBHOOK_SIGNATURE_KEY", SQUARE_WEBHOOK_SIGNATURE_KEY),
            # Square signs each notification together with the URL it was sent to: ours.
            ("SITE_URL", SITE_URL),
        )
        if not value
    ]
    if _square_missing:
        raise ImproperlyConfigured(f"PAYMENT_PROVIDER=square needs {', '.join(_square_missing)}.")

# Subscriptions (Stripe Billing): monthly plans, id:price in CREDIT_CURRENCY; empty: none sold.
SUBSCRIPTION_PLANS = env("SUBSCRIPTION_PLANS", cast=subscription_plans, default=[])
if SUBSCRIPTION_PLANS and not STRIPE_SECRET_KEY:
    raise ImproperlyConfigured("SUBSCRIPTION_PLANS are sold through Stripe Billing: set STRIPE_SECRET_KEY too.")
# "Unlimited" within fair use: this many hours of audio per paid period; past it, jobs cost credits.
SUBSCRIPTION_FAIR_USE_HOURS = env.int("SUBSCRIPTION_FAIR_USE_HOURS", default=30, minimum=1)
# After a failed renewal, the subscription keeps covering jobs this long while Stripe retries.
SUBSCRIPTION_GRACE_DAYS = env.int("SUBSCRIPTION_GRACE_DAYS", default=3, minimum=0)

# Logs go to stderr: readable text by default, one JSON object a line with LOG_FORMAT=json.
# Each line carries the request id, user id and job id (demucs_service.observability.log_context).
LOG_FORMAT = env("LOG_FORMAT", cast=one_of("text", "json", normalise=str.lower), default="text")
LOG_LEVEL = env(
    "LOG_LEVEL", cast=one_of("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", normalise=str.upper), default="INFO"
)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "demucs_service.observability.log_context.ContextFilter"}},
    "formatters": {
        "text": {"()": "demucs_service.observability.log_formatters.TextFormatter"},
        "json": {"()": "demucs_service.observability.log_formatters.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # Django's and django-q2's records go through the root handler too (one format, no duplicates).
    "loggers": {
        "django": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
        "django.server": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
        "django-q": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
    },
}

# Prometheus metrics: /metrics answers a scraper sending "Authorization: Bearer METRICS_TOKEN";
# without the token there is no such page. A worker host can serve its processes' metrics on
# WORKER_METRICS_ADDRESS:WORKER_METRICS_PORT (0: off). Both need PROMETHEUS_MULTIPROC_DIR in the
# environment (prometheus-client reads it itself) to add up more than one process.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
WORKER_METRICS_PORT = env.int("WORKER_METRICS_PORT", default=0)
WORKER_METRICS_ADDRESS = env.str("WORKER_METRICS_ADDRESS", default="127.0.0.1")

# Sentry when SENTRY_DSN is set (demucs_service.observability starts it): request errors, failed
# tasks and error-level logs.
SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="development" if DEBUG else "production")
SENTRY_RELEASE = env.str("SENTRY_RELEASE", default="")
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0, minimum=0.0, maximum=1.0)

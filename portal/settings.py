"""Corral settings.

Every setting a deployment may change comes from an environment variable named ``PORTAL_*``;
the README lists them.  With nothing set, Corral runs locally: SQLite under ``var/``, Redis on
localhost, no debug pages, keys generated under ``var/``.  With ``PORTAL_DEBUG=false``
(production) it refuses to start without a real secret key and explicit allowed hosts.
"""

import ipaddress
import os
from datetime import date, timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from portal import keyfiles
from portal.envconfig import env_bool, env_int, env_list, env_networks

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CORRAL_VAR_DIR") or BASE_DIR / "var")


def env(name, default=None):
    return os.environ.get(name, default)


# --- Core -------------------------------------------------------------------------------------

# Three ways to run, chosen by PORTAL_DEBUG:
#   unset  local: make run, manage.py and the tests, on loopback over plain HTTP; no debug pages;
#          a secret key and an encryption key generated on first start and kept under var/.
#   true   the same with Django's debug pages (settings and local variables on every error).
#   false  production: a real secret key and allowed hosts are required; HTTPS hardening is on.
_debug = env_bool("PORTAL_DEBUG", None)
DEBUG = _debug is True
PRODUCTION = _debug is False

# Published in the source, so it signs and encrypts nothing: production refuses it, local runs generate their own.
DEFAULT_SECRET_KEY = "corral-insecure-local-development-key-change-me"
if PRODUCTION:
    SECRET_KEY = env("PORTAL_SECRET_KEY", DEFAULT_SECRET_KEY)
else:
    SECRET_KEY = env("PORTAL_SECRET_KEY") or keyfiles.read_or_create(VAR_DIR / "secret-key", keyfiles.new_secret_key)
ALLOWED_HOSTS = env_list("PORTAL_ALLOWED_HOSTS", "" if PRODUCTION else "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("PORTAL_CSRF_TRUSTED_ORIGINS")

if PRODUCTION:
    # Fail fast, as NetBox does: production must never run on the published development key.
    if SECRET_KEY == DEFAULT_SECRET_KEY or len(SECRET_KEY) < 50:
        raise ImproperlyConfigured(
            "PORTAL_SECRET_KEY must be set to a random string of at least 50 characters when "
            "PORTAL_DEBUG is false (generate one with: python -c 'import secrets; "
            "print(secrets.token_urlsafe(64))'; to try Corral locally, leave PORTAL_DEBUG unset)"
        )
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "PORTAL_ALLOWED_HOSTS must list the host names Corral is served on when PORTAL_DEBUG is false"
        )

# Credentials of clusters are encrypted with these keys (Fernet).  Several keys, comma separated,
# allow rotation: the first encrypts, all decrypt.  Unset: in production derived from the secret
# key; locally generated under var/.  ENCRYPTION_FALLBACK_KEYS only decrypt.
ENCRYPTION_KEYS = env_list("PORTAL_ENCRYPTION_KEYS")
ENCRYPTION_FALLBACK_KEYS = []
if not ENCRYPTION_KEYS and PRODUCTION:
    ENCRYPTION_KEYS = [keyfiles.derived_fernet_key(SECRET_KEY)]
elif not ENCRYPTION_KEYS:
    ENCRYPTION_KEYS = [keyfiles.read_or_create(VAR_DIR / "encryption-key", keyfiles.new_fernet_key)]
    # Local installs before the generated key encrypted with a key derived from the secret key
    # (by default the published one): still read what they stored, until reencrypt_credentials
    # (run by make run at each start) has moved it to the generated key.
    ENCRYPTION_FALLBACK_KEYS = [keyfiles.derived_fernet_key(env("PORTAL_SECRET_KEY") or DEFAULT_SECRET_KEY)]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "axes",
    "channels",
    "csp",
    "portal.apps.PortalConfig",
    "portal.accounts",
    "clusters.apps.ClustersConfig",
    "projects.apps.ProjectsConfig",
    "monitoring.apps.MonitoringConfig",
]

MIDDLEWARE = [
    "portal.health.HealthMiddleware",  # /healthz and /readyz: first, so any Host and plain HTTP get an answer
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "portal.csp.ContentSecurityPolicyMiddleware",  # outside CommonMiddleware: its 400s carry the policy too
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "portal.audit.AuditMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"

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

# Scripts and styles only from Corral's own static files (no inline code); portal.csp adds the
# page's websocket origin to connect-src and lets the browsable API keep its inline styles.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],  # Swagger UI's stylesheet draws its icons from data: URLs
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# --- Database and Redis -----------------------------------------------------------------------

# No URL: `make run` starts a private PostgreSQL under var/ and passes its URL (tools/services.py).
# Bare `manage.py` without one falls back to SQLite, which suits one user at a time.
DATABASE_URL = env("PORTAL_DATABASE_URL", f"sqlite:///{VAR_DIR / 'corral.sqlite3'}")
# Health checks: a kept connection that a PostgreSQL restart broke is replaced, not used for an error.
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("PORTAL_DB_CONN_MAX_AGE", 60), conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", env_int("PORTAL_DB_CONNECT_TIMEOUT_SECONDS", 5))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker, beat and watcher share the file.  WAL lets readers run beside the one writer;
    # IMMEDIATE takes the write lock when a transaction starts (a deferred one that upgrades later
    # fails at once with "database is locked"); the busy timeout waits for the lock.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=env_int("PORTAL_SQLITE_BUSY_TIMEOUT_SECONDS", 30),
        transaction_mode="IMMEDIATE",
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
    )
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("PORTAL_REDIS_URL", "redis://127.0.0.1:6379/0")
# A slow moment (a busy host, a Redis restart) is waited for and retried, not turned into an error:
# every Redis client (cache, locks, channel layer, Celery) times out, reconnects and retries.
REDIS_TIMEOUT = env_int("PORTAL_REDIS_TIMEOUT_SECONDS", 5)
if REDIS_TIMEOUT < 2:  # the channel layer's blocking pops wait half of it (portal/channel_layer.py)
    raise ImproperlyConfigured(f"PORTAL_REDIS_TIMEOUT_SECONDS must be at least 2, not {REDIS_TIMEOUT}")


def _redis_client_options(retry_class):
    return {
        "socket_connect_timeout": REDIS_TIMEOUT,
        "socket_timeout": REDIS_TIMEOUT,
        "socket_keepalive": True,
        "health_check_interval": 15,
        "retry": retry_class(ExponentialBackoff(cap=2, base=0.1), 4),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }


REDIS_CLIENT_OPTIONS = _redis_client_options(Retry)
# Watcher shards (clusters.shards): a dead watcher's clusters move to the others once its Redis
# connection closes, or at the latest when its lease (renewed every fifth of it) lapses.
WATCHER_LEASE_SECONDS = max(2, env_int("PORTAL_WATCHER_LEASE_SECONDS", 10))
# Clusters a watcher lists at once (a first list, or after a 410): each listing mostly waits on its
# API server and on the database, so more run side by side than there are cores.
WATCHER_LISTERS = max(1, env_int("PORTAL_WATCHER_LISTERS", 4))
# Threads that write a watcher's changes to the database (a cluster's always on the same one).  They
# share one interpreter lock with the event loop that reads every watch: fewer leave the loop more of
# it (a takeover's clusters followed sooner) and write a burst of changes later (docs/scale.md).
WATCHER_WRITERS = max(1, env_int("PORTAL_WATCHER_WRITERS", 4))
# Where the worker, beat and the watcher touch their liveness files (portal.liveness; manage.py alive).
LIVENESS_DIR = Path(env("PORTAL_LIVENESS_DIR", VAR_DIR / "liveness"))

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "corral",
        "OPTIONS": REDIS_CLIENT_OPTIONS,
    }
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "portal.channel_layer.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": REDIS_URL, **_redis_client_options(AsyncRetry)}], "prefix": "corral:channels",
                   "blocking_pop_seconds": REDIS_TIMEOUT // 2},
    }
}

# --- Authentication ---------------------------------------------------------------------------

AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
# Sessions stay in the database (Django's default engine): a Redis outage must not stop logins.
SESSION_ENGINE = "django.contrib.sessions.backends.db"

# Failed-login throttle (portal/accounts/throttle.py): django-axes, state in the database, per
# (user name, client address).  PORTAL_LOGIN_MAX_FAILURES / _LOCKOUT_SECONDS are set by
# ldap_config.configure() below and read at each login.
try:  # reverse proxies whose X-Forwarded-For is believed; none: the client is REMOTE_ADDR
    PORTAL_TRUSTED_PROXIES = [str(ipaddress.ip_network(p, strict=False)) for p in env_list("PORTAL_TRUSTED_PROXIES")]
except ValueError as exc:
    raise ImproperlyConfigured(f"PORTAL_TRUSTED_PROXIES must list addresses or CIDRs: {exc}") from None
AXES_HANDLER = "portal.accounts.throttle.LoginThrottle"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_FAILURE_LIMIT = "portal.accounts.throttle.failure_limit"
AXES_COOLOFF_TIME = "portal.accounts.throttle.lockout"
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "portal.accounts.throttle.client_address"
AXES_USERNAME_CALLABLE = "portal.accounts.throttle.login_name"
# The login form shows the lockout itself ("too many failed logins; try again in N minutes"),
# so axes' middleware, which would replace the page with its own, is not installed.
SILENCED_SYSTEM_CHECKS = ["axes.W002"]

# API tokens: lifetime in days when none is asked for, and the longest allowed.
API_TOKEN_DEFAULT_DAYS = env_int("PORTAL_API_TOKEN_DEFAULT_DAYS", 30)
API_TOKEN_MAX_DAYS = env_int("PORTAL_API_TOKEN_MAX_DAYS", 90)

# --- Internationalisation, static files -------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("PORTAL_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("PORTAL_STATIC_ROOT", BASE_DIR / "staticfiles"))
STATICFILES_DIRS = []  # app static dirs (portal/static) are found by the app finder
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Largest request body accepted (bytes); larger ones get a 413 naming the limit.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("PORTAL_MAX_REQUEST_BYTES", 2 * 1024 * 1024)
# The Kubernetes API proxy (/k8s/) takes what a kube-apiserver takes: 3 MiB.
PROXY_MAX_REQUEST_BYTES = env_int("PORTAL_PROXY_MAX_REQUEST_BYTES", 3 * 1024 * 1024)

# --- REST API ---------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["portal.api.permissions.TokenScopePermission"],
    "DEFAULT_PAGINATION_CLASS": "portal.api.pagination.Pagination",
    "PAGE_SIZE": env_int("PORTAL_API_PAGE_SIZE", 50),
    "DEFAULT_FILTER_BACKENDS": [
        "portal.api.filters.FilterBackend",
        "portal.api.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    # The API takes JSON only (nesting depth capped): one body format to validate and document.
    "DEFAULT_PARSER_CLASSES": ["portal.api.parsers.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "portal.api.exceptions.exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
API_MAX_PAGE_SIZE = env_int("PORTAL_API_MAX_PAGE_SIZE", 1000)
# A list's ``count`` is exact up to this many matches (0: always exact); past it ``count_exact`` is false.
API_COUNT_LIMIT = env_int("PORTAL_API_COUNT_LIMIT", 1000)

SPECTACULAR_SETTINGS = {
    "TITLE": "Corral API",
    "DESCRIPTION": "Multi-cluster Kubernetes management",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "portal.api.schema.document_error_responses",  # 400/401/403/404/409/413/415 where they occur
        "portal.api.schema.link_created_objects",  # POST /things/ -> /things/{id}/...
    ],
    # Serve Swagger UI from Corral itself, not a CDN: the docs work on air-gapped installs.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ClusterStateEnum": "clusters.models.ClusterState",
        "OperationStatusEnum": "portal.models.OperationStatus",
        "AlertStateEnum": "monitoring.models.AlertState",
        "GlobalRoleEnum": "portal.models.GlobalRole",
        "ClusterRoleEnum": "clusters.models.ClusterMembership.Role",
        "ProjectRoleEnum": "projects.models.ProjectMembership.Role",
        "ClusterKindEnum": "clusters.models.ClusterKind",
        "SwarmObjectKindEnum": "clusters.models.SwarmObjectKind",
        "WorkloadKindEnum": "clusters.models.WorkloadKind",
    },
}

# --- Celery -----------------------------------------------------------------------------------

CELERY_BROKER_URL = env("PORTAL_CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("PORTAL_TASK_TIME_LIMIT", 30 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("PORTAL_TASK_SOFT_TIME_LIMIT", 25 * 60)
CELERY_TASK_ALWAYS_EAGER = env_bool("PORTAL_CELERY_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
# django-celery-beat's DatabaseScheduler, sending only while it holds the beat lease (portal.beat).
CELERY_BEAT_SCHEDULER = "portal.beat:LeasedScheduler"
# Unacknowledged tasks (acks_late) go back to the queue after the visibility timeout: a worker
# that died mid-task has its work redelivered (a killed pool child's at once, by reject_on_worker_lost).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_TASK_TIME_LIMIT + 60,
    "socket_connect_timeout": REDIS_TIMEOUT,
    "socket_timeout": 2 * REDIS_TIMEOUT,
    "socket_keepalive": True,
    "retry_on_timeout": True,
    "health_check_interval": 15,
}
CELERY_BROKER_CONNECTION_TIMEOUT = REDIS_TIMEOUT
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # a worker waits for the broker however long it is down
# Sending a task retries a few times over ~2 s; then the caller gets a clear 503 (portal.operations).
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
CELERY_TIMEZONE = TIME_ZONE

# Periodic tasks installed (and kept editable in the admin) by `manage.py migrate`.
PERIODIC_TASKS = {
    "clusters: check health of all clusters": {
        "task": "clusters.tasks.check_all_clusters",
        "every": timedelta(seconds=env_int("PORTAL_HEALTH_CHECK_SECONDS", 30)),
    },
    "clusters: full inventory resync": {
        "task": "clusters.tasks.sync_all_clusters",
        "every": timedelta(seconds=env_int("PORTAL_RESYNC_SECONDS", 300)),
    },
    "projects: reconcile every cluster": {
        "task": "projects.tasks.reconcile_all_clusters",
        "every": timedelta(seconds=env_int("PORTAL_PROJECT_RECONCILE_SECONDS", 15)),
    },
    "monitoring: evaluate alert rules, send due notifications": {
        "task": "monitoring.tasks.evaluate_all_clusters",
        "every": timedelta(seconds=env_int("PORTAL_ALERT_EVALUATION_SECONDS", 30)),
    },
    "monitoring: collect usage metrics": {
        "task": "monitoring.tasks.collect_all_usage",
        "every": timedelta(seconds=env_int("PORTAL_METRICS_SECONDS", 30)),
    },
    "monitoring: roll up and prune usage metrics": {
        "task": "monitoring.tasks.rollup_and_prune_usage",
        "every": timedelta(minutes=5),
    },
    "portal: fail lost operations": {
        "task": "portal.tasks.fail_lost_operations",
        "every": timedelta(seconds=60),
    },
    "portal: purge finished operations": {
        "task": "portal.tasks.purge_operations",
        "every": timedelta(hours=6),
    },
}
OPERATION_RETENTION_DAYS = env_int("PORTAL_OPERATION_RETENTION_DAYS", 30)
# A running operation whose worker stopped renewing its lock is failed after this many seconds
# without progress; a pending one no worker took within PORTAL_OPERATION_QUEUE_TIMEOUT_SECONDS too.
OPERATION_LOST_GRACE_SECONDS = env_int("PORTAL_OPERATION_LOST_GRACE_SECONDS", 120)
OPERATION_QUEUE_TIMEOUT_SECONDS = env_int("PORTAL_OPERATION_QUEUE_TIMEOUT_SECONDS", 3600)

# --- Alerts and notifications -------------------------------------------------------------------

# Where people open Corral: the links in notifications.
PUBLIC_URL = env("PORTAL_PUBLIC_URL", "http://127.0.0.1:8000")
DEFAULT_FROM_EMAIL = env("PORTAL_ALERT_EMAIL_FROM", "corral@localhost")
# A failed delivery is tried again after base, 2x base, 4x base... seconds (capped), this many times in all.
NOTIFY_MAX_ATTEMPTS = env_int("PORTAL_NOTIFY_MAX_ATTEMPTS", 5)
NOTIFY_RETRY_BASE_SECONDS = env_int("PORTAL_NOTIFY_RETRY_BASE_SECONDS", 5)
NOTIFY_RETRY_MAX_SECONDS = env_int("PORTAL_NOTIFY_RETRY_MAX_SECONDS", 300)
# End of life of Kubernetes minor releases (the upstream release calendar's end of patch support),
# for the kubernetes-version-eol rule; "1.33=2026-06-28,..." in the environment adds or replaces.
KUBERNETES_EOL = {
    "1.25": date(2023, 10, 28), "1.26": date(2024, 2, 28), "1.27": date(2024, 6, 28), "1.28": date(2024, 10, 28),
    "1.29": date(2025, 2, 28), "1.30": date(2025, 6, 28), "1.31": date(2025, 10, 28), "1.32": date(2026, 2, 28),
    **{k.strip(): date.fromisoformat(v.strip()) for k, v in (item.split("=", 1) for item in env("PORTAL_KUBERNETES_EOL", "").split(",") if "=" in item)},
}
# Usage history: raw points, 5-minute and hourly averages are kept this many days.
METRICS_RAW_DAYS = env_int("PORTAL_METRICS_RAW_DAYS", 1)
METRICS_5M_DAYS = env_int("PORTAL_METRICS_5M_DAYS", 30)
METRICS_1H_DAYS = env_int("PORTAL_METRICS_1H_DAYS", 365)

# --- Kubernetes -------------------------------------------------------------------------------

KUBE_REQUEST_TIMEOUT = env_int("PORTAL_KUBE_TIMEOUT_SECONDS", 10)
# Kubernetes user "<prefix>user:<username>" and groups "<prefix>group:<group>" that RBAC names.
KUBE_IDENTITY_PREFIX = env("PORTAL_KUBE_IDENTITY_PREFIX", "corral:")
# The Kubernetes API proxy and the kubeconfigs that point at it.
PROXY_AUDIT_BODIES = env_bool("PORTAL_PROXY_AUDIT_BODIES", False)  # request bodies of writes (never secrets')
PROXY_TOKEN_RECHECK_SECONDS = env_int("PORTAL_PROXY_TOKEN_RECHECK_SECONDS", 5)
PROXY_DECISION_CACHE_SECONDS = env_int("PORTAL_PROXY_DECISION_CACHE_SECONDS", 2)
# A client that reads nothing of a streaming answer (a watch, logs -f) for this long is disconnected.
STALLED_CLIENT_SECONDS = env_int("PORTAL_STALLED_CLIENT_SECONDS", 60)
EXTERNAL_URL = env("PORTAL_EXTERNAL_URL", "").rstrip("/")  # the URL kubeconfigs name; default: the request's
TLS_CA_FILE = env("PORTAL_TLS_CA_FILE", "")  # CA of Corral's own certificate, put in kubeconfigs
KUBECONFIG_TOKEN_DAYS = env_int("PORTAL_KUBECONFIG_TOKEN_DAYS", 30)
SANDBOX_ROOT = Path(env("CORRAL_SANDBOX_ROOT", VAR_DIR / "sandboxes"))
# The largest sandbox anyone may provision through Corral (they run on Corral's own host).
SANDBOX_MAX_NODES = env_int("PORTAL_SANDBOX_MAX_NODES", 100)
# How long Corral follows Cluster API making, changing or deleting a cluster before it gives up.
CAPI_PROVISION_TIMEOUT = env_int("PORTAL_CAPI_PROVISION_TIMEOUT", 1800)
# Networks Corral may connect to for a cluster's API server (imports, health checks, syncs, watches,
# changes); denied wins.  Checked on the resolved address at connect time: clusters/kube/outbound.py.
# Denied by default: link-local (most clouds' metadata service) and AWS's IPv6 metadata address.
CLUSTER_ALLOWED_NETWORKS = env_networks("PORTAL_CLUSTER_ALLOWED_NETWORKS", "0.0.0.0/0,::/0")
CLUSTER_DENIED_NETWORKS = env_networks("PORTAL_CLUSTER_DENIED_NETWORKS", "169.254.0.0/16,fe80::/10,fd00:ec2::254/128")
if not CLUSTER_ALLOWED_NETWORKS:
    raise ImproperlyConfigured("PORTAL_CLUSTER_ALLOWED_NETWORKS is empty: Corral could connect to no cluster (unset it to allow every network)")

# Where alert notifiers may send (webhook, Slack, Teams, PagerDuty, Alertmanager URLs and SMTP
# hosts are typed in by cluster and project owners): every network but this host's own
# (loopback) and link-local / cloud metadata addresses.
NOTIFIER_ALLOWED_NETWORKS = env_networks("PORTAL_NOTIFIER_ALLOWED_NETWORKS", "0.0.0.0/0,::/0")
NOTIFIER_DENIED_NETWORKS = env_networks(
    "PORTAL_NOTIFIER_DENIED_NETWORKS", "127.0.0.0/8,::1/128,0.0.0.0/8,169.254.0.0/16,fe80::/10,fd00:ec2::254/128")

# --- Production hardening ---------------------------------------------------------------------

if PRODUCTION:
    SESSION_COOKIE_SECURE = env_bool("PORTAL_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_SSL_REDIRECT = env_bool("PORTAL_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("PORTAL_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("PORTAL_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        # Preloading is a commitment an operator makes on purpose, not a default.
        SILENCED_SYSTEM_CHECKS.append("security.W021")
    SESSION_COOKIE_HTTPONLY = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("PORTAL_LOG_LEVEL", "INFO")},
    # axes: the login's outcome and reason are logged by portal.accounts, with the name and address.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}

from portal.accounts.ldap_config import configure as _configure_ldap  # noqa: E402

_configure_ldap(globals())

"""Dockyard's one settings module: whatever differs between installs comes from the environment."""

import hashlib
import os
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from config import process_kind
from config.environment import (
    env_bool,
    env_choice,
    env_choices,
    env_database,
    env_fernet_keys,
    env_file_defaults,
    env_float,
    env_host_patterns,
    env_host_port,
    env_int,
    env_ip_address,
    env_list,
    env_origins,
    env_path,
    env_port_range,
    env_size,
    env_str,
    env_url,
    secret_key,
    url_origin,
    url_with_password,
)

BASE_DIR = Path(__file__).resolve().parent.parent
#: Mirrors, workspaces, logs, HAProxy's files and the SQLite file. (default: `./data`)
DATA_DIR = env_path("DOCKYARD_DATA_DIR", BASE_DIR / "data")
DATA_DIR.mkdir(parents=True, exist_ok=True)
# What `make up` ran with (scripts/up.sh writes it): the environment still wins.
env_file_defaults(DATA_DIR / "dockyard.env")

#: Django's debug pages.
DEBUG = env_bool("DOCKYARD_DEBUG", False)
#: Host names the web server answers. (default: `127.0.0.1,localhost,[::1]`)
ALLOWED_HOSTS = env_list("DOCKYARD_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
# Where forges and browsers reach this server; used in the webhook URLs we print and in links.
#: The URL forges and browsers use; its exact origin is the one browsers may write from.
PUBLIC_URL = env_url("DOCKYARD_PUBLIC_URL", "http://127.0.0.1:8000", schemes={"http", "https"})
# Browsers may send unsafe requests and open WebSockets only from these exact origins (scheme,
# host and port): a page of a deployed app on another port of the same host is another origin,
# though the browser hands it the same cookies.
#: Other origins the UI is served on (`https://ci.example.com, http://localhost:8000`).
DOCKYARD_PUBLIC_URL_ALIASES = env_origins("DOCKYARD_PUBLIC_URL_ALIASES")
TRUSTED_ORIGINS = [url_origin(PUBLIC_URL), *DOCKYARD_PUBLIC_URL_ALIASES]
CSRF_TRUSTED_ORIGINS = TRUSTED_ORIGINS

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "projects",
    "webhooks",
    "pipelines",
    "builds",
    "releases",
    "api",
    "operations",
    "audit",
    "monitoring",
    "web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Names who acts in each request, for the audit entries written while it is handled.
    "audit.middleware.request_actor_middleware",
    "config.request_mode.sync_request_stack",
]
# Before CSRF: an unsafe request from another origin is refused whatever token it carries.
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.csrf.CsrfViewMiddleware"),
    "config.origins.exact_origin_middleware",
)

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

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
    "default": {
        #: `postgres://user:pass@host:5432/name` in production. (default: SQLite in the data
        #: folder)
        **env_database("DATABASE_URL", f"sqlite:///{DATA_DIR / 'dockyard.sqlite3'}"),
        # Reused for a minute: opening a PostgreSQL connection per webhook costs more than
        # handling it.
        #: Seconds a worker's database connection is reused.
        "CONN_MAX_AGE": env_int("DOCKYARD_DB_CONN_MAX_AGE", 60),
    },
}
# The web process (config/asgi.py marks it) shares a pool of PostgreSQL connections among its
# requests. Under ASGI Django runs each request in a thread of its own, so a connection kept
# per thread is never reused and stays open after its thread is gone: under concurrent load
# PostgreSQL soon refuses new clients. Workers keep one connection each (a pool opened before
# Celery forks its children would be shared by them).
DB_POOL = process_kind.web
if DB_POOL and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django's pool requires it: the pool keeps them
    DATABASES["default"]["OPTIONS"] = {
        **DATABASES["default"].get("OPTIONS", {}),
        "pool": {
            "min_size": 1,
            #: PostgreSQL connections the web process shares among its requests.
            "max_size": env_int("DOCKYARD_DB_POOL_SIZE", 10, minimum=1),
            # A request waits this long for a free connection before it fails; /healthz too,
            # when the database is down (the pool logs why it cannot connect).
            "timeout": 3,
        },
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Webhook secrets, forge tokens, project secrets and notification URLs are encrypted in the
# database with the first of these Fernet keys and decrypted with any (config.encrypted_fields).
# None set: one is derived from SECRET_KEY, which then must never change.
#: Fernet keys (commas, spaces or one a line) that encrypt stored secrets; the first encrypts, all
#: decrypt. (default: derived from the secret key)
DOCKYARD_ENCRYPTION_KEYS = env_fernet_keys("DOCKYARD_ENCRYPTION_KEYS")
# A key generated into one host's data folder is that host's alone: with PostgreSQL (several
# hosts, one database) a second host could neither read the secrets the first stored nor
# accept its sessions. SQLite is one host's by nature.
#: Django's secret key (at least 32 characters), the same on every host; required with PostgreSQL.
#: (default: with SQLite, generated once into the data folder)
SECRET_KEY = secret_key(
    "DOCKYARD_SECRET_KEY",
    DATA_DIR,
    required_because=(
        "when the database is PostgreSQL: every host of an installation needs the same key "
        "to read the secrets stored in it"
        if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
        and not DOCKYARD_ENCRYPTION_KEYS
        else None
    ),
)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# Webhook payloads can be large (a push of many commits); anything above this is refused (413).
DATA_UPLOAD_MAX_MEMORY_SIZE = 25 * 1024 * 1024

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # DRF's tokens, kept as digests (api.tokens): the database holds no working token.
        "api.tokens.HashedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "api.pagination.StrictPageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "api.errors.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # Bots speak JSON; one request format keeps the schema and its validation simple.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Dockyard API",
    "DESCRIPTION": "Projects, runs, releases and environments of Dockyard, for bots and scripts.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"StageNameEnum": "pipelines.states.StageName"},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.schema.add_error_responses",
    ],
}
# /metrics for Prometheus: when set, a scrape must send "Authorization: Bearer <token>";
# when empty, /metrics is open to anyone who can reach the web server.
#: When set, `/metrics` wants `Authorization: Bearer <token>`. (default: empty, `/metrics` open)
DOCKYARD_METRICS_TOKEN = env_str("DOCKYARD_METRICS_TOKEN", "")
# Chat-ops from Slack: the app's signing secret (Basic Information > Signing Secret).
#: Verifies Slack's slash commands. (default: empty, Slack off)
DOCKYARD_SLACK_SIGNING_SECRET = env_str("DOCKYARD_SLACK_SIGNING_SECRET", "")

# Redis is the broker: whoever writes to it runs tasks as Dockyard. Its password comes apart
# from the URL, so that it can be a secret file (DOCKYARD_REDIS_PASSWORD_FILE).
REDIS_URL = url_with_password(
    #: The Celery broker and the Channels layer (`make up`: Dockyard's own Redis on 6380).
    env_url("REDIS_URL", "redis://127.0.0.1:6379/0", schemes={"redis", "rediss", "unix"}),
    #: Redis's password (`requirepass`), put into `REDIS_URL` unless it carries one.
    env_str("DOCKYARD_REDIS_PASSWORD", ""),
)

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    },
}

# Celery: tasks are acknowledged only when done, so a worker that dies mid-task gives the task
# back to the queue instead of losing it.
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
# Which task goes on which queue, and which queues a worker consumes: infrastructure.dispatch
# (config/celery.py reads it).
CELERY_TASK_DEFAULT_QUEUE = "builds"
# Redis redelivers a task that is not acknowledged within this time, even to a second worker
# while the first still runs it: keep it well above the longest stage.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6 * 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker runs its tasks on threads of one process: a stage mostly waits on the engine, git
# or the registry, and each forked pool process held its own copy of what the main one had
# loaded as soon as it ran a task (30-45 MB each, bench/soak.py). One interpreter also carries
# the housekeeping and app-log relay threads it already ran. `--pool processes` still gives a
# forking pool (Celery takes an explicit `--pool prefork` for its default, and so for this).
CELERY_WORKER_POOL = "threads"
# Only a forking pool replaces its processes: after this many tasks each, should GitPython or
# a long build have leaked.
CELERY_WORKER_MAX_TASKS_PER_CHILD = 50

# The Docker engine that builds and tests, and the registry that receives the images.
#: The engine that builds and tests (`unix://`, `tcp://`, `ssh://`).
DOCKER_HOST = env_url(
    "DOCKER_HOST", "unix:///var/run/docker.sock", schemes={"unix", "tcp", "ssh", "http", "https"}
)
# An engine on tcp:// is reached over TLS with a client certificate, as the docker CLI does:
# DOCKER_CERT_PATH holds ca.pem (the engines' CA), cert.pem and key.pem (Dockyard's client
# certificate). An engine on ssh:// is reached with the worker user's ssh set-up (~/.ssh/config,
# its keys or agent, and known_hosts: an unknown host key is refused).
#: `1`: engines on `tcp://` must present a certificate of DOCKER_CERT_PATH's CA, and Dockyard
#: presents its own.
DOCKER_TLS_VERIFY = env_bool("DOCKER_TLS_VERIFY", False)
#: The folder of `ca.pem`, `cert.pem` and `key.pem` for engines on `tcp://`. (default: `~/.docker`)
DOCKER_CERT_PATH = env_path("DOCKER_CERT_PATH", Path.home() / ".docker")
#: Where images are pushed (`host[:port]`).
DOCKYARD_REGISTRY = env_host_port("DOCKYARD_REGISTRY", "127.0.0.1:5000")
# The registry's account: pushes, pulls and cache look-ups all log in with it.
#: The registry's login, for every push, pull and cache look-up (with the password, or neither).
DOCKYARD_REGISTRY_USERNAME = env_str("DOCKYARD_REGISTRY_USERNAME", "")
#: The registry login's password.
DOCKYARD_REGISTRY_PASSWORD = env_str("DOCKYARD_REGISTRY_PASSWORD", "")
if bool(DOCKYARD_REGISTRY_USERNAME) != bool(DOCKYARD_REGISTRY_PASSWORD):
    raise ImproperlyConfigured(
        "set both DOCKYARD_REGISTRY_USERNAME and DOCKYARD_REGISTRY_PASSWORD, or neither"
    )
# Dockyard's own requests to the registry (cache look-ups, tagging, upstream checks) go over
# TLS verified with this bundle; a registry on a loopback address is plain HTTP without one.
# The engines push and pull themselves: each engine host trusts the same CA in
# /etc/docker/certs.d/<registry>/ca.crt.
#: PEM bundle of the CA that signed the registry's certificate (`https://` even on loopback).
#: (default: the system's CAs)
DOCKYARD_REGISTRY_CA_FILE = env_str("DOCKYARD_REGISTRY_CA_FILE", "")
if DOCKYARD_REGISTRY_CA_FILE and not Path(DOCKYARD_REGISTRY_CA_FILE).is_file():
    raise ImproperlyConfigured(
        f"DOCKYARD_REGISTRY_CA_FILE={DOCKYARD_REGISTRY_CA_FILE!r} is not a readable file"
    )
# A push that cannot reach the registry is tried this many times in all, waiting BACKOFF
# seconds after the first failure, doubling each time (at most 30 s between tries).
#: Pushes to a registry that cannot be reached are tried this many times in all ...
DOCKYARD_PUSH_ATTEMPTS = env_int("DOCKYARD_PUSH_ATTEMPTS", 5, minimum=1)
#: ... waiting this long after the first failure, doubling (at most 30 s).
DOCKYARD_PUSH_BACKOFF_SECONDS = env_float("DOCKYARD_PUSH_BACKOFF_SECONDS", 2.0, minimum=0.0)
# Repositories on this machine's disk (paths, file:// URLs) are refused unless an operator
# allows them: the demo and the tests do.
#: Allow repositories on this machine's disk (`make up`: true).
DOCKYARD_ALLOW_LOCAL_REPOSITORIES = env_bool("DOCKYARD_ALLOW_LOCAL_REPOSITORIES", False)
# The hosts repositories may be cloned from (globs: "github.com *.example.org"); git is never
# pointed at any other, whatever a project or a webhook says.
#: Hosts repositories may be cloned from: globs, spaces or commas between (`github.com
#: *.corp.example`).
DOCKYARD_ALLOWED_REPOSITORY_HOSTS = env_host_patterns("DOCKYARD_ALLOWED_REPOSITORY_HOSTS", ["*"])
DOCKYARD_MIRRORS_DIR = DATA_DIR / "mirrors"
# Test containers have no network unless an operator gives one: "host" lets a project whose
# operator allowed it (Project.test_network_allowed) run its tests on the host's network,
# where everything listening on the host's addresses is in reach.
#: `host` lets projects an operator allows run tests on the host's network; `none` gives tests no
#: network.
DOCKYARD_TEST_NETWORK = env_choice("DOCKYARD_TEST_NETWORK", "none", ("none", "host"))
# Ceilings on what a dockyard.yml may ask for its test container; above one, config fails.
#: The most memory a `dockyard.yml` may ask for its test container.
DOCKYARD_TEST_MAX_MEMORY = env_size("DOCKYARD_TEST_MAX_MEMORY", "4g")
#: The most processes a test container may ask for.
DOCKYARD_TEST_MAX_PIDS = env_int("DOCKYARD_TEST_MAX_PIDS", 4096, minimum=16)
#: The most CPUs a test container may ask for. (default: the machine's CPUs)
DOCKYARD_TEST_MAX_CPUS = env_float(
    "DOCKYARD_TEST_MAX_CPUS", float(os.cpu_count() or 1), minimum=0.01
)
#: The longest test timeout, in seconds, a `dockyard.yml` may ask for. (default: `86400`)
DOCKYARD_TEST_MAX_TIMEOUT = env_int("DOCKYARD_TEST_MAX_TIMEOUT", 24 * 3600, minimum=1)
# Deployed apps listen on their host's address, never on the UI's host: a browser sends a
# host's cookies to every port of it, so an app on the UI's host would receive the UI's
# session. This is the address of the "local" host a one-machine install deploys to.
#: Where the local host's apps and frontends listen; never the UI's host.
DOCKYARD_APP_ADDRESS = env_ip_address("DOCKYARD_APP_ADDRESS", "127.0.0.2")
if urlsplit(PUBLIC_URL).hostname == DOCKYARD_APP_ADDRESS:
    raise ImproperlyConfigured(
        f"DOCKYARD_APP_ADDRESS={DOCKYARD_APP_ADDRESS} is the host of DOCKYARD_PUBLIC_URL: "
        "browsers would hand every deployed app the UI's cookies; give apps another address"
    )
# Each host runs an HAProxy, as a container Dockyard starts through the host's engine: one
# frontend per environment on the host's address, from the first range (the same port on
# every host of the environment); each environment's two slots listen on ports from the second.
#: The image of the hosts' HAProxy: it needs `/usr/sbin/haproxy`, `/usr/bin/socat` and
#: `/bin/sh`. (default: one Dockyard builds from this worker's own haproxy, socat and busybox)
DOCKYARD_PROXY_IMAGE = env_str("DOCKYARD_PROXY_IMAGE", "")
#: Ports of the environments' frontends (each host's HAProxy, on the host's address).
DOCKYARD_FRONTEND_PORTS = env_port_range("DOCKYARD_FRONTEND_PORTS", "9100-9199")
#: Ports of the blue and green slots' containers.
DOCKYARD_SLOT_PORTS = env_port_range("DOCKYARD_SLOT_PORTS", "9200-9399")
# Stopped containers kept per environment for an instant rollback.
#: Stopped containers kept per environment for rollbacks.
DOCKYARD_KEEP_CONTAINERS = env_int("DOCKYARD_KEEP_CONTAINERS", 3, minimum=1)
# Request metrics (releases.traffic): a deploy worker reads each host's HAProxy request log
# every TRAFFIC_SAMPLE_SECONDS into samples, keeps TRAFFIC_RECENT_MINUTES of them, rolls older
# ones up per minute, and keeps those TRAFFIC_RETENTION_DAYS. Release watches are judged then.
#: Seconds between two reads of the hosts' request logs (0: no request metrics, no watches).
DOCKYARD_TRAFFIC_SAMPLE_SECONDS = env_float("DOCKYARD_TRAFFIC_SAMPLE_SECONDS", 5.0, minimum=0)
#: Minutes of request samples kept at full resolution before they are rolled up per minute.
DOCKYARD_TRAFFIC_RECENT_MINUTES = env_int("DOCKYARD_TRAFFIC_RECENT_MINUTES", 30, minimum=1)
#: Days per-minute request metrics are kept.
DOCKYARD_TRAFFIC_RETENTION_DAYS = env_int("DOCKYARD_TRAFFIC_RETENTION_DAYS", 14, minimum=1)
DOCKYARD_WORKSPACES_DIR = DATA_DIR / "workspaces"
# Retention (operations.retention). Finished runs' logs go after LOG_RETENTION_DAYS, except
# each project's newest LOG_RETENTION_RUNS runs; runs, stages and events (the timeline) stay.
# Local images of Dockyard's projects go after IMAGE_RETENTION_HOURS unless a release an
# environment serves or may roll back to, or the newest build's base cache, needs them.
#: Finished runs' logs are deleted after this many days (runs, stages and events stay).
DOCKYARD_LOG_RETENTION_DAYS = env_int("DOCKYARD_LOG_RETENTION_DAYS", 30, minimum=1)
#: Each project's newest runs that keep their logs whatever their age.
DOCKYARD_LOG_RETENTION_RUNS = env_int("DOCKYARD_LOG_RETENTION_RUNS", 20, minimum=0)
#: Unused local images of Dockyard's projects are removed after this many hours.
DOCKYARD_IMAGE_RETENTION_HOURS = env_int("DOCKYARD_IMAGE_RETENTION_HOURS", 72, minimum=1)
#: Test caches (`test.cache` volumes) no run used for this many days are removed.
DOCKYARD_CACHE_RETENTION_DAYS = env_int("DOCKYARD_CACHE_RETENTION_DAYS", 14, minimum=1)
#: Webhook deliveries (headers and raw bodies) acted on are deleted after this many days; the
#: runs they started stay.
DOCKYARD_DELIVERY_RETENTION_DAYS = env_int("DOCKYARD_DELIVERY_RETENTION_DAYS", 30, minimum=1)
#: An API write's Idempotency-Key is remembered this many hours: a retry within them gets the
#: first answer back, one after them is a new request.
DOCKYARD_IDEMPOTENCY_RETENTION_HOURS = env_int(
    "DOCKYARD_IDEMPOTENCY_RETENTION_HOURS", 24, minimum=1
)
# What Dockyard labels its containers with (dockyard.managed=<this>): start-up clean-up and
# retention touch only their own installation's containers on a shared engine.
#: The `dockyard.managed` label value on this installation's containers. (default: from the data
#: folder's path)
DOCKYARD_INSTANCE = env_str(
    "DOCKYARD_INSTANCE", hashlib.sha256(str(DATA_DIR).encode()).hexdigest()[:12]
)

# Lost work. A worker refreshes the heartbeat of the stage or deployment it carries every
# HEARTBEAT seconds; one silent for LOST_AFTER seconds has lost its worker, and the reaper
# (every REAP_INTERVAL seconds) starts it again, at most ATTEMPTS times in all, then fails it.
# A pending stage or queued deployment whose message the broker no longer holds (Redis
# restarted) is sent again after LOST_AFTER seconds.
#: How often a worker says it still carries a stage or deployment.
DOCKYARD_HEARTBEAT_SECONDS = env_float("DOCKYARD_HEARTBEAT_SECONDS", 5.0, minimum=0.1)
#: Silence after which that work counts as lost; also how long a queued task may be missing from
#: the broker.
DOCKYARD_LOST_AFTER_SECONDS = env_float("DOCKYARD_LOST_AFTER_SECONDS", 60.0, minimum=1.0)
#: How often each worker's housekeeper looks for lost work and checks the proxy.
DOCKYARD_REAP_INTERVAL_SECONDS = env_float("DOCKYARD_REAP_INTERVAL_SECONDS", 15.0, minimum=0.5)
#: Times a stage or deployment is started in all when workers keep being lost.
DOCKYARD_ATTEMPTS = env_int("DOCKYARD_ATTEMPTS", 2, minimum=1)
# Each worker reconciles at start and then runs the housekeeper (operations.housekeeping).
#: `false` runs a worker without start-up reconciliation and housekeeping.
DOCKYARD_HOUSEKEEPING = env_bool("DOCKYARD_HOUSEKEEPING", True)
#: How often each worker prunes (retention).
DOCKYARD_PRUNE_INTERVAL_SECONDS = env_float("DOCKYARD_PRUNE_INTERVAL_SECONDS", 3600.0, minimum=1.0)
# What a worker does decides which queues it consumes and which chores its housekeeper runs
# (operations.housekeeping): a build host checks out, builds, tests and publishes, and cleans
# its own engine and disk; a deploy host makes releases, deploys and keeps HAProxy. The chores
# of the whole installation (the reaper, upstream checks, pruning logs) run on one worker at a
# time, whichever holds their lock. Every worker sends notifications.
#: `build`, `deploy` or both (commas between): the queues this worker consumes and its chores.
#: (default: `build,deploy`)
DOCKYARD_WORKER_ROLES = env_choices(
    "DOCKYARD_WORKER_ROLES", ("build", "deploy"), ("build", "deploy")
)
# A run's stages go one after the other. The worker that ends one may carry on with the next at
# once: the run's images are already on its engine, and the next stage does not wait for a trip
# through the broker (the reaper sends the stage to the broker should that worker die first).
#: `false`: each next stage goes through the broker to whichever build worker is free.
DOCKYARD_STAGES_ON_ONE_WORKER = env_bool("DOCKYARD_STAGES_ON_ONE_WORKER", True)
# Bases that build FROM an image outside the stack (`FROM debian:12`) record the digest it
# resolved to; the watch asks the registry for each such reference's digest now, and when one
# moved, every project whose stack uses it runs its default branch again.
#: How often the installation asks registries whether an upstream image moved; `0`: never (run
#: `manage.py checkupstream` instead).
DOCKYARD_UPSTREAM_CHECK_SECONDS = env_float("DOCKYARD_UPSTREAM_CHECK_SECONDS", 3600.0, minimum=0.0)
# The build stage pushes what it built as a candidate (tagged by run, not by branch or sha);
# candidates are deleted from the registry this long after their run ended (what was published
# stays under its own tags).
#: Hours after its run ended that a run's candidate images are deleted from the registry.
DOCKYARD_CANDIDATE_RETENTION_HOURS = env_float(
    "DOCKYARD_CANDIDATE_RETENTION_HOURS", 48.0, minimum=0.0
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    #: The log level of every process (`DEBUG`, `INFO`, `WARNING`, ...).
    "root": {"handlers": ["console"], "level": env_str("DOCKYARD_LOG_LEVEL", "INFO").upper()},
    # Even at DEBUG: urllib3 logs each request's path there, and an incoming-webhook URL
    # (Slack's) carries its secret in the path.
    "loggers": {"urllib3": {"level": "INFO"}},
}

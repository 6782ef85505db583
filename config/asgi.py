"""The ASGI entry point that uvicorn serves (scripts/web.sh)."""

import gc
import os
from pathlib import Path
from typing import cast

from django.core.asgi import get_asgi_application

from config import process_kind

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Before the settings load: this process's requests share a pool of database connections
# (config/settings.py says why).
process_kind.web = True
django_asgi_app = get_asgi_application()

# Imported once the apps are loaded.
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.template import engines  # noqa: E402
from django.urls import get_resolver, re_path  # noqa: E402
from rest_framework.settings import DEFAULTS, api_settings  # noqa: E402

from config.origins import exact_origin_websockets  # noqa: E402
from web.routing import websocket_urlpatterns  # noqa: E402
from webhooks.endpoint import webhook_asgi_app  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": URLRouter(
            [
                # The webhook hot path skips Django's request machinery (webhooks/endpoint.py).
                re_path(r"^webhooks/", webhook_asgi_app),  # type: ignore[arg-type]
                re_path(r"", django_asgi_app),  # type: ignore[arg-type]
            ]
        ),
        # Logged-in browsers of this site only: the session cookie authenticates, the exact
        # Origin check keeps other pages (another site, another port of this host) from
        # opening the socket with it.
        "websocket": exact_origin_websockets(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)


def _load_what_requests_would_load() -> None:
    """Import every view and compile every page template now, not at the first request that
    needs it: gunicorn forks the web processes from this one (config/web_worker.py), and what
    is loaded before the fork is shared by all of them. Touches no database or Redis: a
    connection opened here would be shared by the forked processes."""
    get_resolver().reverse_dict  # noqa: B018 (populates the resolver: imports every view)
    for name in cast(dict[str, object], DEFAULTS):  # typed as object by its stubs
        getattr(api_settings, name)  # imports the REST framework's renderers, parsers, ...
    engine = engines["django"]
    for folder in engine.dirs:
        for path in Path(folder).rglob("*.html"):
            engine.get_template(str(path.relative_to(folder)))


_load_what_requests_would_load()
# Everything loaded so far (Django, the apps, the views, the templates) lives as long as the
# process: keep it out of the garbage collector's full passes, which otherwise stall every
# request for ~100 ms every few seconds under load, and write to every object they visit, which
# would give each forked process its own copy of pages it shares.
gc.freeze()

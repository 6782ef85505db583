"""Which browser origins may act on Dockyard: exactly the UI's own (DOCKYARD_PUBLIC_URL and its
aliases), scheme, host and port.

Cookies are per host, not per port: a browser logged in to the UI on 127.0.0.1:8000 also hands
its session to a page on 127.0.0.1:9100. Django's CSRF check accepts an Origin that matches the
request's Host header, and Channels' AllowedHostsOriginValidator ignores the port; both are
narrowed here to the exact origins in settings.TRUSTED_ORIGINS.
"""

from collections.abc import Callable

from channels.security.websocket import OriginValidator
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def exact_origin_middleware(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    """Refuse an unsafe request that a browser sent from another origin (403, naming it).

    Requests without an Origin header (bots with API tokens, forges, Slack) are left to the
    usual checks: browsers send Origin with every cross-origin and same-origin POST.
    """
    trusted = frozenset(settings.TRUSTED_ORIGINS)

    def middleware(request: HttpRequest) -> HttpResponse:
        origin = request.headers.get("Origin")
        if request.method not in SAFE_METHODS and origin is not None and origin not in trusted:
            return JsonResponse(
                {
                    "error": {
                        "code": "origin_refused",
                        "message": f"requests from origin {origin!r} are refused: this server "
                        f"takes them only from {', '.join(sorted(trusted))} "
                        "(DOCKYARD_PUBLIC_URL, DOCKYARD_PUBLIC_URL_ALIASES)",
                    }
                },
                status=403,
            )
        return get_response(request)

    return middleware


def exact_origin_websockets(application: object) -> OriginValidator:
    """Wrap the WebSocket router: a handshake is accepted only from a trusted origin."""
    return OriginValidator(application, list(settings.TRUSTED_ORIGINS))

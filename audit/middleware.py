"""Every HTTP request names its actor, for the audit entries written while it is handled."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from audit.actors import acting_as, request_actor


def request_actor_middleware(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    """Sync only, like config.request_mode.sync_request_stack: the context variable it sets
    must be the one the view runs in, so the two must not be split across threads."""

    def middleware(request: HttpRequest) -> HttpResponse:
        with acting_as(lambda: request_actor(request)):
            return get_response(request)

    return middleware

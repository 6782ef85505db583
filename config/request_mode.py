"""How Django runs a request under ASGI."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


def sync_request_stack(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    """The innermost middleware; sync only, on purpose.

    Under ASGI Django runs each middleware in the mode of the handler it wraps. Below a sync-only
    middleware the stack is sync, so the whole request (every middleware and the view, all sync
    code) runs in one worker thread, instead of hopping between the event loop and a thread for
    each middleware hook: about half a millisecond a hop, most of a webhook's time on this
    2-core machine. WebSocket consumers are not affected.
    """

    def middleware(request: HttpRequest) -> HttpResponse:
        return get_response(request)

    return middleware

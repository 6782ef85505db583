"""Health checks and metrics: for load balancers, orchestrators and Prometheus, not people."""

import hmac

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from monitoring.health import BrokerUnreachable, web_problems, workers_answering
from monitoring.metrics import metrics_exposition


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """200 {"status": "ok"} when the database and Redis answer; 503 naming what failed."""
    problems = web_problems()
    if problems:
        return JsonResponse({"status": "unavailable", "failed": problems}, status=503)
    return JsonResponse({"status": "ok"})


@never_cache
def healthz_worker(request: HttpRequest) -> JsonResponse:
    """200 with the workers that answered a ping; 503 when none did or the broker is down."""
    try:
        workers = workers_answering()
    except BrokerUnreachable as error:
        return JsonResponse({"status": "unavailable", "failed": {"broker": str(error)}}, status=503)
    if not workers:
        return JsonResponse(
            {"status": "unavailable", "failed": {"workers": "no worker answered"}}, status=503
        )
    return JsonResponse({"status": "ok", "workers": workers})


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus' text format; behind a bearer token when DOCKYARD_METRICS_TOKEN is set."""
    token = settings.DOCKYARD_METRICS_TOKEN
    if token and not _bearer_token_is(request, token):
        response = HttpResponse("a bearer token is needed\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="dockyard-metrics"'
        return response
    try:
        body = metrics_exposition()
    except DatabaseError as error:
        return HttpResponse(f"database: {error}\n", status=503, content_type="text/plain")
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


def _bearer_token_is(request: HttpRequest, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # Constant time: how much of a guess matched must not show in how long the answer takes.
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )

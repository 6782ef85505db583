"""An environment's app logs outside the live view: the newest lines as a plain-text file."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404

from releases.app_logs import (
    DOWNLOAD_LINES,
    AppLogRefused,
    AppLogUnavailable,
    app_log_line_text,
    app_log_read,
    log_since_parsed,
    search_refusal,
)
from releases.models import Environment


@login_required
def environment_app_log_download(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    """The newest lines the engines hold (after ?since=, on ?host=, holding ?search=), secrets
    masked, one line each: when, host, slot, release, stream, text."""
    environment = get_object_or_404(
        Environment.objects.select_related("project"), project__slug=slug, name=name
    )
    search = request.GET.get("search", "")
    if refusal := search_refusal(search):
        return _bad_request(f"search: {refusal}")
    try:
        since = log_since_parsed(request.GET["since"]) if request.GET.get("since") else None
    except ValueError as error:
        return _bad_request(f"since: {error}")
    try:
        page = app_log_read(
            environment,
            since=since,
            host=request.GET.get("host", ""),
            search=search,
            tail=DOWNLOAD_LINES,
        )
    except AppLogRefused as refusal:
        return _bad_request(f"host: {refusal}")
    except AppLogUnavailable as unavailable:
        return HttpResponse(
            f"{unavailable}\n", status=503, content_type="text/plain; charset=utf-8"
        )
    response = HttpResponse(
        "".join(app_log_line_text(line) for line in page.lines),
        content_type="text/plain; charset=utf-8",
    )
    filename = f"{environment.project.slug}-{environment.name}-app.log"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _bad_request(message: str) -> HttpResponse:
    return HttpResponseBadRequest(f"{message}\n", content_type="text/plain; charset=utf-8")

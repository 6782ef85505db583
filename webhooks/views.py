"""Webhook endpoints as Django views (the same answers as the ASGI fast path), and replays."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from projects.access import can_manage_projects
from webhooks.endpoint import TOO_LARGE, webhook_answer
from webhooks.models import Delivery
from webhooks.services import GITHUB, GITLAB, ForgeReader, delivery_replay


@csrf_exempt
@require_POST
def github(request: HttpRequest) -> JsonResponse:
    return _receive(request, GITHUB)


@csrf_exempt
@require_POST
def gitlab(request: HttpRequest) -> JsonResponse:
    return _receive(request, GITLAB)


def _receive(request: HttpRequest, reader: ForgeReader) -> JsonResponse:
    try:
        body = request.body
    except RequestDataTooBig:
        return JsonResponse({"error": TOO_LARGE}, status=413)
    status, answer = webhook_answer(
        reader=reader, headers=request.headers, body=body, content_type=request.content_type or ""
    )
    return JsonResponse(answer, status=status)


@login_required
@require_POST
def delivery_replay_view(request: HttpRequest, pk: int) -> HttpResponse:
    """The replay button of the project page."""
    delivery = get_object_or_404(Delivery.objects.select_related("project"), pk=pk)
    if not can_manage_projects(request.user) or delivery.project is None:
        raise PermissionDenied
    _, outcome = delivery_replay(delivery=delivery)
    messages.info(request, f"Delivery {delivery.delivery_id} replayed: {outcome.message}")
    return redirect("project-detail", slug=delivery.project.slug)

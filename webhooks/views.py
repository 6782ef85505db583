"""Webhook endpoints as Django views (the same answers as the ASGI fast path)."""

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from webhooks.endpoint import TOO_LARGE, webhook_answer
from webhooks.services import GITHUB, GITLAB, ForgeReader


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

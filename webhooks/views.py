"""Webhook endpoints: thin, they hand the raw request to the service and translate the answer."""

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from webhooks.services import WebhookRejected, github_delivery_receive


@csrf_exempt
@require_POST
def github(request: HttpRequest) -> JsonResponse:
    try:
        body = request.body
    except RequestDataTooBig:
        return JsonResponse({"error": "body too large"}, status=413)
    try:
        outcome = github_delivery_receive(
            headers=request.headers, body=body, content_type=request.content_type or ""
        )
    except WebhookRejected as rejection:
        return JsonResponse({"error": rejection.message}, status=rejection.status)
    answer: dict[str, object] = {"message": outcome.message}
    if outcome.run is not None:
        answer["run"] = request.build_absolute_uri(reverse("run-detail", args=[outcome.run.pk]))
    return JsonResponse(answer, status=outcome.status)

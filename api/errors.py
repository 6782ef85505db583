"""Every API error as JSON with a code and a human message: {"error": {"code", "message"}}."""

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler

from pipelines.states import IllegalTransition
from projects.services import ProjectError
from releases.app_logs import AppLogUnavailable
from releases.hosts import HostRefused
from releases.services import DeploymentRefused

# The domain's refusals and the HTTP answers they become.
DOMAIN_ERRORS: dict[type[Exception], tuple[int, str]] = {
    ProjectError: (status.HTTP_400_BAD_REQUEST, "invalid"),
    DeploymentRefused: (status.HTTP_409_CONFLICT, "deployment_refused"),
    HostRefused: (status.HTTP_400_BAD_REQUEST, "host_refused"),
    IllegalTransition: (status.HTTP_409_CONFLICT, "illegal_transition"),
    # No deploy worker answered for the engines.
    AppLogUnavailable: (status.HTTP_503_SERVICE_UNAVAILABLE, "app_logs_unavailable"),
}


class ApiConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class IdempotencyKeyReused(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"
    default_detail = "this Idempotency-Key was used for another request"


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    # Django's own 404 and 403 (get_object_or_404, ...) become DRF's, so they get our shape.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or None)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    for error_type, (status_code, code) in DOMAIN_ERRORS.items():
        if isinstance(exc, error_type):
            return Response({"error": {"code": code, "message": str(exc)}}, status=status_code)
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        message = "; ".join(
            f"{field}: {' '.join(str(item) for item in _as_list(problems))}"
            for field, problems in fields.items()
        )
        response.data = {"error": {"code": "invalid", "message": message, "fields": fields}}
    elif isinstance(exc, APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "error"
        response.data = {"error": {"code": code, "message": str(exc.detail)}}
    return response


def _as_list(value: object) -> list[object]:
    return value if isinstance(value, list) else [value]

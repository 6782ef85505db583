"""Page numbers: whole numbers from 1, or a 400 that says so (DRF takes ?page= as page 1)."""

from typing import Any

from django.db.models import QuerySet
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.views import APIView


class StrictPageNumberPagination(PageNumberPagination):
    def paginate_queryset(
        self, queryset: QuerySet[Any], request: Request, view: APIView | None = None
    ) -> list[Any] | None:
        raw = request.query_params.get(self.page_query_param)
        if raw is not None and not (raw.isdigit() and int(raw) > 0):
            raise ValidationError({self.page_query_param: "a whole number from 1"})
        return super().paginate_queryset(queryset, request, view)

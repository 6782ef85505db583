from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path

from api import views as api_views
from webhooks import views as webhook_views


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("webhooks/", include("webhooks.urls")),
    path("api/v1/", include("api.urls")),
    path("account/token/", api_views.token_page, name="api-token"),
    path(
        "deliveries/<int:pk>/replay/",
        webhook_views.delivery_replay_view,
        name="delivery-replay",
    ),
    path("", include("releases.urls")),
    path("", include("pipelines.urls")),
]

handler404 = "api.views.not_found"

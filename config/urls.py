from django.contrib import admin
from django.urls import include, path

from api import views as api_views
from monitoring import views as monitoring_views

urlpatterns = [
    path("healthz", monitoring_views.healthz, name="healthz"),
    path("healthz/worker", monitoring_views.healthz_worker, name="healthz-worker"),
    path("metrics", monitoring_views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("webhooks/", include("webhooks.urls")),
    path("api/v1/", include("api.urls")),
    path("account/token/", api_views.token_page, name="api-token"),
    path("", include("web.urls")),
]

handler404 = "api.views.not_found"

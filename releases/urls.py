from django.urls import path

from releases import views

urlpatterns = [
    path(
        "projects/<slug:slug>/environments/<str:name>/",
        views.environment_detail,
        name="environment-detail",
    ),
]

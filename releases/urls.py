from django.urls import path

from releases import views

urlpatterns = [
    path(
        "projects/<slug:slug>/environments/<str:name>/",
        views.environment_detail,
        name="environment-detail",
    ),
    path(
        "projects/<slug:slug>/environments/<str:name>/promote/",
        views.environment_promote_view,
        name="environment-promote",
    ),
    path(
        "projects/<slug:slug>/environments/<str:name>/rollback/",
        views.environment_rollback_view,
        name="environment-rollback",
    ),
]

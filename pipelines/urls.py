from django.urls import path

from pipelines import views

urlpatterns = [
    path("", views.runs, name="run-list"),
    path("runs/<int:pk>/", views.run_detail, name="run-detail"),
    path("runs/<int:pk>/cancel/", views.run_cancel_view, name="run-cancel"),
    path("projects/<slug:slug>/", views.project_detail, name="project-detail"),
]

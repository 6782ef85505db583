from django.urls import path

from pipelines import views

urlpatterns = [
    path("", views.runs, name="run-list"),
    path("runs/<int:pk>/", views.run_detail, name="run-detail"),
]

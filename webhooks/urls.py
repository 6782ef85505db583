from django.urls import path

from webhooks import views

urlpatterns = [
    path("github/", views.github, name="webhook-github"),
    path("gitlab/", views.gitlab, name="webhook-gitlab"),
]

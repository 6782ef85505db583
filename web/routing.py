from django.urls import path

from web.consumers import AppLogConsumer, RunLogConsumer

websocket_urlpatterns = [
    path("ws/runs/<int:run_id>/", RunLogConsumer.as_asgi()),
    path("ws/environments/<int:environment_id>/logs/", AppLogConsumer.as_asgi()),
]

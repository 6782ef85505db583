from django.urls import path

from web.consumers import RunLogConsumer

websocket_urlpatterns = [
    path("ws/runs/<int:run_id>/", RunLogConsumer.as_asgi()),
]

"""Webhook deliveries on the project page: replay one."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from projects.access import require_project_manager
from webhooks.models import Delivery
from webhooks.services import delivery_replay


@login_required
@require_POST
def delivery_replay_view(request: HttpRequest, pk: int) -> HttpResponse:
    """The replay button of the project page."""
    delivery = get_object_or_404(Delivery.objects.select_related("project"), pk=pk)
    require_project_manager(request.user, to="replay deliveries")
    if delivery.project is None:
        raise Http404("the delivery's project was deleted")
    _, outcome = delivery_replay(delivery=delivery)
    messages.info(request, f"Delivery {delivery.delivery_id} replayed: {outcome.message}")
    return redirect("project-detail", slug=delivery.project.slug)

"""The environment page: what runs there now, and everything that was deployed there."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from releases.models import Environment
from releases.selectors import environment_history


@login_required
def environment_detail(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    environment = get_object_or_404(
        Environment.objects.select_related("project", "current_release", "after"),
        project__slug=slug,
        name=name,
    )
    return render(
        request,
        "releases/environment_detail.html",
        {"environment": environment, "history": environment_history(environment)[:100]},
    )

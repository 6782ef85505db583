"""The environment pages: what runs there, its history, and promote or roll back behind a
confirmation that says exactly what will happen."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from releases.access import can_deploy_to, require_deployer
from releases.models import Environment, Release
from releases.selectors import (
    active_deployment,
    environment_history,
    promotable_releases,
    rollback_target,
)
from releases.services import (
    DeploymentRefused,
    environment_promote,
    environment_rollback,
)


@login_required
def environment_detail(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    environment = _environment(slug, name)
    return render(
        request,
        "web/environment_detail.html",
        {
            "environment": environment,
            "history": environment_history(environment)[:100],
            "active": active_deployment(environment),
            "rollback": rollback_target(environment),
            "can_deploy": can_deploy_to(request.user, environment),
        },
    )


@login_required
def environment_promote_view(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    environment = _environment(slug, name)
    require_deployer(request.user, environment)
    candidates = promotable_releases(environment)
    chosen = _chosen_release(request, environment)
    if request.method == "POST" and chosen is not None and request.POST.get("confirm") == "yes":
        try:
            environment_promote(environment=environment, release=chosen, user=request.user)
        except DeploymentRefused as refusal:
            messages.error(request, str(refusal))
        return redirect("environment-detail", slug=slug, name=name)
    return render(
        request,
        "web/environment_promote.html",
        {"environment": environment, "candidates": candidates[:20], "chosen": chosen},
    )


@login_required
def environment_rollback_view(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    environment = _environment(slug, name)
    require_deployer(request.user, environment)
    target = rollback_target(environment)
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        try:
            environment_rollback(environment=environment, user=request.user)
        except DeploymentRefused as refusal:
            messages.error(request, str(refusal))
        return redirect("environment-detail", slug=slug, name=name)
    return render(
        request,
        "web/environment_rollback.html",
        {"environment": environment, "target": target},
    )


def _environment(slug: str, name: str) -> Environment:
    return get_object_or_404(
        Environment.objects.select_related("project", "current_release", "after"),
        project__slug=slug,
        name=name,
    )


def _chosen_release(request: HttpRequest, environment: Environment) -> Release | None:
    number = (request.POST if request.method == "POST" else request.GET).get("release", "")
    if not number.isdigit():
        return None
    # Only a release that may go here can be chosen, whatever the form sent.
    return promotable_releases(environment).filter(number=int(number)).first()

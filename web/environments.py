"""The environment pages: what runs there, its history, and promote or roll back behind a
confirmation that says exactly what will happen."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from releases.access import can_deploy_to, require_deployer
from releases.models import Environment, Release
from releases.selectors import (
    promotable_releases,
    rollback_candidates,
    rollback_plan,
    rollback_target,
)
from releases.services import (
    DeploymentRefused,
    environment_promote,
    environment_rollback,
)
from web.selectors import active_deployment_row, environment_history_rows


@login_required
def environment_detail(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    environment = _environment(slug, name)
    return render(
        request,
        "web/environment_detail.html",
        {
            "environment": environment,
            "history": environment_history_rows(environment),
            "active": active_deployment_row(environment),
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
    candidates = rollback_candidates(environment)
    # The release that served before the current one, unless the reader picked another.
    number = _release_number(request)
    target = next((c for c in candidates if number is None or c.release.number == number), None)
    if request.method == "POST" and request.POST.get("confirm") == "yes" and target is not None:
        try:
            environment_rollback(environment=environment, release=target.release, user=request.user)
        except DeploymentRefused as refusal:
            messages.error(request, str(refusal))
        return redirect("environment-detail", slug=slug, name=name)
    return render(
        request,
        "web/environment_rollback.html",
        {
            "environment": environment,
            "candidates": candidates,
            "target": target,
            "plan": rollback_plan(environment, target) if target is not None else [],
        },
    )


def _environment(slug: str, name: str) -> Environment:
    return get_object_or_404(
        Environment.objects.select_related("project", "current_release", "after"),
        project__slug=slug,
        name=name,
    )


def _release_number(request: HttpRequest) -> int | None:
    number = (request.POST if request.method == "POST" else request.GET).get("release", "")
    return int(number) if number.isdigit() else None


def _chosen_release(request: HttpRequest, environment: Environment) -> Release | None:
    number = _release_number(request)
    if number is None:
        return None
    # Only a release that may go here can be chosen, whatever the form sent.
    return promotable_releases(environment).filter(number=number).first()

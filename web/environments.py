"""The environment pages: its health (traffic, watch, banners), what runs there, its history;
promote, roll back, restart, stop, start and scale behind a confirmation that says exactly what
will happen."""

import re
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import mark_safe

from projects.spec import MAX_REPLICAS
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
    environment_operate,
    environment_promote,
    environment_rollback,
    environment_scale,
)
from releases.states import DeploymentKind
from releases.traffic_selectors import (
    TRAFFIC_MINUTES_DEFAULT,
    environment_replicas,
    environment_traffic,
    environment_watch,
)
from web.selectors import active_deployment_row, environment_history_rows
from web.traffic_charts import traffic_charts


@dataclass(frozen=True)
class Span:
    minutes: int
    label: str


# The spans the health charts offer.
SPANS = (
    Span(15, "15 min"),
    Span(60, "1 h"),
    Span(6 * 60, "6 h"),
    Span(24 * 60, "24 h"),
    Span(7 * 24 * 60, "7 d"),
)
OPERATIONS = (DeploymentKind.RESTART, DeploymentKind.STOP, DeploymentKind.START)
_WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")


@login_required
def environment_detail(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    environment = _environment(slug, name)
    context: dict[str, Any] = {
        "environment": environment,
        "history": environment_history_rows(environment),
        "active": active_deployment_row(environment),
        "rollback": rollback_target(environment),
        "can_deploy": can_deploy_to(request.user, environment),
        "replicas": environment_replicas(environment),
        "max_replicas": MAX_REPLICAS,
    }
    # While a deployment runs htmx takes only #environment from this page, every second; the
    # health section refreshes itself (environment_health_view).
    if not request.headers.get("HX-Request"):
        context.update(_health(request, environment))
    return render(request, "web/environment_detail.html", context)


@login_required
def environment_health_view(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    """The environment page's health section alone: what htmx swaps in every few seconds."""
    environment = _environment(slug, name)
    return render(
        request,
        "web/environment_health.html",
        {"environment": environment, **_health(request, environment)},
    )


def _health(request: HttpRequest, environment: Environment) -> dict[str, Any]:
    number = request.GET.get("minutes", "")
    minutes = int(number) if _WHOLE_NUMBER.fullmatch(number) else TRAFFIC_MINUTES_DEFAULT
    if minutes not in {span.minutes for span in SPANS}:
        minutes = TRAFFIC_MINUTES_DEFAULT
    traffic = environment_traffic(environment, minutes=minutes)
    return {
        "traffic": traffic,
        # Every text in them is escaped by the renderer.
        "charts": [
            {"key": chart.key, "title": chart.title, "svg": mark_safe(chart.svg)}
            for chart in traffic_charts(traffic)
        ],
        "watch": environment_watch(environment),
        "spans": SPANS,
    }


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


@login_required
def environment_operate_view(
    request: HttpRequest, slug: str, name: str, kind: DeploymentKind
) -> HttpResponse:
    """Restart, stop or start the environment: what it will do, then, confirmed, do it."""
    environment = _environment(slug, name)
    require_deployer(request.user, environment)
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        try:
            environment_operate(environment=environment, kind=kind, user=request.user)
        except DeploymentRefused as refusal:
            messages.error(request, str(refusal))
        return redirect("environment-detail", slug=slug, name=name)
    return render(
        request,
        "web/environment_operate.html",
        {
            "environment": environment,
            "kind": kind,
            "hosts": list(environment.hosts.order_by("name")),
            "replicas": environment_replicas(environment),
        },
    )


@login_required
def environment_scale_view(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    """Run another number of containers per host: how many, what that means, then do it."""
    environment = _environment(slug, name)
    require_deployer(request.user, environment)
    asked = (request.POST if request.method == "POST" else request.GET).get("replicas", "")
    replicas = int(asked) if _WHOLE_NUMBER.fullmatch(asked) else None
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        try:
            if replicas is None:
                raise DeploymentRefused(f"replicas must be a whole number, not {asked!r}")
            environment_scale(environment=environment, replicas=replicas, user=request.user)
        except DeploymentRefused as refusal:
            messages.error(request, str(refusal))
        return redirect("environment-detail", slug=slug, name=name)
    problem = ""
    if asked and (replicas is None or not 1 <= replicas <= MAX_REPLICAS):
        problem = f"replicas per host must be a whole number from 1 to {MAX_REPLICAS}"
        replicas = None
    hosts = list(environment.hosts.order_by("name"))
    return render(
        request,
        "web/environment_operate.html",
        {
            "environment": environment,
            "kind": DeploymentKind.SCALE,
            "hosts": hosts,
            "replicas": environment_replicas(environment),
            "chosen": replicas,
            "problem": problem,
            "max_replicas": MAX_REPLICAS,
            "batch": environment.batch_size(len(hosts)),
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
    # ASCII digits only: str.isdigit() would pass "²", which int() refuses.
    return int(number) if _WHOLE_NUMBER.fullmatch(number) else None


def _chosen_release(request: HttpRequest, environment: Environment) -> Release | None:
    number = _release_number(request)
    if number is None:
        return None
    # Only a release that may go here can be chosen, whatever the form sent.
    return promotable_releases(environment).filter(number=number).first()

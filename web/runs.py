"""The pages of runs: the list, a run's page, and its cancel and retry buttons."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from pipelines.access import can_control_runs, require_run_controller
from pipelines.models import PipelineRun
from pipelines.selectors import run_list
from pipelines.services import run_cancel, run_retry
from pipelines.states import RUN_FINAL_STATES
from web.selectors import (
    commit_url,
    run_by_number,
    run_cancellation,
    run_failure,
    run_test_report,
)

RUNS_PER_PAGE = 50


@login_required
def runs(request: HttpRequest) -> HttpResponse:
    page = Paginator(run_list(), RUNS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "web/run_list.html", {"page": page})


@login_required
def run_detail(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    run = run_or_404(slug, number)
    failure = run_failure(run)
    return render(
        request,
        "web/run_detail.html",
        {
            "run": run,
            "stages": list(run.stages.all()),
            "layers": run.layers.all(),
            "final": run.status in RUN_FINAL_STATES,
            "failure": failure,
            "tests": run_test_report(run),
            "cancellation": run_cancellation(run),
            "commit_url": commit_url(run.project, run.commit_sha),
            "can_control": can_control_runs(request.user),
        },
    )


@login_required
def run_by_id(request: HttpRequest, pk: int, then: str = "") -> HttpResponse:
    """A run by its database id, for the links handed out before runs were addressed by
    project and number (chat messages, commit statuses): to where it lives now."""
    run = get_object_or_404(PipelineRun.objects.select_related("project"), pk=pk)
    return redirect(run.get_absolute_url() + then, permanent=True)


@login_required
@require_POST
def run_cancel_view(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    run = run_or_404(slug, number)
    require_run_controller(request.user, to="cancel runs")
    if run_cancel(run=run, reason=f"cancelled by {request.user.get_username()}"):
        messages.success(request, f"You cancelled {run}.")
    else:
        messages.info(request, f"{run} had already ended ({run.status}).")
    return redirect(run)


@login_required
@require_POST
def run_retry_view(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    run = run_or_404(slug, number)
    require_run_controller(request.user, to="retry runs")
    return redirect(run_retry(run=run))


def run_or_404(slug: str, number: int) -> PipelineRun:
    try:
        return run_by_number(slug, number)
    except PipelineRun.DoesNotExist:
        raise Http404(f"{slug} has no run #{number}") from None

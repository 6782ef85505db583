"""The minimal runs pages: a list of runs with their stages, and one run with its logs."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from pipelines.models import PipelineRun, Project
from pipelines.selectors import project_base_graph, project_runs, run_list, run_stage_logs
from pipelines.services import run_cancel
from pipelines.states import RUN_FINAL_STATES
from releases.selectors import project_environments

RUNS_PER_PAGE = 50


@login_required
def runs(request: HttpRequest) -> HttpResponse:
    page = Paginator(run_list(), RUNS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "pipelines/run_list.html", {"page": page})


@login_required
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(run_list(), pk=pk)
    logs = run_stage_logs(run)
    stages = [(stage, logs.get(stage.pk, "")) for stage in run.stages.all()]
    return render(
        request,
        "pipelines/run_detail.html",
        {
            "run": run,
            "stages": stages,
            "layers": run.layers.all(),
            "final": run.status in RUN_FINAL_STATES,
        },
    )


@login_required
@require_POST
def run_cancel_view(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(PipelineRun, pk=pk)
    run_cancel(run=run, reason=f"cancelled by {request.user.get_username()}")
    return redirect("run-detail", pk=run.pk)


@login_required
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_object_or_404(Project, slug=slug)
    builds_on, used_by = project_base_graph(project)
    page = Paginator(project_runs(project), RUNS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "pipelines/project_detail.html",
        {
            "project": project,
            "page": page,
            "builds_on": builds_on,
            "used_by": used_by,
            "environments": project_environments(project),
        },
    )

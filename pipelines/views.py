"""The minimal runs pages: a list of runs with their stages, and one run with its logs."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from pipelines.selectors import run_list, run_stage_logs
from pipelines.states import RUN_FINAL_STATES

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
        {"run": run, "stages": stages, "final": run.status in RUN_FINAL_STATES},
    )

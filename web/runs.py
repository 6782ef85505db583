"""The web UI of projects and runs: thin views over the selectors and services."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from pipelines.access import can_control_runs, require_run_controller
from pipelines.models import PipelineRun
from pipelines.selectors import dashboard_projects, project_base_graph, project_runs, run_list
from pipelines.services import run_cancel, run_retry
from pipelines.states import RUN_FINAL_STATES, STAGE_ORDER, RunStatus
from projects.access import can_manage_projects, require_project_manager
from projects.models import Project
from projects.services import ProjectError, project_secret_rotate, project_settings_update
from releases.selectors import project_environments, project_releases
from webhooks.selectors import project_deliveries

RUNS_PER_PAGE = 50


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "web/dashboard.html", {"projects": dashboard_projects()})


@login_required
def runs(request: HttpRequest) -> HttpResponse:
    page = Paginator(run_list(), RUNS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "web/run_list.html", {"page": page})


@login_required
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(run_list(), pk=pk)
    stages = list(run.stages.all())
    done = sum(1 for stage in stages if stage.status not in ("pending", "running"))
    return render(
        request,
        "web/run_detail.html",
        {
            "run": run,
            "stages": stages,
            "progress": (done, len(STAGE_ORDER)),
            "layers": run.layers.all(),
            "final": run.status in RUN_FINAL_STATES,
            "can_control": can_control_runs(request.user),
        },
    )


@login_required
@require_POST
def run_cancel_view(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(PipelineRun.objects.select_related("project"), pk=pk)
    require_run_controller(request.user, to="cancel runs")
    run_cancel(run=run, reason=f"cancelled by {request.user.get_username()}")
    return redirect("run-detail", pk=run.pk)


@login_required
@require_POST
def run_retry_view(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(PipelineRun.objects.select_related("project"), pk=pk)
    require_run_controller(request.user, to="retry runs")
    return redirect("run-detail", pk=run_retry(run=run).pk)


@login_required
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_object_or_404(Project, slug=slug)
    branch, status = request.GET.get("branch", ""), request.GET.get("status", "")
    if "\x00" in branch + status:
        return HttpResponseBadRequest("filters must not contain NUL characters")
    builds_on, used_by = project_base_graph(project)
    runs_page = Paginator(project_runs(project, branch=branch, status=status), RUNS_PER_PAGE)
    return render(
        request,
        "web/project_detail.html",
        {
            "project": project,
            "page": runs_page.get_page(request.GET.get("page")),
            "branch": branch,
            "status": status,
            "statuses": RunStatus.values,
            "builds_on": builds_on,
            "used_by": used_by,
            "environments": project_environments(project),
            "releases": project_releases(project)[:20],
            "deliveries": project_deliveries(project)[:30],
            "can_manage": can_manage_projects(request.user),
        },
    )


@login_required
@require_POST
def project_settings(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_object_or_404(Project, slug=slug)
    require_project_manager(request.user, to="change project settings")
    # Never shown back: an empty field keeps the token, the checkbox removes it.
    forge_token = request.POST.get("forge_token") or None
    if request.POST.get("forge_token_remove") == "on":
        forge_token = ""
    try:
        project_settings_update(
            project=project,
            branch_filter=request.POST.get("branch_filter", ""),
            tag_filter=request.POST.get("tag_filter", ""),
            cancel_superseded=request.POST.get("cancel_superseded") == "on",
            build_pull_requests=request.POST.get("build_pull_requests") == "on",
            forge_token=forge_token,
        )
    except ProjectError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, "Settings saved.")
    return redirect("project-detail", slug=project.slug)


@login_required
@require_POST
def project_rotate_secret(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_object_or_404(Project, slug=slug)
    require_project_manager(request.user, to="rotate webhook secrets")
    project_secret_rotate(project=project)
    # Shown once, on the next page only: it is not displayed anywhere afterwards.
    messages.warning(
        request,
        f"New webhook secret (set it in the forge now; the old one no longer works): "
        f"{project.webhook_secret}",
    )
    return redirect("project-detail", slug=project.slug)

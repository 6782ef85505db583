"""The dashboard and a project's page, with the project's settings and webhook secret."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from pipelines.selectors import project_base_graph, project_runs, project_upstream_waves
from pipelines.states import RunStatus
from projects.access import can_manage_projects, require_project_manager
from projects.models import Project
from projects.services import ProjectError, project_secret_rotate, project_settings_update
from releases.selectors import project_environments
from web.runs import RUNS_PER_PAGE
from web.selectors import dashboard_page, project_release_rows, project_test_rows
from webhooks.selectors import project_deliveries


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    search, status = request.GET.get("q", "").strip(), request.GET.get("status", "")
    if "\x00" in search:
        return HttpResponseBadRequest("the search must not contain NUL characters")
    if status not in RunStatus.values:
        status = ""
    return render(
        request,
        "web/dashboard.html",
        {
            "dashboard": dashboard_page(search=search, status=status, page=request.GET.get("page")),
            "search": search,
            "status": status,
            "statuses": RunStatus.values,
        },
    )


@login_required
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_object_or_404(Project, slug=slug)
    branch, status = request.GET.get("branch", ""), request.GET.get("status", "")
    if "\x00" in branch + status:
        return HttpResponseBadRequest("filters must not contain NUL characters")
    builds_on, used_by = project_base_graph(project)
    slowest_tests, failing_tests = project_test_rows(project)
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
            "upstream_waves": project_upstream_waves(project),
            "environments": project_environments(project),
            "releases": project_release_rows(project),
            "deliveries": project_deliveries(project)[:30],
            "slowest_tests": slowest_tests,
            "failing_tests": failing_tests,
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

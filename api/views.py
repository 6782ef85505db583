"""The REST API's endpoints: thin, they check access, call a service or selector, serialize."""

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.defaults import page_not_found
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.authtoken.models import Token
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from api import serializers as s
from api.chatops import chat_answer, slack_answer
from api.idempotency import idempotent
from api.tokens import api_token_issue
from audit.actors import Actor, request_actor
from audit.models import AuditAction, AuditEntry
from audit.selectors import audit_entries
from pipelines.access import require_run_controller
from pipelines.image_lineage import BaseNotUnderstood, images_on_base
from pipelines.models import LogChunk, PipelineRun
from pipelines.selectors import run_list, run_tests
from pipelines.services import (
    run_cancel,
    run_retry,
    run_trigger,
)
from projects.access import require_project_manager
from projects.models import Project
from projects.services import project_create, project_permissions_update, project_secret_rotate
from releases.access import require_deployer, require_host_manager
from releases.app_logs import AppLogRefused, app_log_read
from releases.hosts import HostRefused, environment_hosts_set, host_save
from releases.models import Deployment, Environment, Host, Release
from releases.selectors import environment_history
from releases.services import (
    deployment_request,
    environment_operate,
    environment_promote,
    environment_rollback,
    environment_scale,
)
from releases.states import DeploymentKind
from releases.traffic_selectors import TrafficQueryRefused, environment_traffic

LOG_CHUNKS_PER_PAGE = 500
ERRORS = {400: s.ErrorSerializer, 403: s.ErrorSerializer, 404: s.ErrorSerializer}
WRITE_ERRORS = {**ERRORS, 409: s.ErrorSerializer, 422: s.ErrorSerializer}
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="a retry with the same key returns the first answer and does nothing twice",
)


# A view set's method: (self, request, pk) -> Response.
View = Callable[..., Response]


def deployment_action(body: type[Serializer] | None = None) -> Callable[[View], View]:
    """A POST on one environment that asks for a deployment: idempotent with an
    Idempotency-Key, answered 202 with the deployment; `body` is what it reads."""

    def decorate(view: View) -> View:
        marked = action(detail=True, methods=["post"])(idempotent(view))
        return extend_schema(
            request=body,
            responses={202: s.DeploymentSerializer, **WRITE_ERRORS},
            parameters=[IDEMPOTENCY_KEY],
        )(marked)

    return decorate


PROJECT_FILTER = OpenApiParameter("project", OpenApiTypes.STR, description="project slug")


@extend_schema(tags=["projects"])
class ProjectViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    http_method_names = ["get", "post", "patch", "head", "options"]
    serializer_class = s.ProjectSerializer
    lookup_field = "slug"
    queryset = Project.objects.all()

    @extend_schema(
        request=s.ProjectCreateSerializer,
        responses={201: s.ProjectWithSecretSerializer, **WRITE_ERRORS},
        parameters=[IDEMPOTENCY_KEY],
    )
    @idempotent
    def create(self, request: Request) -> Response:
        require_project_manager(request.user, to="add projects")
        data = _valid(s.ProjectCreateSerializer, request)
        project = project_create(
            slug=data["slug"],
            repository_url=data["repository_url"],
            forge=data["forge"],
            default_branch=data["default_branch"],
            test_command=data["test_command"],
            branch_filter=data["branch_filter"],
            tag_filter=data["tag_filter"],
            repository_credentials=data["repository_credentials"],
        )
        return Response(s.ProjectWithSecretSerializer(project).data, status=201)

    @extend_schema(
        request=s.ProjectPermissionsSerializer,
        responses={200: s.ProjectSerializer, **WRITE_ERRORS},
        parameters=[IDEMPOTENCY_KEY],
    )
    @idempotent
    def partial_update(self, request: Request, slug: str) -> Response:
        """Grant or take back what the project may do (operators; audited)."""
        require_project_manager(request.user, to="change a project")
        data = _valid(s.ProjectPermissionsSerializer, request)
        project = project_permissions_update(
            project=self.get_object(),
            publish_repositories=data.get("publish_repositories"),
            test_network_allowed=data.get("test_network_allowed"),
        )
        return Response(s.ProjectSerializer(project).data)

    @extend_schema(
        request=None,
        responses={200: s.ProjectWithSecretSerializer, **WRITE_ERRORS},
        parameters=[IDEMPOTENCY_KEY],
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    @idempotent
    def rotate_secret(self, request: Request, slug: str) -> Response:
        require_project_manager(request.user, to="rotate secrets")
        project = project_secret_rotate(project=self.get_object(), actor=request_actor(request))
        return Response(s.ProjectWithSecretSerializer(project).data)


@extend_schema(tags=["runs"])
class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = s.RunSerializer

    def get_queryset(self) -> QuerySet[PipelineRun]:
        runs = run_list()
        for name, field in (("project", "project__slug"), ("status", "status"), ("ref", "ref")):
            if value := _filter_param(self.request, name):
                runs = runs.filter(**{field: value})
        return runs

    @extend_schema(
        parameters=[
            PROJECT_FILTER,
            OpenApiParameter("status", OpenApiTypes.STR),
            OpenApiParameter("ref", OpenApiTypes.STR, description="full ref, refs/heads/main"),
        ]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        request=s.RunTriggerSerializer,
        responses={201: s.RunSerializer, **WRITE_ERRORS},
        parameters=[IDEMPOTENCY_KEY],
    )
    @idempotent
    def create(self, request: Request) -> Response:
        data = _valid(s.RunTriggerSerializer, request)
        project = get_object_or_404(Project, slug=data["project"])
        require_run_controller(request.user, to="start runs")
        run = run_trigger(project=project, ref=data["ref"], commit_sha=data.get("commit_sha", ""))
        return Response(s.RunSerializer(run).data, status=201)

    @extend_schema(
        request=None, responses={200: s.RunSerializer, **WRITE_ERRORS}, parameters=[IDEMPOTENCY_KEY]
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def cancel(self, request: Request, pk: str) -> Response:
        run = self.get_object()
        require_run_controller(request.user, to="cancel runs")
        who = request.user.get_username()
        run_cancel(run=run, reason=f"cancelled by {who} through the API")
        run.refresh_from_db()
        return Response(s.RunSerializer(run).data)

    @extend_schema(
        request=None, responses={201: s.RunSerializer, **WRITE_ERRORS}, parameters=[IDEMPOTENCY_KEY]
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def retry(self, request: Request, pk: str) -> Response:
        run = self.get_object()
        require_run_controller(request.user, to="retry runs")
        return Response(s.RunSerializer(run_retry(run=run)).data, status=201)

    @extend_schema(responses={200: s.RunTestsSerializer, **ERRORS})
    @action(detail=True, methods=["get"])
    def tests(self, request: Request, pk: str) -> Response:
        """The run's test steps, the counts, and each test case its reports named, failures
        first."""
        found = run_tests(self.get_object())
        return Response(
            s.RunTestsSerializer(
                {"counts": found.counts, "steps": found.steps, "cases": found.cases}
            ).data
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("after", OpenApiTypes.INT, description="the last seq already read"),
        ],
        responses={200: s.RunLogSerializer, **ERRORS},
    )
    @action(detail=True, methods=["get"])
    def log(self, request: Request, pk: str) -> Response:
        run = self.get_object()
        after = _int_param(request, "after", default=0)
        chunks = list(
            LogChunk.objects.filter(run=run, seq__gt=after)
            .select_related("stage")
            .order_by("seq")[:LOG_CHUNKS_PER_PAGE]
        )
        return Response(
            s.RunLogSerializer(
                {
                    "status": run.status,
                    "chunks": chunks,
                    "next_after": chunks[-1].seq if chunks else after,
                }
            ).data
        )


@extend_schema(tags=["releases"], parameters=[PROJECT_FILTER])
class ReleaseViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = s.ReleaseSerializer

    def get_queryset(self) -> QuerySet[Release]:
        releases = Release.objects.select_related("project")
        if project := _filter_param(self.request, "project"):
            releases = releases.filter(project__slug=project)
        return releases


@extend_schema(tags=["hosts"])
class HostViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The machines environments run on. Anyone signed in may read them; only superusers add
    or change one (its engine receives the environments' secrets)."""

    http_method_names = ["get", "post", "patch", "head", "options"]
    serializer_class = s.HostSerializer
    lookup_field = "name"
    queryset = Host.objects.all()

    @extend_schema(
        request=s.HostSerializer,
        responses={201: s.HostSerializer, **WRITE_ERRORS},
        parameters=[IDEMPOTENCY_KEY],
    )
    @idempotent
    def create(self, request: Request) -> Response:
        require_host_manager(request.user, to="add hosts")
        data = _valid(s.HostSerializer, request)
        if Host.objects.filter(name=data["name"]).exists():
            raise HostRefused(f"there is a host {data['name']} already; PATCH it to change it")
        host, _ = host_save(
            name=data["name"],
            engine_url=data.get("engine_url", ""),
            address=data["address"],
            actor=request_actor(request),
        )
        return Response(s.HostSerializer(host).data, status=201)

    @extend_schema(request=s.HostChangeSerializer, responses={200: s.HostSerializer, **ERRORS})
    def partial_update(self, request: Request, name: str) -> Response:
        host = self.get_object()
        require_host_manager(request.user, to="change hosts")
        data = _valid(s.HostChangeSerializer, request)
        host, _ = host_save(
            name=host.name,
            engine_url=data.get("engine_url", host.engine_url),
            address=data.get("address", host.address),
            actor=request_actor(request),
        )
        return Response(s.HostSerializer(host).data)


@extend_schema(tags=["environments"])
class EnvironmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    http_method_names = ["get", "post", "patch", "head", "options"]
    serializer_class = s.EnvironmentSerializer

    def get_queryset(self) -> QuerySet[Environment]:
        environments = Environment.objects.select_related(
            "project", "after", "current_release"
        ).prefetch_related("hosts")
        if project := _filter_param(self.request, "project"):
            environments = environments.filter(project__slug=project)
        return environments

    @extend_schema(
        request=s.EnvironmentHostsSerializer, responses={200: s.EnvironmentSerializer, **ERRORS}
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        """Choose the environment's hosts and how many switch at a time."""
        environment = self.get_object()
        require_host_manager(request.user, to="choose an environment's hosts")
        data = _valid(s.EnvironmentHostsSerializer, request)
        hosts = list(Host.objects.filter(name__in=data["hosts"]))
        unknown = sorted(set(data["hosts"]) - {host.name for host in hosts})
        if unknown:
            raise HostRefused(f"no host named {', '.join(unknown)}")
        environment = environment_hosts_set(
            environment=environment,
            hosts=hosts,
            max_parallel=data.get("max_parallel", environment.max_parallel),
            actor=request_actor(request),
        )
        return Response(s.EnvironmentSerializer(environment).data)

    @extend_schema(parameters=[PROJECT_FILTER])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @deployment_action(s.DeployRequestSerializer)
    def deploy(self, request: Request, pk: str) -> Response:
        environment = self.get_object()
        require_deployer(request.user, environment)
        number = _valid(s.DeployRequestSerializer, request)["release"]
        release = get_object_or_404(Release, project=environment.project, number=number)
        deployment = deployment_request(
            environment=environment,
            release=release,
            user=request.user,
            actor=request_actor(request),
        )
        return Response(s.DeploymentSerializer(deployment).data, status=202)

    @deployment_action(s.PromoteRequestSerializer)
    def promote(self, request: Request, pk: str) -> Response:
        environment = self.get_object()
        number = _valid(s.PromoteRequestSerializer, request).get("release")
        release = (
            get_object_or_404(Release, project=environment.project, number=number)
            if number
            else None
        )
        require_deployer(request.user, environment)
        deployment = environment_promote(
            environment=environment,
            release=release,
            user=request.user,
            actor=request_actor(request),
        )
        return Response(s.DeploymentSerializer(deployment).data, status=202)

    @deployment_action()
    def rollback(self, request: Request, pk: str) -> Response:
        environment = self.get_object()
        require_deployer(request.user, environment)
        deployment = environment_rollback(
            environment=environment, user=request.user, actor=request_actor(request)
        )
        return Response(s.DeploymentSerializer(deployment).data, status=202)

    @deployment_action()
    def restart(self, request: Request, pk: str) -> Response:
        """Fresh containers of the release that serves, host by host, through the same switch."""
        return self._operate(request, DeploymentKind.RESTART)

    @deployment_action()
    def stop(self, request: Request, pk: str) -> Response:
        """Take every host's live slot out of its proxy (503 until a start); containers kept."""
        return self._operate(request, DeploymentKind.STOP)

    @deployment_action()
    def start(self, request: Request, pk: str) -> Response:
        """Run the release that served before the stop again, in fresh containers."""
        return self._operate(request, DeploymentKind.START)

    @deployment_action(s.ScaleRequestSerializer)
    def scale(self, request: Request, pk: str) -> Response:
        """Run `replicas` containers of the release that serves on each host."""
        environment = self.get_object()
        require_deployer(request.user, environment)
        replicas = _valid(s.ScaleRequestSerializer, request)["replicas"]
        deployment = environment_scale(
            environment=environment,
            replicas=replicas,
            user=request.user,
            actor=request_actor(request),
        )
        return Response(s.DeploymentSerializer(deployment).data, status=202)

    def _operate(self, request: Request, kind: DeploymentKind) -> Response:
        environment = self.get_object()
        require_deployer(request.user, environment)
        deployment = environment_operate(
            environment=environment, kind=kind, user=request.user, actor=request_actor(request)
        )
        return Response(s.DeploymentSerializer(deployment).data, status=202)

    @extend_schema(
        parameters=[s.TrafficQuerySerializer],
        responses={200: s.EnvironmentTrafficSerializer, **ERRORS},
    )
    @action(detail=True, methods=["get"])
    def traffic(self, request: Request, pk: str) -> Response:
        """Requests per second, error rate and p50/p95 response time over the span, in steps,
        in total and per release; the deployments in it; each release's last five minutes."""
        environment = self.get_object()
        query = s.TrafficQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            traffic = environment_traffic(
                environment,
                minutes=query.validated_data["minutes"],
                host=query.validated_data.get("host") or None,
            )
        except TrafficQueryRefused as refusal:
            raise ValidationError({refusal.parameter: [str(refusal)]}) from None
        return Response(s.EnvironmentTrafficSerializer(traffic).data)

    @extend_schema(responses={200: s.DeploymentSerializer(many=True), **ERRORS})
    @action(detail=True, methods=["get"])
    def history(self, request: Request, pk: str) -> Response:
        page = self.paginate_queryset(environment_history(self.get_object()))
        return self.get_paginated_response(s.DeploymentSerializer(page, many=True).data)

    @extend_schema(
        parameters=[s.AppLogQuerySerializer],
        responses={200: s.AppLogPageSerializer, **ERRORS},
    )
    @action(detail=True, methods=["get"])
    def logs(self, request: Request, pk: str) -> Response:
        """What the live containers printed (each host, each slot; stdout and stderr, merged by
        time; the project's secrets masked). Ask again with since=next_since for what follows:
        each line comes once."""
        environment = self.get_object()
        query = s.AppLogQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            page = app_log_read(
                environment,
                since=query.validated_data.get("since"),
                host=query.validated_data.get("host", ""),
                search=query.validated_data.get("search", ""),
                tail=query.validated_data["tail"],
            )
        except AppLogRefused as refusal:
            raise ValidationError({"host": [str(refusal)]}) from None
        return Response(s.AppLogPageSerializer(page).data)


@extend_schema(tags=["environments"])
class DeploymentViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = s.DeploymentSerializer
    queryset = Deployment.objects.select_related(
        "environment", "release", "previous_release", "requested_by"
    ).prefetch_related("events__host", "host_deployments__host")


class OperatorsOnly(IsAdminUser):
    message = "only operators may read the audit log"


@extend_schema(tags=["audit"])
class AuditEntryViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Who deployed, promoted, rolled back, or changed a permission or a secret; newest first."""

    serializer_class = s.AuditEntrySerializer
    permission_classes = [OperatorsOnly]

    def get_queryset(self) -> QuerySet[AuditEntry]:
        action = _filter_param(self.request, "action")
        # Present means one of them: "?action=" is a mistake, not "any action".
        if "action" in self.request.query_params and action not in AuditAction.values:
            raise s.serializers.ValidationError(
                {"action": [f"one of {', '.join(AuditAction.values)}"]}
            )
        return audit_entries(
            action=action,
            target_type=_filter_param(self.request, "target_type"),
            target_id=_filter_param(self.request, "target_id"),
            actor=_filter_param(self.request, "actor"),
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("action", OpenApiTypes.STR, enum=AuditAction.values),
            OpenApiParameter(
                "target_type",
                OpenApiTypes.STR,
                description="environment, project, user or group",
            ),
            OpenApiParameter(
                "target_id", OpenApiTypes.STR, description="the target's id (with target_type)"
            ),
            OpenApiParameter("actor", OpenApiTypes.STR, description='e.g. "chat:slack:U1"'),
        ]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)


@extend_schema(tags=["images"])
class ImagesView(APIView):
    """What is built on a base image: "there is a new OpenSSL in debian:12; which apps use it,
    which releases, and what serves them now?"."""

    @extend_schema(
        parameters=[s.ImagesQuerySerializer],
        responses={200: s.ImagesOnBaseSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = s.ImagesQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            found = images_on_base(query.validated_data["base"])
        except BaseNotUnderstood as error:
            raise ValidationError({"base": [str(error)]}) from None
        return Response(s.ImagesOnBaseSerializer(found).data)


class ChatOpsView(APIView):
    """Chat-ops: a command in, a short answer a bot can post out."""

    @extend_schema(
        tags=["chat-ops"],
        request=s.ChatCommandSerializer,
        responses={200: s.ChatAnswerSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        text = _valid(s.ChatCommandSerializer, request)["text"]
        actor = request_actor(request)
        # The command came through the API: the chat label says so, and which way in.
        chat = Actor(f"chat:{actor.label}", actor.user)
        return Response({"text": chat_answer(text=text, user=request.user, actor=chat)})


class SlackCommandView(APIView):
    """Slack's slash command: verified by Slack's signing secret, not by a token."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(exclude=True)
    def post(self, request: Request) -> Response:
        body = request.body
        answer = slack_answer(
            signing_secret=settings.DOCKYARD_SLACK_SIGNING_SECRET,
            timestamp=request.headers.get("X-Slack-Request-Timestamp"),
            signature=request.headers.get("X-Slack-Signature"),
            body=body,
            now=time.time(),
        )
        return Response(answer.payload, status=answer.status)


def _valid(serializer_class: type[Any], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _filter_param(request: Request, name: str) -> str:
    value = request.query_params.get(name, "")
    # PostgreSQL text cannot hold NUL: a query with one is a client error, not ours.
    if "\x00" in value:
        raise s.serializers.ValidationError({name: ["must not contain NUL characters"]})
    return value


def _int_param(request: Request, name: str, *, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise s.serializers.ValidationError({name: ["a whole number"]}) from None
    if value < 0:
        raise s.serializers.ValidationError({name: ["zero or more"]})
    return value


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404 for the whole site: JSON under /api/, the usual page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"error": {"code": "not_found", "message": f"no API endpoint at {request.path}"}},
            status=404,
        )
    return page_not_found(request, exception)


@login_required
def token_page(request: HttpRequest) -> HttpResponse:
    """The user's API token: made or replaced (which revokes the old one), and shown once.

    Only its digest is kept (api.tokens), so the new token is in this one answer and never
    again; the answer must not be cached anywhere.
    """
    new_token = None
    if request.method == "POST":
        new_token = api_token_issue(user=request.user)  # type: ignore[arg-type]
        messages.success(request, "A new token was made; the old one no longer works.")
    existing = Token.objects.filter(user=request.user).first()
    response = render(request, "api/token.html", {"token": existing, "new_token": new_token})
    response["Cache-Control"] = "no-store"
    return response

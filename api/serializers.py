"""What the API shows and takes. Shapes only: the writes go through the services."""

from typing import Any

from django.conf import settings
from django.urls import reverse
from rest_framework import serializers

from audit.models import AuditEntry
from pipelines.models import LogChunk, PipelineRun, Stage, TestCase, TestStep
from projects.models import Forge, Project
from projects.spec import MAX_REPLICAS
from releases.models import Deployment, DeploymentEvent, Environment, Host, HostDeployment, Release
from releases.traffic_selectors import (
    TRAFFIC_MINUTES_DEFAULT,
    TRAFFIC_MINUTES_MAX,
    TRAFFIC_MINUTES_MIN,
)


class StrictCharField(serializers.CharField):
    """A string, and only a string: DRF's CharField would take 0 and make it "0". Its length is
    checked as sent (DRF checks it after trimming whitespace, so "\n" + 500 characters would
    pass a limit of 500 that the API's schema says it refuses)."""

    def to_internal_value(self, data: object) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        elif self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return str(super().to_internal_value(data))


def _link(name: str, *args: object) -> str:
    return settings.PUBLIC_URL + reverse(name, args=args)


class ProjectSerializer(serializers.ModelSerializer):
    webhook_url = serializers.SerializerMethodField()
    publish_repositories = serializers.SerializerMethodField()
    has_repository_credentials = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = [
            "slug",
            "repository_url",
            "forge",
            "default_branch",
            "branch_filter",
            "tag_filter",
            "build_pull_requests",
            "cancel_superseded",
            "test_command",
            "webhook_url",
            "publish_repositories",
            "test_network_allowed",
            "has_repository_credentials",
            "created_at",
        ]
        read_only_fields = fields

    def get_webhook_url(self, project: Project) -> str:
        return _link(f"webhook-{project.forge}")

    def get_publish_repositories(self, project: Project) -> list[str]:
        return list(project.publish_grants)

    def get_has_repository_credentials(self, project: Project) -> bool:
        # Whether the repository is cloned with credentials; never what they are.
        return bool(project.repository_credentials)


class ProjectWithSecretSerializer(ProjectSerializer):
    """Shown once: right after the project is made or its secret rotated."""

    webhook_secret = serializers.CharField(read_only=True)

    class Meta(ProjectSerializer.Meta):
        fields = [*ProjectSerializer.Meta.fields, "webhook_secret"]
        read_only_fields = fields


class ProjectCreateSerializer(serializers.Serializer):
    slug = StrictCharField(max_length=63)
    repository_url = StrictCharField(
        max_length=500,
        help_text="credentials in an https URL are taken out of it and kept apart, encrypted",
    )
    repository_credentials = StrictCharField(
        max_length=1000,
        default="",
        allow_blank=True,
        write_only=True,
        help_text="user:password (or a token) for an https repository; never shown again",
    )
    forge = serializers.ChoiceField(choices=Forge.choices, default=Forge.GITHUB)
    default_branch = StrictCharField(max_length=255, default="main")
    test_command = StrictCharField(max_length=1000, default="", allow_blank=True)
    branch_filter = StrictCharField(max_length=500, default="*")
    tag_filter = StrictCharField(max_length=500, default="*")


class ProjectPermissionsSerializer(serializers.Serializer):
    """What an operator grants a project; a field left out stays as it is."""

    publish_repositories = serializers.ListField(
        child=StrictCharField(max_length=255),
        required=False,
        max_length=100,
        help_text="registry repositories outside <registry>/<slug> the project may publish to",
    )
    test_network_allowed = serializers.BooleanField(
        required=False,
        help_text="its tests may use the host's network (only where DOCKYARD_TEST_NETWORK=host)",
    )


class StageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Stage
        fields = ["name", "status", "started_at", "finished_at"]
        read_only_fields = fields


class RunSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    stages = StageSerializer(many=True, read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = PipelineRun
        fields = [
            "id",
            "project",
            "number",
            "ref",
            "kind",
            "pull_request",
            "commit_sha",
            "commit_message",
            "trigger",
            "status",
            "failed_stage",
            "failure_reason",
            "image_reference",
            "image_digest",
            "published_tags",
            "stages",
            "url",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_url(self, run: PipelineRun) -> str:
        return _link("run-detail", run.pk)


class TestStepSerializer(serializers.ModelSerializer):
    duration = serializers.FloatField(source="duration_seconds", read_only=True, allow_null=True)

    class Meta:
        model = TestStep
        fields = [
            "name",
            "group",
            "status",
            "exit_code",
            "failure_reason",
            "started_at",
            "finished_at",
            "duration",
        ]
        read_only_fields = fields


class TestCaseSerializer(serializers.ModelSerializer):
    step = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = TestCase
        fields = ["step", "report", "classname", "name", "file", "status", "seconds", "message"]
        read_only_fields = fields


class RunTestsSerializer(serializers.Serializer):
    """A run's test steps and the cases their JUnit reports named, failures first."""

    counts = serializers.DictField(child=serializers.IntegerField())
    steps = TestStepSerializer(many=True)
    cases = TestCaseSerializer(many=True)


class RunTriggerSerializer(serializers.Serializer):
    project = StrictCharField(max_length=63)
    ref = StrictCharField(max_length=255, help_text="branch or tag, short or refs/...")
    commit_sha = serializers.RegexField(
        r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$",
        required=False,
        help_text="the commit to build; default the ref's head",
    )


class LogChunkSerializer(serializers.ModelSerializer):
    stage = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = LogChunk
        fields = ["seq", "stage", "text"]
        read_only_fields = fields


class RunLogSerializer(serializers.Serializer):
    status = serializers.CharField()
    chunks = LogChunkSerializer(many=True)
    next_after = serializers.IntegerField(help_text="pass as ?after= to continue")


class ReleaseSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Release
        fields = ["id", "project", "number", "run", "commit_sha", "image", "created_at"]
        read_only_fields = fields


class HostSerializer(serializers.ModelSerializer):
    engine_url = serializers.CharField(
        allow_blank=True,
        required=False,
        default="",
        help_text="unix://, ssh://user@host or tcp://host:2376 (TLS); empty: the deploy "
        "worker's own engine",
    )

    class Meta:
        model = Host
        fields = ["name", "engine_url", "address", "created_at"]
        read_only_fields = ["created_at"]
        # Names are checked by the service (which also changes an existing host).
        extra_kwargs: dict[str, dict[str, object]] = {"name": {"validators": []}}


class HostChangeSerializer(serializers.Serializer):
    engine_url = serializers.CharField(allow_blank=True, required=False)
    address = serializers.IPAddressField(required=False)


class EnvironmentHostsSerializer(serializers.Serializer):
    hosts = serializers.ListField(
        child=serializers.SlugField(), allow_empty=False, help_text="host names"
    )
    max_parallel = serializers.IntegerField(
        min_value=1,
        allow_null=True,
        required=False,
        help_text="hosts switched at a time; null: one after another environment, else all",
    )


class EnvironmentSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    after = serializers.SlugRelatedField(slug_field="name", read_only=True)
    current_release = ReleaseSerializer(read_only=True)
    url = serializers.SerializerMethodField()
    urls = serializers.SerializerMethodField()
    hosts = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)

    class Meta:
        model = Environment
        fields = [
            "id",
            "project",
            "name",
            "after",
            "url",
            "urls",
            "hosts",
            "max_parallel",
            "frontend_port",
            "live_slot",
            "current_release",
            "health_path",
            "auto_deploy_branches",
            "stopped",
            "auto_deploy_paused",
            "replicas",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "stopped": {"help_text": "stopped by an operator: it serves nothing until a start"},
            "auto_deploy_paused": {
                "help_text": 'why pushes no longer deploy here by themselves ("" when they do)'
            },
            "replicas": {
                "help_text": "containers per host as an operator scaled it (null: as the "
                "release's dockyard.yml says, deploy.replicas, else 1)"
            },
        }

    def get_url(self, environment: Environment) -> str:
        return environment.frontend_url

    def get_urls(self, environment: Environment) -> list[str]:
        """Each host's frontend: what an outer load balancer spreads requests over."""
        return environment.frontend_urls


class DeploymentEventSerializer(serializers.ModelSerializer):
    host = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = DeploymentEvent
        fields = ["at", "host", "from_status", "to_status", "detail"]
        read_only_fields = fields


class HostDeploymentSerializer(serializers.ModelSerializer):
    host = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = HostDeployment
        fields = [
            "host",
            "batch",
            "status",
            "container_id",
            "reused_container",
            "failure_reason",
            "container_log",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class DeploymentSerializer(serializers.ModelSerializer):
    environment = serializers.SlugRelatedField(slug_field="name", read_only=True)
    release = serializers.SlugRelatedField(slug_field="number", read_only=True)
    previous_release = serializers.SlugRelatedField(slug_field="number", read_only=True)
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    events = DeploymentEventSerializer(many=True, read_only=True)
    hosts = HostDeploymentSerializer(source="host_deployments", many=True, read_only=True)

    class Meta:
        model = Deployment
        fields = [
            "id",
            "environment",
            "release",
            "previous_release",
            "kind",
            "requested_by",
            "status",
            "failure_reason",
            "container_log",
            "release_log",
            "hosts",
            "events",
            "created_at",
            "finished_at",
            "replicas",
            "watch_state",
            "watch_until",
            "watch_detail",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "replicas": {"help_text": "containers of the release it starts on each host"},
            "watch_state": {
                "help_text": "its release's error rate watched after it succeeded "
                '(dockyard.yml deploy.watch); "" when not watched'
            },
            "watch_until": {"help_text": "when the watch ends (while watching)"},
            "watch_detail": {"help_text": "what the watch saw, in numbers, once it ended"},
        }


class DeployRequestSerializer(serializers.Serializer):
    release = serializers.IntegerField(min_value=1, help_text="the release number")


class ScaleRequestSerializer(serializers.Serializer):
    replicas = serializers.IntegerField(
        min_value=1, max_value=MAX_REPLICAS, help_text="containers of the release on each host"
    )


class TrafficQuerySerializer(serializers.Serializer):
    minutes = serializers.IntegerField(
        required=False,
        default=TRAFFIC_MINUTES_DEFAULT,
        min_value=TRAFFIC_MINUTES_MIN,
        max_value=TRAFFIC_MINUTES_MAX,
        help_text="the span, up to now (steps of a few seconds to hours: about 60 of them)",
    )
    host = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=63,
        help_text="one host's requests only (by host name)",
    )


class TrafficPointSerializer(serializers.Serializer):
    at = serializers.DateTimeField(help_text="when the step began")
    requests = serializers.IntegerField()
    requests_per_second = serializers.FloatField(
        allow_null=True, help_text="null: nothing was sampled in the step"
    )
    error_rate = serializers.FloatField(
        allow_null=True, help_text="share of requests answered 5xx; null without requests"
    )
    p50_ms = serializers.FloatField(allow_null=True, help_text="median response time")
    p95_ms = serializers.FloatField(allow_null=True)


class ReleaseTrafficSerializer(serializers.Serializer):
    releases = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="the release numbers the line counts: one; the span's older ones past the "
        "newest five; none for the requests HAProxy answered itself",
    )
    points = TrafficPointSerializer(many=True)


class TrafficNowSerializer(serializers.Serializer):
    release = serializers.IntegerField(
        allow_null=True, help_text="null: requests HAProxy answered itself"
    )
    requests = serializers.IntegerField()
    responses_5xx = serializers.IntegerField()
    requests_per_second = serializers.FloatField()
    error_rate = serializers.FloatField(allow_null=True)
    p50_ms = serializers.FloatField(allow_null=True)
    p95_ms = serializers.FloatField(allow_null=True)


class DeploymentMarkSerializer(serializers.Serializer):
    deployment = serializers.IntegerField(help_text="the deployment's id")
    at = serializers.DateTimeField(help_text="when it ended (began, while it runs)")
    kind = serializers.CharField()
    release = serializers.IntegerField()
    status = serializers.CharField()
    watch_state = serializers.CharField()


class EnvironmentTrafficSerializer(serializers.Serializer):
    """What an environment's hosts passed to its releases, read from their HAProxy logs."""

    minutes = serializers.IntegerField()
    host = serializers.CharField(allow_null=True)
    since = serializers.DateTimeField(help_text="when the first step began")
    until = serializers.DateTimeField()
    step_seconds = serializers.IntegerField()
    sampling = serializers.BooleanField(
        help_text="false: request metrics are off (DOCKYARD_TRAFFIC_SAMPLE_SECONDS is 0)"
    )
    serving_release = serializers.IntegerField(allow_null=True)
    total = TrafficPointSerializer(many=True)
    releases = ReleaseTrafficSerializer(many=True, help_text="oldest release first")
    deployments = DeploymentMarkSerializer(many=True, help_text="oldest first")
    now = TrafficNowSerializer(many=True, help_text="each release's last five minutes")


class PromoteRequestSerializer(serializers.Serializer):
    release = serializers.IntegerField(
        min_value=1,
        required=False,
        help_text="default: the release serving in the environment this one comes after",
    )


class AuditEntrySerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(
        source="actor_user",
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="the Dockyard user who acted, if any (also a chat user's linked user)",
    )
    actor = serializers.CharField(
        read_only=True, help_text='how and as whom: "api-token:alice", "chat:slack:U1", "system"'
    )

    class Meta:
        model = AuditEntry
        fields = [
            "id",
            "at",
            "actor",
            "user",
            "action",
            "target_type",
            "target_id",
            "target_label",
            "detail",
        ]
        read_only_fields = fields


class ChatCommandSerializer(serializers.Serializer):
    text = StrictCharField(max_length=500, allow_blank=True)


class ChatAnswerSerializer(serializers.Serializer):
    text = serializers.CharField()


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(required=False)


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


class ImagesQuerySerializer(serializers.Serializer):
    base = StrictCharField(
        max_length=600,
        help_text="an image reference (debian:12, registry.example.com/infra/base:1), a digest "
        "(sha256:…), or both (repository@sha256:…)",
    )


class ProjectOnBaseSerializer(serializers.Serializer):
    slug = serializers.CharField()
    current = serializers.BooleanField(help_text="its newest default-branch build is on the base")
    runs = serializers.ListField(child=serializers.IntegerField(), help_text="run numbers")


class ReleaseOnBaseSerializer(serializers.Serializer):
    project = serializers.CharField()
    number = serializers.IntegerField()
    image = serializers.CharField()
    run = serializers.IntegerField(help_text="the run's number")
    created_at = serializers.DateTimeField()
    serving = serializers.ListField(child=serializers.CharField(), help_text="environments")


class EnvironmentOnBaseSerializer(serializers.Serializer):
    project = serializers.CharField()
    environment = serializers.CharField()
    release = serializers.IntegerField(help_text="the release's number")


class ImagesOnBaseSerializer(serializers.Serializer):
    """Which projects, releases and environments run on a base, now and before."""

    base = serializers.CharField()
    projects = ProjectOnBaseSerializer(many=True)
    releases = ReleaseOnBaseSerializer(many=True)
    environments = EnvironmentOnBaseSerializer(many=True, help_text="serving one of them now")


class AppLogQuerySerializer(serializers.Serializer):
    since = StrictCharField(
        required=False,
        max_length=64,
        help_text="only lines printed after this: ISO 8601 (2024-05-01T12:34:56.5Z; UTC when "
        "it has no offset) or unix seconds (1714567296.5); the last answer's next_since",
    )
    host = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=63,
        help_text="one host's containers only (by host name)",
    )
    search = StrictCharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=200,
        help_text="only lines containing this, ignoring case (searched once secrets are masked)",
    )
    tail = serializers.IntegerField(
        required=False,
        default=200,
        min_value=1,
        max_value=5000,
        help_text="at most this many lines, the newest",
    )

    def validate_since(self, value: str) -> Any:
        # Here, not at the top: releases.app_logs loads the engine adapter (the Docker SDK and
        # paramiko), which a web process loads only once someone reads app logs.
        from releases.app_logs import log_since_parsed

        try:
            return log_since_parsed(value)
        except ValueError as error:
            raise serializers.ValidationError(str(error)) from None


class AppLogLineSerializer(serializers.Serializer):
    at = serializers.DateTimeField(help_text="when the host's engine took the line in")
    host = serializers.CharField()
    slot = serializers.CharField()
    release = serializers.IntegerField(help_text="the release the container runs")
    replica = serializers.IntegerField(
        help_text="which of the release's containers on the host, from 1"
    )
    stream = serializers.ChoiceField(
        choices=["stdout", "stderr", "dockyard"],
        help_text="dockyard: Dockyard's own line, saying a host's engine could not be read",
    )
    text = serializers.CharField(help_text="with the project's secrets masked")


class AppLogPageSerializer(serializers.Serializer):
    lines = AppLogLineSerializer(many=True, help_text="oldest first")
    next_since = serializers.DateTimeField(
        help_text="pass it as `since` to get the lines printed after these"
    )

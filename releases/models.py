"""Releases, the hosts and environments they run on, and the deployments that move them.

A Release never changes once made. A deployment's status, and each host's part of it, move only
through releases.executor (do_deployment_transition, do_host_transition), which records each
move as a DeploymentEvent.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from infrastructure.durable_jobs import DurableJob
from projects.models import Project
from releases.states import (
    DEPLOYMENT_FINAL_STATES,
    DeploymentKind,
    DeploymentStatus,
    HostStatus,
    Slot,
    WatchState,
)


class Release(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="releases")
    number = models.PositiveIntegerField()
    # The run it was made of; by name, so that this app needs no import of pipelines above it.
    run = models.ForeignKey(
        "pipelines.PipelineRun", on_delete=models.PROTECT, related_name="releases"
    )
    commit_sha = models.CharField(max_length=64)
    # The image pinned by digest: repository@sha256:...
    image = models.CharField(max_length=600)
    # dockyard.yml's deploy section as it was at this commit: a rollback restores it too.
    deploy_config = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="release_number_unique"),
            models.UniqueConstraint(fields=["run"], name="release_run_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug} release {self.number}"


class Host(models.Model):
    """A machine environments run on: its Docker engine, and the address its apps and its
    HAProxy listen on. Credentials are the workers' (their ssh set-up, DOCKER_CERT_PATH),
    never stored here."""

    # Made by the migration for a one-machine install: the deploy worker's own engine.
    LOCAL = "local"

    name = models.SlugField(max_length=63, unique=True)
    # unix://, ssh://user@host or tcp://host:2376 (TLS); empty: the engine of the worker that
    # carries the deployment (DOCKER_HOST), which is one machine only with one deploy worker.
    engine_url = models.CharField(max_length=300, blank=True)
    address = models.GenericIPAddressField(
        help_text="where the host's apps and HAProxy listen (its frontends: address:port)"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def engine(self) -> str:
        return self.engine_url or settings.DOCKER_HOST


class Environment(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="environments")
    name = models.CharField(max_length=32)
    position = models.PositiveSmallIntegerField(default=0)
    # Where it runs: the same ports on each, each host's HAProxy in front of its two slots.
    hosts = models.ManyToManyField(Host, related_name="environments")
    # Hosts switched at a time; empty: one at a time after `after` (production), else all.
    max_parallel = models.PositiveSmallIntegerField(null=True, blank=True)
    # Each host's HAProxy listens on <host address>:frontend_port for this environment; the two
    # slots' containers listen on their own ports and the proxy sends traffic to the live one.
    frontend_port = models.PositiveIntegerField(unique=True)
    blue_port = models.PositiveIntegerField(unique=True)
    green_port = models.PositiveIntegerField(unique=True)
    health_path = models.CharField(max_length=300, default="/")
    health_host = models.CharField(max_length=300, blank=True, help_text="Host header to send")
    health_interval_ms = models.PositiveIntegerField(default=100)
    health_timeout_seconds = models.PositiveIntegerField(default=30)
    drain_timeout_seconds = models.PositiveIntegerField(default=10)
    # Container environment; secrets are project secrets named in `secret_names`.
    variables = models.JSONField(default=dict, blank=True)
    secret_names = models.JSONField(default=list, blank=True)
    auto_deploy_branches = models.CharField(max_length=500, blank=True)
    after = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="next_environments"
    )
    # Who may deploy here; nobody listed means any staff user.
    deployers = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True)
    live_slot = models.CharField(max_length=8, choices=Slot.choices, blank=True)
    current_release = models.ForeignKey(
        Release, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Stopped by an operator: every host's proxy keeps both slots in maintenance until a start.
    stopped = models.BooleanField(default=False)
    # Containers of the live release per host, as an operator scaled it (none: what the
    # release's dockyard.yml says, `deploy.replicas`, else one).
    replicas = models.PositiveSmallIntegerField(null=True, blank=True)
    # The ports of each slot's replicas past the first (which listens on blue_port or
    # green_port): {"blue": [...], "green": [...]}, taken from DOCKYARD_SLOT_PORTS on scaling.
    replica_ports = models.JSONField(default=dict, blank=True)
    # Why pushes no longer deploy here by themselves ("" when they do): a watch rolled a bad
    # release back; the next promotion or deployment by a person clears it.
    auto_deploy_paused = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "position", "name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="environment_name_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug}/{self.name}"

    @property
    def frontend_urls(self) -> list[str]:
        """Each host's frontend for this environment (an outer balancer spreads over them)."""
        return [f"http://{host.address}:{self.frontend_port}/" for host in self.hosts.all()]

    @property
    def frontend_url(self) -> str:
        """The first host's frontend ("" before it has hosts)."""
        urls = self.frontend_urls
        return urls[0] if urls else ""

    def batch_size(self, host_count: int) -> int:
        """How many hosts switch at a time: `max_parallel`, else one when the environment comes
        after another (production), all when not (staging)."""
        if self.max_parallel:
            return self.max_parallel
        return 1 if self.after_id is not None else max(host_count, 1)

    @property
    def proxy_backend(self) -> str:
        return f"be_{self.pk}"

    def slot_port(self, slot: str) -> int:
        return self.blue_port if slot == Slot.BLUE else self.green_port

    def slot_ports(self, slot: str, replicas: int) -> list[int]:
        """The ports of the first `replicas` containers of `slot` (the allocation must hold
        them: releases.services.replica_ports_allocate)."""
        return [self.slot_port(slot), *list(self.replica_ports.get(slot, []))[: replicas - 1]]


class Deployment(DurableJob):
    """A move of an environment to a release: a durable job (infrastructure.durable_jobs) whose
    lost worker means resuming at the step it was in."""

    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="deployments"
    )
    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="deployments")
    previous_release = models.ForeignKey(
        Release, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=16, choices=DeploymentKind.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    status = models.CharField(
        max_length=16, choices=DeploymentStatus.choices, default=DeploymentStatus.QUEUED
    )
    # The slot the release starts in on every host (the idle one).
    slot = models.CharField(max_length=8, choices=Slot.choices, blank=True)
    # Containers of the release it starts on each host.
    replicas = models.PositiveSmallIntegerField(default=1)
    # The container environment this deployment ran the release with.
    variables = models.JSONField(default=dict, blank=True)
    failure_reason = models.TextField(blank=True)
    # The release command's output (masked), when dockyard.yml has one.
    release_log = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # After it succeeded, its release's error rate is watched until `watch_until`
    # (releases.watch); what the watch saw, in numbers, in `watch_detail`.
    watch_state = models.CharField(
        max_length=16, choices=WatchState.choices, default=WatchState.NONE, blank=True
    )
    watch_until = models.DateTimeField(null=True, blank=True)
    watch_detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One deployment per environment at a time, enforced by the database.
            models.UniqueConstraint(
                fields=["environment"],
                condition=~Q(status__in=sorted(DEPLOYMENT_FINAL_STATES)),
                name="one_active_deployment_per_environment",
            ),
        ]
        indexes = [
            # /metrics counts the deployments that ended since its roll-up.
            models.Index(fields=["finished_at"], name="deployment_finished_at"),
            # The collector's pass looks for the deployments being watched.
            models.Index(
                fields=["watch_state"],
                condition=Q(watch_state=WatchState.WATCHING),
                name="deployment_watching",
            ),
        ]

    def __str__(self) -> str:
        return f"deployment {self.pk} of {self.release} to {self.environment.name}"

    @property
    def container_log(self) -> str:
        """The last lines of the containers that failed their health check, by host."""
        return "\n".join(
            f"[{host.host.name}]\n{host.container_log}"
            for host in self.host_deployments.all()
            if host.container_log
        )


class HostDeployment(DurableJob):
    """One host's part of a deployment: a durable job of its own, so that any deploy worker
    can carry it, and a lost one is carried on by another at the step it was in."""

    deployment = models.ForeignKey(
        Deployment, on_delete=models.CASCADE, related_name="host_deployments"
    )
    host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="deployments")
    position = models.PositiveSmallIntegerField()
    # Hosts of one batch switch side by side; the next batch waits for the whole batch.
    batch = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=16, choices=HostStatus.choices, default=HostStatus.WAITING)
    container_id = models.CharField(max_length=100, blank=True)
    # The containers of the release's other replicas on this host, past the first.
    replica_container_ids = models.JSONField(default=list, blank=True)
    # The kept container a rollback restarted instead of creating one.
    reused_container = models.BooleanField(default=False)
    # The container that served on this host before (stopped once every host switched), and
    # its other replicas.
    previous_container_id = models.CharField(max_length=100, blank=True)
    previous_replica_container_ids = models.JSONField(default=list, blank=True)
    failure_reason = models.TextField(blank=True)
    container_log = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["deployment", "position"]
        constraints = [
            models.UniqueConstraint(fields=["deployment", "host"], name="host_deployment_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.deployment} on {self.host.name}"


class DeploymentEvent(models.Model):
    """One step of a deployment: the timeline and the audit trail."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="events")
    # The host the step was on; none for the deployment's own steps.
    host = models.ForeignKey(Host, on_delete=models.SET_NULL, null=True, blank=True)
    from_status = models.CharField(max_length=16)
    to_status = models.CharField(max_length=16)
    detail = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status or 'new'} -> {self.to_status}"


class TrafficSample(models.Model):
    """The requests one host's HAProxy passed to one release of an environment over a window,
    read from the proxy's request log (releases.traffic): a recent sample (one collector pass,
    a few seconds) or, once older, one minute of history rolled up from them."""

    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="traffic_samples"
    )
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="traffic_samples")
    # The release the slot served; none for requests no slot answered (HAProxy's own 503s).
    release = models.ForeignKey(
        Release, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    slot = models.CharField(max_length=8, blank=True)
    rolled_up = models.BooleanField(default=False)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField()
    requests = models.PositiveIntegerField(default=0)
    responses_2xx = models.PositiveIntegerField(default=0)
    responses_3xx = models.PositiveIntegerField(default=0)
    responses_4xx = models.PositiveIntegerField(default=0)
    responses_5xx = models.PositiveIntegerField(default=0)
    # No response at all (the connection failed or was aborted).
    responses_other = models.PositiveIntegerField(default=0)
    # How long requests took (HAProxy's Ta timer), as counts per bucket of
    # releases.traffic_figures.BUCKET_BOUNDS_MS: percentiles of any span can be summed from it.
    time_buckets = models.JSONField(default=list)

    class Meta:
        ordering = ["environment", "ended_at"]
        indexes = [
            models.Index(fields=["environment", "ended_at"], name="traffic_environment_ended"),
            models.Index(fields=["host", "ended_at"], name="traffic_host_ended"),
            models.Index(fields=["rolled_up", "ended_at"], name="traffic_rolled_up_ended"),
        ]

    def __str__(self) -> str:
        return f"{self.environment} on {self.host_id}: {self.requests} requests"

"""What the build stage did with each image of a run's stack."""

from django.db import models

from projects.models import Project


class LayerRole(models.TextChoices):
    # Something else builds on it: cached by its inputs, rebuilt only when they change.
    BASE = "base"
    # Tested or published: built on every run, on top of its pinned base.
    APP = "app"


class CacheSource(models.TextChoices):
    BUILT = "built"
    LOCAL = "local"
    REGISTRY = "registry"


class LayerBuild(models.Model):
    # A run's layer; by name, so that this app needs no import of the pipelines app above it.
    run = models.ForeignKey(
        "pipelines.PipelineRun", on_delete=models.CASCADE, related_name="layers"
    )
    name = models.CharField(max_length=63)
    position = models.PositiveSmallIntegerField()
    role = models.CharField(max_length=8, choices=LayerRole.choices)
    # What it was built on: another image of the stack, "project:<slug>", or nothing.
    parent = models.CharField(max_length=100, blank=True)
    # The images outside the stack it was built FROM, and the digest each resolved to.
    upstream = models.JSONField(default=dict, blank=True)
    cache_key = models.CharField(max_length=64, blank=True)
    source = models.CharField(max_length=16, choices=CacheSource.choices)
    image_id = models.CharField(max_length=100)
    # Where the layer is in the registry, by digest: for a base, what its children were built
    # FROM; for an app layer, the run's candidate (builds.candidates), which every stage
    # after the build runs.
    reference = models.CharField(max_length=500, blank=True)
    # When retention deleted the candidate from the registry.
    candidate_removed_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField()
    size_bytes = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "name"], name="layer_build_unique"),
        ]
        indexes = [
            # /metrics counts the base layers built since its roll-up.
            models.Index(
                fields=["created_at"],
                condition=models.Q(role=LayerRole.BASE),
                name="layer_build_base_created_at",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.run} {self.name} ({self.source})"

    @property
    def cache_hit(self) -> bool | None:
        """None for app layers, which are built on every run by design."""
        if self.role == LayerRole.APP:
            return None
        return self.source != CacheSource.BUILT


class LayerUpstream(models.Model):
    """An image outside the stack a layer was built FROM and the digest it resolved to (as in
    LayerBuild.upstream), one row each so that "what is built on this?" is an indexed look-up
    (the upstream watch, the images API)."""

    layer = models.ForeignKey(LayerBuild, on_delete=models.CASCADE, related_name="upstream_images")
    reference = models.CharField(max_length=500, db_index=True)
    digest = models.CharField(max_length=100, db_index=True)

    def __str__(self) -> str:
        return f"{self.reference} = {self.digest}"


class BaseLayerRecord(models.Model):
    """A base layer Dockyard built and pushed for a project, by cache key: the digest it pushed.

    The base cache trusts these, never a tag alone: anyone who can push to the registry can
    move a tag, so a tag whose digest differs from the one recorded here is a miss (rebuilt
    and pushed again), and an image is a local hit only by the recorded digest.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="base_layers")
    repository = models.CharField(max_length=500)
    cache_key = models.CharField(max_length=64)
    digest = models.CharField(max_length=100)
    pushed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "repository", "cache_key"], name="base_layer_record_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.repository}:{self.cache_key[:12]} = {self.digest}"


class RefTag(models.Model):
    """Which ref a tag rendered from a ref name ({branch}, {tag}) belongs to, per repository.

    Tags are sanitised (feature/login and feature-login both become feature-login), so two
    refs could meet on one tag; the first to publish under it keeps it, and a later other ref
    fails its publish stage saying so instead of overwriting it.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="ref_tags")
    repository = models.CharField(max_length=500)
    tag = models.CharField(max_length=128)
    ref = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["repository", "tag"], name="ref_tag_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag} <- {self.ref}"


class CacheVolume(models.Model):
    """A volume that keeps a test's cache folder between runs of one project's branch.

    Never shared between projects (the volume's name carries the project's); pruned by
    retention once unused for DOCKYARD_CACHE_RETENTION_DAYS.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="cache_volumes")
    branch = models.CharField(max_length=255)
    path = models.CharField(max_length=500)
    volume = models.CharField(max_length=200, unique=True)
    last_used_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "branch", "path"], name="cache_volume_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug} {self.branch} {self.path}"


class UpstreamMove(models.Model):
    """An image outside every stack (`FROM debian:12`) whose tag now points elsewhere than
    the digest some project's newest build used: the watch found it and rebuilt those projects
    (operations.upstream_watch). One per reference and new digest."""

    reference = models.CharField(max_length=500)
    # The digest the rebuilt projects had used (the most common one, when they differed).
    old_digest = models.CharField(max_length=100)
    new_digest = models.CharField(max_length=100)
    detected_at = models.DateTimeField(auto_now_add=True)
    # The runs it started, one per project that used the reference.
    runs = models.ManyToManyField("pipelines.PipelineRun", related_name="upstream_moves")

    class Meta:
        ordering = ["-detected_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["reference", "new_digest"], name="upstream_move_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference}: {self.old_digest[:19]} -> {self.new_digest[:19]}"

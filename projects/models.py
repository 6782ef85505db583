"""Projects: a repository Dockyard builds, its secrets, what operators allow it, and which
other projects' images it builds on.

Every other app knows a project through these models; they know nothing of runs, images or
deployments.
"""

from django.db import models

from config.encrypted_fields import EncryptedTextField


class Forge(models.TextChoices):
    GITHUB = "github", "GitHub"
    GITLAB = "gitlab", "GitLab"


class Project(models.Model):
    slug = models.SlugField(max_length=63, unique=True)
    repository_url = models.CharField(max_length=500)
    # The repository's identity whatever URL form a forge sends (https, ssh, scp-like, path):
    # webhooks find their project by it.
    repository_key = models.CharField(max_length=500, unique=True)
    forge = models.CharField(max_length=16, choices=Forge.choices, default=Forge.GITHUB)
    # Encrypted at rest (config.encrypted_fields), like every secret below.
    webhook_secret = EncryptedTextField(max_length=200)
    default_branch = models.CharField(max_length=255, default="main")
    # Until dockyard.yml describes the test step, a project carries one command (shell words).
    test_command = models.CharField(max_length=1000, blank=True)
    test_timeout = models.PositiveIntegerField(default=600, help_text="seconds")
    # Which pushes start runs: space-separated globs over branch and tag names.
    branch_filter = models.CharField(max_length=500, default="*")
    tag_filter = models.CharField(max_length=500, default="*")
    build_pull_requests = models.BooleanField(default=True)
    # A newer push to a branch (or pull request) cancels that branch's older unfinished runs.
    cancel_superseded = models.BooleanField(default=True)
    # Commit statuses back to the forge: its API (GitHub https://api.github.com, GitLab
    # https://gitlab.example.com/api/v4), the repository there (owner/name, or a GitLab
    # project path or id) and a token allowed to set statuses. No token, no statuses.
    forge_api_url = models.CharField(max_length=500, blank=True)
    forge_repository = models.CharField(max_length=300, blank=True)
    forge_token = EncryptedTextField(max_length=500, blank=True)
    # Credentials for the repository, kept apart from its URL so that no page, log or API
    # answer that shows the URL shows them: "user:password" (or a token as the user).
    repository_credentials = EncryptedTextField(max_length=1000, blank=True)
    # What operators allow the project beyond its own namespace and a network-less test.
    # Registry repositories outside <registry>/<slug> it may publish to, one per line.
    publish_repositories = models.TextField(
        blank=True,
        help_text="Registry repositories outside this project's own namespace "
        "(<registry>/<slug>) that it may publish to, one per line.",
    )
    test_network_allowed = models.BooleanField(
        default=False,
        help_text="Its tests may run on the host's network (only where DOCKYARD_TEST_NETWORK "
        "is host): everything listening on the host's addresses is then in their reach.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # Moved here from the pipelines app; the table kept its name.
        db_table = "pipelines_project"
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def publish_grants(self) -> tuple[str, ...]:
        return tuple(
            line.strip() for line in self.publish_repositories.splitlines() if line.strip()
        )


class ProjectSecret(models.Model):
    """A value a project's tests may read as an environment variable; masked in every log."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="secrets")
    name = models.CharField(max_length=100)
    value = EncryptedTextField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "pipelines_projectsecret"
        ordering = ["project", "name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="project_secret_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug} {self.name}"


class BaseDependency(models.Model):
    """`project` builds on the image `base_project` publishes (dockyard.yml `from: project:`)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="base_links")
    base_project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="dependent_links"
    )
    image = models.CharField(max_length=63, help_text="the image of `project` that builds on it")

    class Meta:
        db_table = "pipelines_basedependency"
        ordering = ["base_project", "project", "image"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "base_project", "image"], name="base_dependency_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug}/{self.image} builds on {self.base_project.slug}"

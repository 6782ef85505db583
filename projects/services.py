"""Writes for projects: add one, change its settings, its secrets, what operators allow it."""

import re
import secrets
import shlex

from django.conf import settings
from django.db import IntegrityError, transaction

from audit.actors import Actor
from audit.models import AuditAction
from audit.services import audit_record
from infrastructure.repository_urls import (
    RepositoryURLError,
    repository_key,
    split_credentials,
    validate_repository_url,
)
from projects.models import BaseDependency, Forge, Project, ProjectSecret
from projects.spec import SpecPolicy, publish_repository_refusal, repository_name_problem
from projects.trigger_rules import parse_globs

# A project's slug becomes a registry repository name, so it follows those rules too.
_SLUG = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ProjectError(ValueError):
    """A project that cannot be created as asked; the message names the field."""


def project_create(
    *,
    slug: str,
    repository_url: str,
    forge: str = Forge.GITHUB,
    webhook_secret: str | None = None,
    default_branch: str = "main",
    test_command: str = "",
    test_timeout: int = 600,
    branch_filter: str = "*",
    tag_filter: str = "*",
    forge_api_url: str = "",
    forge_repository: str = "",
    forge_token: str = "",
    repository_credentials: str = "",
) -> Project:
    """Register a repository; a webhook secret is generated when none is given.

    Credentials in an http(s) URL are taken out of it and kept apart, encrypted: the URL is
    shown on pages and in the API, they never are.
    """
    project_slug_check(slug)
    project_repository_url_check(repository_url)
    repository_url, in_url = split_credentials(repository_url)
    repository_credentials = repository_credentials or in_url
    if forge not in Forge.values:
        raise ProjectError(f"forge {forge!r}: use one of {', '.join(Forge.values)}")
    if webhook_secret is not None and len(webhook_secret) < 16:
        raise ProjectError("secret: use at least 16 characters")
    project_settings_check(
        test_command=test_command,
        test_timeout=test_timeout,
        branch_filter=branch_filter,
        tag_filter=tag_filter,
        forge_api_url=forge_api_url,
    )
    key = repository_key(repository_url)
    if Project.objects.filter(slug=slug).exists():
        raise ProjectError(f"slug {slug!r}: a project with this slug exists")
    existing = Project.objects.filter(repository_key=key).first()
    if existing is not None:
        raise ProjectError(f"repository {repository_url!r} is already project {existing.slug!r}")
    try:
        return Project.objects.create(
            slug=slug,
            repository_url=repository_url,
            repository_key=key,
            forge=forge,
            webhook_secret=webhook_secret or secrets.token_hex(24),
            default_branch=default_branch,
            test_command=test_command,
            test_timeout=test_timeout,
            branch_filter=branch_filter,
            tag_filter=tag_filter,
            forge_api_url=forge_api_url,
            forge_repository=forge_repository or forge_repository_from_key(key),
            forge_token=forge_token,
            repository_credentials=repository_credentials,
        )
    except IntegrityError:
        raise ProjectError(f"project {slug!r} or its repository was registered meanwhile") from None


def project_slug_check(slug: str) -> None:
    """Raise ProjectError unless `slug` can name a project (and its registry repository)."""
    if not _SLUG.match(slug) or len(slug) > 63:
        raise ProjectError(
            f"slug {slug!r}: use lowercase letters, digits and single '-', '_' or '.' "
            "between them (at most 63 characters)"
        )


def project_repository_url_check(url: str) -> None:
    """Raise ProjectError unless this installation may clone `url` (schemes, hosts, local)."""
    try:
        validate_repository_url(
            url,
            allow_local=settings.DOCKYARD_ALLOW_LOCAL_REPOSITORIES,
            allowed_hosts=settings.DOCKYARD_ALLOWED_REPOSITORY_HOSTS,
        )
    except RepositoryURLError as error:
        raise ProjectError(f"repository: {error}") from None


def project_settings_check(
    *,
    test_command: str,
    test_timeout: int,
    branch_filter: str,
    tag_filter: str,
    forge_api_url: str,
) -> None:
    """Raise ProjectError naming the first of these settings a project cannot run with."""
    try:
        shlex.split(test_command)
    except ValueError as error:
        raise ProjectError(f"test command {test_command!r}: {error}") from None
    if forge_api_url and not forge_api_url.startswith(("https://", "http://")):
        raise ProjectError(f"forge API URL {forge_api_url!r}: use an http(s) URL")
    if not parse_globs(branch_filter) or not parse_globs(tag_filter):
        raise ProjectError("branch and tag filters: give at least one glob ('*' for all)")
    if test_timeout < 1:
        raise ProjectError(f"test timeout {test_timeout}: use a number of seconds above 0")


def project_settings_update(
    *,
    project: Project,
    branch_filter: str,
    tag_filter: str,
    cancel_superseded: bool,
    build_pull_requests: bool,
    forge_token: str | None = None,
    actor: Actor | None = None,
) -> Project:
    """Change which pushes start runs and how runs of one branch treat each other.

    `forge_token` None leaves the token as it is; "" removes it. A change of token is audited
    (that it changed, never the value).
    """
    if not parse_globs(branch_filter) or not parse_globs(tag_filter):
        raise ProjectError("branch and tag filters: give at least one glob ('*' for all)")
    fields: dict[str, object] = {
        "branch_filter": " ".join(parse_globs(branch_filter)),
        "tag_filter": " ".join(parse_globs(tag_filter)),
        "cancel_superseded": cancel_superseded,
        "build_pull_requests": build_pull_requests,
    }
    token_changed = forge_token is not None and forge_token != project.forge_token
    if token_changed:
        fields["forge_token"] = forge_token
    with transaction.atomic():
        Project.objects.filter(pk=project.pk).update(**fields)
        if token_changed:
            audit_record(
                action=AuditAction.FORGE_TOKEN_CHANGED,
                target=project,
                actor=actor,
                detail={"set": bool(forge_token)},
            )
    for name, value in fields.items():
        setattr(project, name, value)
    return project


def project_permissions_update(
    *,
    project: Project,
    publish_repositories: list[str] | None = None,
    test_network_allowed: bool | None = None,
) -> Project:
    """Grant or take back what a project may do beyond its own namespace and a network-less
    test; None leaves a setting as it is. Audited (audit.signals) with what it was and became.
    """
    fields: list[str] = []
    if publish_repositories is not None:
        project.publish_repositories = "\n".join(
            project_publish_repositories_check(publish_repositories, slug=project.slug)
        )
        fields.append("publish_repositories")
    if test_network_allowed is not None:
        project.test_network_allowed = test_network_allowed
        fields.append("test_network_allowed")
    if fields:
        project.save(update_fields=fields)
    return project


def project_publish_repositories_check(repositories: list[str], *, slug: str) -> list[str]:
    """The repositories, cleaned and without duplicates; ProjectError names a bad one."""
    cleaned: list[str] = []
    for repository in (item.strip() for item in repositories):
        if not repository or repository in cleaned:
            continue
        if (problem := repository_name_problem(repository)) is not None:
            raise ProjectError(f"publish repositories: {problem}")
        if publish_repository_refusal(repository, namespace=project_namespace(slug)) is None:
            raise ProjectError(
                f"publish repositories: {repository!r} is inside the project's own namespace; "
                "it needs no grant"
            )
        cleaned.append(repository)
    return cleaned


def project_namespace(slug: str) -> str:
    """Where a project publishes without any grant: <registry>/<slug> and below."""
    return f"{settings.DOCKYARD_REGISTRY}/{slug}"


def project_spec_policy(project: Project) -> SpecPolicy:
    """What this installation lets the project's dockyard.yml ask for."""
    if settings.DOCKYARD_TEST_NETWORK != "host":
        network_refusal: str | None = (
            "true is refused: this installation runs tests without a network "
            "(DOCKYARD_TEST_NETWORK=none; an operator may set it to host and allow the project)"
        )
    elif not project.test_network_allowed:
        network_refusal = (
            f"true is refused: project {project.slug} may not run tests on the host's network "
            "(an operator allows it on the project: 'test network allowed')"
        )
    else:
        network_refusal = None
    return SpecPolicy(
        max_memory_bytes=settings.DOCKYARD_TEST_MAX_MEMORY,
        max_pids=settings.DOCKYARD_TEST_MAX_PIDS,
        max_cpus=settings.DOCKYARD_TEST_MAX_CPUS,
        max_timeout=settings.DOCKYARD_TEST_MAX_TIMEOUT,
        network_refusal=network_refusal,
        publish_namespace=project_namespace(project.slug),
        publish_grants=project.publish_grants,
    )


def project_secret_rotate(*, project: Project, actor: Actor | None = None) -> Project:
    """Give the project a new webhook secret; deliveries signed with the old one are refused."""
    project.webhook_secret = secrets.token_hex(24)
    with transaction.atomic():
        Project.objects.filter(pk=project.pk).update(webhook_secret=project.webhook_secret)
        audit_record(
            action=AuditAction.WEBHOOK_SECRET_CHANGED,
            target=project,
            actor=actor,
            detail={"set": True, "rotated": True},
        )
    return project


def project_secret_set(
    *, project: Project, name: str, value: str, actor: Actor | None = None
) -> ProjectSecret:
    """Create or replace one secret of a project; audited by name, never by value."""
    if not _SECRET_NAME.match(name):
        raise ProjectError(f"secret name {name!r}: use letters, digits and '_', not first a digit")
    if not value:
        raise ProjectError(f"secret {name}: the value is empty")
    with transaction.atomic():
        secret, created = ProjectSecret.objects.update_or_create(
            project=project, name=name, defaults={"value": value}
        )
        audit_record(
            action=AuditAction.PROJECT_SECRET_SET,
            target=project,
            actor=actor,
            detail={"name": name, "created": created},
        )
    return secret


def project_base_dependencies_set(*, project: Project, links: list[tuple[str, Project]]) -> None:
    """Record which of the project's images build on which other projects' published images."""
    with transaction.atomic():
        BaseDependency.objects.filter(project=project).delete()
        BaseDependency.objects.bulk_create(
            BaseDependency(project=project, image=image, base_project=base) for image, base in links
        )


def forge_repository_from_key(key: str) -> str:
    """github.com/acme/web -> acme/web: how the forge's API names the repository."""
    if key.startswith("file://"):
        return ""
    return key.partition("/")[2]

"""Publishing an image: under the tags its dockyard.yml asks for, inside what the project may
push to, never over another ref's tag, through a registry that may be briefly down."""

from dataclasses import dataclass
from functools import partial

from django.conf import settings

from builds.build_log import BuildLog
from builds.errors import BuildCancelled, BuildFailure
from builds.image_tags import ref_scoped, render_tags
from builds.models import RefTag
from infrastructure.docker_engine import ContainerEngine, RegistryUnreachable
from projects.models import Project
from projects.services import project_namespace
from projects.spec import PublishSpec, publish_repository_refusal

PUSH_BACKOFF_CAP = 30.0


@dataclass(frozen=True)
class Published:
    repository: str
    digest: str
    tags: list[str]


def image_publish(
    *,
    project: Project,
    publish: PublishSpec,
    image_id: str,
    commit_sha: str,
    ref: str,
    run_number: int,
    engine: ContainerEngine,
    log: BuildLog,
) -> Published:
    """Push `image_id` under its tags (commit sha, branch, git tag, ...); BuildFailure says
    why not."""
    namespace = project_namespace(project.slug)
    repository = publish.repository or namespace
    # Checked when dockyard.yml was read, and again here: a grant may have been taken back.
    refusal = publish_repository_refusal(
        repository, namespace=namespace, grants=project.publish_grants
    )
    if refusal:
        raise BuildFailure(f"publish.repository: {refusal}")
    tags = render_tags(publish.tags, commit_sha=commit_sha, ref=ref, run_number=run_number)
    if not tags:
        raise BuildFailure("publish.tags: no template gives a tag for this push")
    ref_tags_claim(
        project=project,
        repository=repository,
        templates=publish.tags,
        commit_sha=commit_sha,
        ref=ref,
        run_number=run_number,
    )
    digest = ""
    for tag in tags:
        log.line(f"pushing {repository}:{tag}")
        digest = log.stream(
            partial(
                _push_with_retries, engine, log, image_id=image_id, repository=repository, tag=tag
            )
        )
    log.line(f"published {repository}@{digest} as {', '.join(tags)}")
    return Published(repository=repository, digest=digest, tags=tags)


def ref_tags_claim(
    *,
    project: Project,
    repository: str,
    templates: tuple[str, ...],
    commit_sha: str,
    ref: str,
    run_number: int,
) -> None:
    """Record that the tags rendered from `ref`'s name belong to that ref; a tag another ref
    already has is a BuildFailure (two names the sanitiser maps onto one tag)."""
    scoped = render_tags(
        tuple(template for template in templates if ref_scoped(template)),
        commit_sha=commit_sha,
        ref=ref,
        run_number=run_number,
    )
    for tag in scoped:
        claim, _ = RefTag.objects.get_or_create(
            repository=repository, tag=tag, defaults={"project": project, "ref": ref}
        )
        if claim.ref != ref:
            raise BuildFailure(
                f"publish.tags: {repository}:{tag} is the tag of {claim.ref}; {ref} would "
                f"overwrite it (both names become {tag!r} as a tag). Rename the branch or tag, "
                "or publish without {branch}/{tag} templates"
            )


def _push_with_retries(
    engine: ContainerEngine, log: BuildLog, *, image_id: str, repository: str, tag: str
) -> str:
    """Push, waiting out a registry that is down or restarting (doubling waits, capped),
    then give up saying so; a registry that answers with a refusal fails at once."""
    attempts = settings.DOCKYARD_PUSH_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            return engine.push_image(
                image_id=image_id, repository=repository, tag=tag, on_output=log.write
            )
        except RegistryUnreachable as error:
            if attempt == attempts:
                raise BuildFailure(
                    f"the registry for {repository} is unreachable; gave up after "
                    f"{attempts} attempts: {error}"
                ) from None
            delay = min(
                settings.DOCKYARD_PUSH_BACKOFF_SECONDS * 2 ** (attempt - 1), PUSH_BACKOFF_CAP
            )
            log.line(
                f"the registry is unreachable ({error}); retrying in {delay:g}s "
                f"(attempt {attempt + 1} of {attempts})"
            )
            if log.stop_requested.wait(delay):
                raise BuildCancelled() from None
    raise AssertionError("unreachable: the loop returns or raises")

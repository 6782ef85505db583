"""Publishing an image: the run's candidate tagged under the tags its dockyard.yml asks for,
inside what the project may push to, never over another ref's tag, through a registry that may
be briefly down.

Publishing moves no layer and builds nothing: the registry is told to tag the candidate the
build pushed and the tests ran (builds.candidates), so what is published is that digest.
"""

import logging
from dataclasses import dataclass
from functools import partial

from builds.build_log import BuildLog
from builds.errors import BuildFailure
from builds.image_tags import ref_scoped, render_tags
from builds.models import RefTag
from builds.pushing import registry_retrying
from infrastructure.registry import RegistryError, blobs_mount, image_tag
from projects.models import Project
from projects.services import project_namespace
from projects.spec import PublishSpec, publish_repository_refusal

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Published:
    repository: str
    digest: str
    tags: list[str]


def image_publish(
    *,
    project: Project,
    publish: PublishSpec,
    candidate: str,
    commit_sha: str,
    ref: str,
    run_number: int,
    log: BuildLog,
) -> Published:
    """Tag `candidate` (repository@digest) under the publish tags (commit sha, branch, git
    tag, ...); BuildFailure says why not."""
    repository = _publish_repository(project, publish)
    # Checked when dockyard.yml was read, and again here: a grant may have been taken back.
    refusal = _publish_refusal(project, repository)
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
    source, _, digest = candidate.partition("@")
    log.line(f"tagging {repository}: {', '.join(tags)}")
    tag_candidate = partial(
        image_tag, source_repository=source, digest=digest, repository=repository, tags=tags
    )
    # All tags at once: putting a manifest again under a tag it has is harmless, so a retry
    # after a partial success is too.
    registry_retrying(tag_candidate, log, what=f"{repository}:{','.join(tags)}")
    log.line(f"published {repository}@{digest} as {', '.join(tags)}")
    return Published(repository=repository, digest=digest, tags=tags)


def publish_blobs_prepare(*, project: Project, publish: PublishSpec, candidate: str) -> None:
    """Link the candidate's (repository@digest) blobs into the repository it is to be
    published in, ahead of the tests' verdict, so that publishing is the tags' manifest puts
    alone. Tags nothing: an image that fails its tests shows nowhere. Quiet when refused or
    the registry fails: image_publish checks again and mounts what is missing."""
    repository = _publish_repository(project, publish)
    if _publish_refusal(project, repository):
        return
    source, _, digest = candidate.partition("@")
    try:
        blobs_mount(source_repository=source, digest=digest, repository=repository)
    except RegistryError as error:
        logger.info(
            "could not link %s into %s ahead of publishing: %s", candidate, repository, error
        )


def _publish_repository(project: Project, publish: PublishSpec) -> str:
    return publish.repository or project_namespace(project.slug)


def _publish_refusal(project: Project, repository: str) -> str | None:
    return publish_repository_refusal(
        repository, namespace=project_namespace(project.slug), grants=project.publish_grants
    )


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

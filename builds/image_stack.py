"""Building a run's image stack: bases from the cache while their inputs stay the same, app on top.

An image something else builds on is a *base*: its cache key (builds.cache_keys) names it in the
registry, and a worker that finds that tag locally or in the registry builds nothing. The
images that are tested or published are *app* layers: built on every run, FROM their base
pinned by digest, so the base's ONBUILD instructions do the app-specific part, and pushed as
the run's candidates (builds.candidates): at once, or, when the same worker carries on with the
tests, beside them. Every layer thus has a registry reference by digest before anything is
published: the stages after the build, on whatever worker, run exactly what was built.

Knows images, not runs: the caller (pipelines' build stage) gives the project, the run's id
(layer records and tags carry it), the validated spec, the checked-out source, a log, an
engine, and the images of other projects the stack builds on (`from: project:<slug>`).
"""

import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from builds.build_log import BuildLog
from builds.cache_keys import ContextFile, base_layer_cache_key
from builds.candidates import candidate_push
from builds.dockerfile import external_parents
from builds.errors import BuildCancelled, BuildFailure
from builds.models import BaseLayerRecord, CacheSource, LayerBuild, LayerRole, LayerUpstream
from builds.pushing import image_push
from builds.upstream import upstream_resolve
from infrastructure.docker_engine import (
    BuildStopped,
    ContainerEngine,
    ImageBuildError,
    build_context_files,
)
from infrastructure.registry import RegistryError, manifest_digest
from projects.models import Project
from projects.spec import ImageSpec, PipelineSpec, steps_of

BASE_IMAGE_ARG = "BASE_IMAGE"


@dataclass(frozen=True)
class PlannedLayer:
    image: ImageSpec
    role: LayerRole


@dataclass(frozen=True)
class ParentImage:
    """What a layer builds FROM: another layer of the stack, or another project's image."""

    label: str
    reference: str
    digest: str


def stack_plan(spec: PipelineSpec) -> list[PlannedLayer]:
    """The images a run needs, in build order: what it tests (each step's, each service's of
    the stack) and publishes, and their bases."""
    names = {image.name for image in spec.images}
    targets = {spec.publish.image}
    if spec.test is not None:
        targets |= {spec.test.image} | {step.image for step in steps_of(spec.test)}
    targets |= {service.image for service in spec.services if service.image in names}
    needed: set[str] = set()
    for name in targets:
        current: str | None = name
        while current is not None and current not in needed:
            needed.add(current)
            current = spec.image(current).from_image
    bases = {spec.image(name).from_image for name in needed} - {None}
    return [
        PlannedLayer(image=image, role=LayerRole.BASE if image.name in bases else LayerRole.APP)
        for image in spec.images
        if image.name in needed
    ]


def stack_build(
    *,
    project: Project,
    run_id: int,
    run_number: int,
    spec: PipelineSpec,
    source: Path,
    log: BuildLog,
    engine: ContainerEngine,
    project_parents: Mapping[str, ParentImage],
    push_candidates: bool = True,
) -> dict[str, LayerBuild]:
    """Build (or find in the cache) every layer the run needs; returns them by image name.

    `project_parents` gives, by project slug, the image each `from: project:<slug>` builds on.
    `push_candidates` False: the images of the app layers stay on `engine` only, recorded
    without a reference, for the stage after the build to push (builds.candidates).
    """
    layers: dict[str, LayerBuild] = {}
    for position, planned in enumerate(stack_plan(spec)):
        image = planned.image
        parent = _parent(image, layers, project_parents)
        if parent is not None and image.from_project is not None:
            # Another project's published image: tagged in the registry, on no engine until
            # pulled (with Dockyard's login: the builder's own pull of a FROM has none).
            engine.ensure_image(reference=parent.reference, on_output=_quiet)
        started = time.monotonic()
        dockerfile, context = _paths(image, source)
        args = _build_args(image, parent)
        # Images outside the stack it builds FROM: pulled fresh, their digests in the key.
        upstream = upstream_resolve(
            [
                reference
                for reference in external_parents(dockerfile.read_text(errors="replace"), args)
                if parent is None or reference != parent.reference
            ],
            engine=engine,
            log=log,
        )
        if planned.role == LayerRole.BASE:
            image_id, reference, source_of, key = _base_layer(
                project=project,
                image=image,
                parent=parent,
                upstream=upstream,
                paths=(dockerfile, context),
                log=log,
                engine=engine,
            )
        else:
            image_id = _build(
                image=image,
                parent=parent,
                paths=(dockerfile, context),
                tag=f"dockyard/{project.slug}/{image.name}:run-{run_id}",
                log=log,
                engine=engine,
            )
            reference = (
                candidate_push(
                    project=project,
                    run_number=run_number,
                    name=image.name,
                    image_id=image_id,
                    engine=engine,
                    log=log,
                )
                if push_candidates
                else ""
            )
            source_of, key = CacheSource.BUILT, ""
        info = engine.image_info(image_id)
        layer, _ = LayerBuild.objects.update_or_create(
            run_id=run_id,
            name=image.name,
            defaults={
                "position": position,
                "role": planned.role,
                "parent": parent.label if parent else "",
                "upstream": upstream,
                "cache_key": key,
                "source": source_of,
                "image_id": image_id,
                "reference": reference,
                "duration_seconds": time.monotonic() - started,
                "size_bytes": info.size_bytes if info else 0,
            },
        )
        # Indexed apart too: "which layers were built on this upstream digest?"
        LayerUpstream.objects.filter(layer=layer).delete()
        LayerUpstream.objects.bulk_create(
            LayerUpstream(layer=layer, reference=reference, digest=digest)
            for reference, digest in upstream.items()
        )
        layers[image.name] = layer
    return layers


def _base_layer(
    *,
    project: Project,
    image: ImageSpec,
    parent: ParentImage | None,
    upstream: Mapping[str, str],
    paths: tuple[Path, Path],
    log: BuildLog,
    engine: ContainerEngine,
) -> tuple[str, str, CacheSource, str]:
    """(image id, repository@digest, where it came from, cache key) of one base layer."""
    dockerfile, context = paths
    key = base_layer_cache_key(
        dockerfile=dockerfile.read_bytes(),
        context_files=_context_files(context, dockerfile),
        build_args=_build_args(image, parent),
        parent_digest=parent.digest if parent else None,
        upstream_digests=upstream,
    )
    repository = f"{settings.DOCKYARD_REGISTRY}/{project.slug}/{image.name}"
    cached = f"{repository}:{key}"
    recorded = (
        BaseLayerRecord.objects.filter(project=project, repository=repository, cache_key=key)
        .values_list("digest", flat=True)
        .first()
    )
    if recorded:
        pinned = f"{repository}@{recorded}"
        local = engine.image_info(pinned)
        if local is not None:
            log.line(f"{image.name}: cache hit on this worker ({pinned})")
            return local.id, pinned, CacheSource.LOCAL, key
    try:
        digest = manifest_digest(repository, key)
    except RegistryError as error:
        raise BuildFailure(f"{image.name}: cannot look up the base cache: {error}") from None
    if recorded and digest == recorded:
        log.line(f"{image.name}: cache hit in the registry ({cached}); pulling {recorded}")
        # By digest: the tag may move between the look-up and the pull.
        log.stream(
            lambda: engine.pull_image(repository=repository, tag=recorded, on_output=log.write)
        )
        pulled = engine.image_info(pinned)
        if pulled is None:
            raise BuildFailure(f"{image.name}: {pinned} is not on the engine after its pull")
        return pulled.id, pinned, CacheSource.REGISTRY, key
    if digest:
        # Someone pushed this tag (another project, another tool, a leftover): the cache
        # trusts only what Dockyard pushed for this project.
        log.line(
            f"{image.name}: {cached} is in the registry as {digest}, not as the digest "
            f"Dockyard pushed for {project.slug} ({recorded or 'none recorded'}); "
            "not trusted, building"
        )
    else:
        log.line(f"{image.name}: cache miss ({key[:16]}); building")
    image_id = _build(image=image, parent=parent, paths=paths, tag=cached, log=log, engine=engine)
    # The registry is the cache every worker shares: what this one built, the next reuses.
    digest = image_push(engine, log, image_id=image_id, repository=repository, tag=key)
    BaseLayerRecord.objects.update_or_create(
        project=project, repository=repository, cache_key=key, defaults={"digest": digest}
    )
    return image_id, f"{repository}@{digest}", CacheSource.BUILT, key


def _build(
    *,
    image: ImageSpec,
    parent: ParentImage | None,
    paths: tuple[Path, Path],
    tag: str,
    log: BuildLog,
    engine: ContainerEngine,
) -> str:
    dockerfile, context = paths
    if parent:
        log.line(f"{image.name}: building FROM {parent.reference}")
    try:
        return log.stream(
            lambda: engine.build_image(
                context_dir=context,
                dockerfile=dockerfile,
                tag=tag,
                buildargs=_build_args(image, parent),
                on_output=log.write,
                stop=log.stop_requested,
            )
        )
    except BuildStopped:
        raise BuildCancelled() from None
    except ImageBuildError as error:
        raise BuildFailure(f"image {image.name!r} did not build: {error}") from None


def _parent(
    image: ImageSpec, built: dict[str, LayerBuild], project_parents: Mapping[str, ParentImage]
) -> ParentImage | None:
    if image.from_image is not None:
        base = built[image.from_image]
        return ParentImage(
            label=image.from_image,
            reference=base.reference,
            digest=base.reference.partition("@")[2],
        )
    if image.from_project is not None:
        parent = project_parents.get(image.from_project)
        if parent is None:
            raise BuildFailure(
                f"images.{image.name}.from: project {image.from_project!r} has published no "
                "image from its default branch yet"
            )
        return parent
    return None


def _build_args(image: ImageSpec, parent: ParentImage | None) -> dict[str, str]:
    args = dict(image.args)
    if parent:
        # The Dockerfile says `ARG BASE_IMAGE` / `FROM ${BASE_IMAGE}`; pinned by digest, so the
        # app is built on exactly the base that was just resolved.
        args[BASE_IMAGE_ARG] = parent.reference
    return args


def _paths(image: ImageSpec, source: Path) -> tuple[Path, Path]:
    """The Dockerfile and the context folder, refused if a link leads them out of the checkout."""
    root = source.resolve()
    dockerfile = (source / image.dockerfile).resolve()
    context = (source / image.context).resolve()
    for key, path in (("dockerfile", dockerfile), ("context", context)):
        if not path.is_relative_to(root):
            raise BuildFailure(f"images.{image.name}.{key}: leads out of the repository")
    # The checkout refuses links that lead out; checked again because the worker itself reads
    # .dockerignore and sends its lines along with the context.
    if not (context / ".dockerignore").resolve().is_relative_to(root):
        raise BuildFailure(
            f"images.{image.name}.context: its .dockerignore leads out of the repository"
        )
    if not dockerfile.is_file():
        raise BuildFailure(f"images.{image.name}.dockerfile: no file {image.dockerfile!r}")
    if not context.is_dir():
        raise BuildFailure(f"images.{image.name}.context: no folder {image.context!r}")
    return dockerfile, context


def _context_files(context: Path, dockerfile: Path) -> list[ContextFile]:
    files = []
    for relative in build_context_files(context, dockerfile):
        path = context / relative
        if path.is_symlink():
            digest = hashlib.sha256(os.readlink(path).encode()).hexdigest()
        else:
            with path.open("rb") as content:
                digest = hashlib.file_digest(content, "sha256").hexdigest()
        files.append(ContextFile(path=relative, mode=path.lstat().st_mode, content_digest=digest))
    return files


def _quiet(_: str) -> None:
    """Pull progress is noise in a build log."""

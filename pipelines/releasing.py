"""The hand-over from a run to releases: a passed, published run of a deployable ref with a
deploy section becomes a release, which goes by itself where the rules say (auto-deploy)."""

import logging
from datetime import datetime

from pipelines.models import PipelineRun, RunKind
from pipelines.states import RunStatus
from projects.spec import spec_from_dict
from projects.trigger_rules import name_matches, parse_globs
from releases.models import Environment, Release
from releases.services import (
    DeploymentRefused,
    deployment_request,
    environments_sync,
    release_create,
)
from releases.states import DeploymentKind

logger = logging.getLogger(__name__)


def release_from_run(*, run_id: int) -> Release | None:
    """Make the release of a passed, published run with a deploy section, and auto-deploy it.

    Idempotent: a run makes one release, whatever the number of calls.
    """
    run = PipelineRun.objects.select_related("project").get(pk=run_id)
    if run.status != RunStatus.SUCCEEDED or run.kind == RunKind.PULL_REQUEST:
        return None
    if not run.image_digest or run.spec is None:
        return None
    deploy = spec_from_dict(run.spec).deploy
    if deploy is None:
        return None
    environments_sync(project=run.project, deploy=deploy)
    release = release_create(
        project=run.project,
        run_id=run.pk,
        commit_sha=run.commit_sha,
        image=f"{run.image_repository}@{run.image_digest}",
        deploy_config=run.spec.get("deploy") or {},
    )
    for environment in Environment.objects.filter(project=run.project):
        globs = parse_globs(environment.auto_deploy_branches)
        if run.branch and globs and name_matches(run.branch, globs):
            try:
                deployment_request(
                    environment=environment, release=release, kind=DeploymentKind.AUTO
                )
            except DeploymentRefused as refusal:
                # Busy, or not yet through `after`: an auto-deploy is a wish, not an order.
                logger.info("no auto-deploy of %s to %s: %s", release, environment, refusal)
    return release


def runs_without_their_release(*, since: datetime, before: datetime) -> list[int]:
    """The passed, published runs with a deploy section that ended between `since` and
    `before` and have no release: their hand-over was lost (its task failed for good, its
    message lost with Redis)."""
    candidates = (
        PipelineRun.objects.filter(
            status=RunStatus.SUCCEEDED,
            finished_at__gte=since,
            finished_at__lt=before,
            releases__isnull=True,
        )
        .exclude(image_digest="")
        .exclude(kind=RunKind.PULL_REQUEST)
        .order_by()
        .values_list("pk", "spec")
    )
    return [run_id for run_id, spec in candidates if spec and spec.get("deploy")]

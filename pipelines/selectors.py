"""Reads for projects and runs."""

from collections.abc import Iterable

from django.db.models import QuerySet

from pipelines.models import LogChunk, PipelineRun, Project, Stage
from pipelines.repository_urls import repository_key


def project_for_repository(urls: Iterable[str]) -> Project | None:
    """The project whose repository any of `urls` names (https, ssh, scp-like or path)."""
    keys = {repository_key(url) for url in urls}
    return Project.objects.filter(repository_key__in=keys).first()


def run_list() -> QuerySet[PipelineRun]:
    return PipelineRun.objects.select_related("project").prefetch_related("stages")


def stage_log_text(stage: Stage) -> str:
    return "".join(
        LogChunk.objects.filter(stage=stage).order_by("seq").values_list("text", flat=True)
    )


def run_stage_logs(run: PipelineRun) -> dict[int, str]:
    """Each stage's whole log, by stage id."""
    logs: dict[int, list[str]] = {}
    for stage_id, text in run.log_chunks.order_by("seq").values_list("stage_id", "text"):
        logs.setdefault(stage_id, []).append(text)
    return {stage_id: "".join(parts) for stage_id, parts in logs.items()}

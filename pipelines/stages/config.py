"""The config stage: read and validate dockyard.yml, so that a bad file fails early and clearly."""

import shlex

from pipelines.execution import StageFailure, StageTools
from pipelines.models import PipelineRun
from pipelines.services import run_record_spec, stage_skip
from pipelines.stage_log import StageLog
from pipelines.states import StageName
from pipelines.workspace import workspace_ensure
from projects.models import Project
from projects.services import project_base_dependencies_set, project_spec_policy
from projects.spec import (
    SPEC_FILE,
    PipelineSpec,
    SpecError,
    default_spec,
    parse_spec,
    policy_refusal_of_test,
    spec_to_dict,
)

# Larger than any real pipeline description; a bigger file is a mistake or an attack.
MAX_SPEC_BYTES = 256 * 1024


def config_stage(run: PipelineRun, log: StageLog, tools: StageTools) -> None:
    """Parse the run's dockyard.yml (or take the defaults) and store it on the run."""
    source = workspace_ensure(run, log)
    policy = project_spec_policy(run.project)
    path = source / SPEC_FILE
    if path.is_file():
        if path.stat().st_size > MAX_SPEC_BYTES:
            raise StageFailure(f"{SPEC_FILE} is larger than {MAX_SPEC_BYTES // 1024} KiB")
        try:
            spec = parse_spec(path.read_text(encoding="utf-8"), policy=policy)
        except UnicodeDecodeError:
            raise StageFailure(f"{SPEC_FILE} is not UTF-8 text") from None
        except SpecError as error:
            raise StageFailure(str(error)) from None
        log.line(f"read {SPEC_FILE}: {_describe(spec)}")
    else:
        spec = default_spec(
            test_command=tuple(shlex.split(run.project.test_command)),
            test_timeout=run.project.test_timeout,
        )
        log.line(f"no {SPEC_FILE}: building ./Dockerfile ({_describe(spec)})")
        if spec.test is not None and (refusal := policy_refusal_of_test(spec.test, policy)):
            field, message = refusal
            raise StageFailure(f"project {run.project.slug}: test {field}: {message}")
    bases = _base_projects(run.project, spec)
    run_record_spec(run=run, spec=spec_to_dict(spec))
    if spec.test is None:
        stage_skip(run=run, name=StageName.TEST, reason="no test step")
    if run.ref == f"refs/heads/{run.project.default_branch}":
        # The default branch says what the project builds on; other branches experiment.
        project_base_dependencies_set(project=run.project, links=bases)


def _base_projects(project: Project, spec: PipelineSpec) -> list[tuple[str, Project]]:
    links: list[tuple[str, Project]] = []
    for image in spec.images:
        if image.from_project is None:
            continue
        key = f"{SPEC_FILE}: images.{image.name}.from"
        if image.from_project == project.slug:
            raise StageFailure(f"{key}: a project cannot build on its own published image")
        base = Project.objects.filter(slug=image.from_project).first()
        if base is None:
            raise StageFailure(f"{key}: no project {image.from_project!r}")
        links.append((image.name, base))
    return links


def _describe(spec: PipelineSpec) -> str:
    stack = " -> ".join(
        (f"project:{image.from_project} -> " if image.from_project else "") + image.name
        for image in spec.images
    )
    test = f"test in {spec.test.image}" if spec.test else "no test step"
    return f"images {stack}; {test}; publish {spec.publish.image}"

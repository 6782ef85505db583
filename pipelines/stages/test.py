"""The test stage: the test command in a throwaway, locked-down container."""

from builds.testing import tests_run
from pipelines.execution import StageFailure, StageTools
from pipelines.models import PipelineRun
from pipelines.stage_log import StageLog
from pipelines.stages.images import run_labels, run_layer_image, run_spec
from projects.selectors import project_secrets
from projects.services import project_spec_policy
from projects.spec import policy_refusal_of_test


def test_stage(run: PipelineRun, log: StageLog, tools: StageTools) -> None:
    spec = run_spec(run)
    test = spec.test
    if test is None:
        return
    # Checked when dockyard.yml was read, and again here: an operator may have lowered a
    # ceiling or taken the network back since.
    if (refusal := policy_refusal_of_test(test, project_spec_policy(run.project))) is not None:
        field, message = refusal
        raise StageFailure(f"test.{field}: {message}")
    secrets = project_secrets(run.project, test.secrets)
    missing = sorted(set(test.secrets) - set(secrets))
    if missing:
        raise StageFailure(f"test.secrets: not set for this project: {', '.join(missing)}")
    with tools.engine() as engine:
        tests_run(
            engine=engine,
            image=run_layer_image(run, spec, test.image, log, engine),
            test=test,
            secrets=secrets,
            labels=run_labels(run, role="test"),
            log=log,
        )
